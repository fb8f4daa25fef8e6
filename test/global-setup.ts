/**
 * vitest globalSetup: builds the tiny fixture models into `.cache/fixtures` unless a build stamp shows they are
 * current, and exports the committed trained readers (test/models) into the same folder.
 */
import { defaultSharedModelsDir, ensureFixtures } from '../src/fixtures/index.js';
import { ensureExportedReader, FACT_LOOKUP_READER } from '../src/fixtures/trained-readers.js';
import { FIXTURE_SEED, FIXTURES_DIR } from './helpers/fixtures.js';

export default async function setup(): Promise<void> {
  const started = performance.now();
  if (await ensureFixtures({ size: 'tiny', outDir: FIXTURES_DIR, sharedModelsDir: defaultSharedModelsDir(), seed: FIXTURE_SEED })) {
    console.log(`[global-setup] built tiny fixtures in ${((performance.now() - started) / 1000).toFixed(1)} s -> ${FIXTURES_DIR}`);
  }
  const exportStarted = performance.now();
  const reader = await ensureExportedReader(FACT_LOOKUP_READER, FIXTURES_DIR);
  if (reader.built)
    console.log(
      `[global-setup] exported ${FACT_LOOKUP_READER} in ${((performance.now() - exportStarted) / 1000).toFixed(1)} s -> ${reader.dir}`,
    );
}
