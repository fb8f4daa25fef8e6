import { existsSync } from 'node:fs';
import path from 'node:path';
import { buildFixtures, DEFAULT_FIXTURE_SEED, defaultSharedModelsDir, findRepoRoot, fixtureDirName } from '../../src/fixtures/index.js';

export const FULL_FIXTURES_DIR = path.join(findRepoRoot(process.cwd()), '.cache', 'fixtures-full');
export const BERT_FULL = fixtureDirName('bert', 'full');
export const T5_FULL = fixtureDirName('t5', 'full');

/** Benchmarks run on full-size fixtures (same dimensions and FLOPs as the real models); build them once if absent. */
export async function ensureFullFixtures(dir = FULL_FIXTURES_DIR): Promise<string> {
  const done = [path.join(dir, BERT_FULL, 'onnx', 'model.onnx'), path.join(dir, T5_FULL, 'onnx', 'decoder_model_merged.onnx')];
  if (done.every((f) => existsSync(f))) return dir;
  console.error(`building full-size fixture models into ${dir} (once) ...`);
  await buildFixtures({ size: 'full', outDir: dir, sharedModelsDir: defaultSharedModelsDir() });
  return dir;
}

/** Tiny fixtures live where vitest's global setup builds them; build them here if a test run never did. */
export async function ensureTinyFixtures(dir = path.join(findRepoRoot(process.cwd()), '.cache', 'fixtures')): Promise<string> {
  const bert = fixtureDirName('bert', 'tiny');
  const t5 = fixtureDirName('t5', 'tiny');
  if (!existsSync(path.join(dir, bert, 'onnx', 'model.onnx')) || !existsSync(path.join(dir, t5, 'onnx', 'decoder_model_merged.onnx'))) {
    console.error(`building tiny fixture models into ${dir} ...`);
    await buildFixtures({ size: 'tiny', outDir: dir, sharedModelsDir: defaultSharedModelsDir(), seed: DEFAULT_FIXTURE_SEED });
  }
  return dir;
}
