import { existsSync, mkdtempSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type AppConfig, type ConfigInput } from '../../src/config/index.js';
import { buildFixtures, DEFAULT_FIXTURE_SEED, defaultSharedModelsDir, findRepoRoot, fixtureDirName } from '../../src/fixtures/index.js';

export const TINY_FIXTURES_DIR = path.join(findRepoRoot(process.cwd()), '.cache', 'fixtures');
export const BERT_TINY = fixtureDirName('bert', 'tiny');
export const T5_TINY = fixtureDirName('t5', 'tiny');
export const FULL_FIXTURES_DIR = path.join(findRepoRoot(process.cwd()), '.cache', 'fixtures-full');
export const BERT_FULL = fixtureDirName('bert', 'full');
export const T5_FULL = fixtureDirName('t5', 'full');
export const CROSS_ENCODER_FULL = fixtureDirName('cross-encoder', 'full');

/** Benchmarks run on full-size fixtures (same dimensions and FLOPs as the real models); build them once if absent. */
export async function ensureFullFixtures(dir = FULL_FIXTURES_DIR): Promise<string> {
  const done = [
    path.join(dir, BERT_FULL, 'onnx', 'model.onnx'),
    path.join(dir, T5_FULL, 'onnx', 'decoder_model_merged.onnx'),
    path.join(dir, CROSS_ENCODER_FULL, 'onnx', 'model.onnx'),
  ];
  // Fixtures built before the int8 quantizer held float copies under the `_quantized` names: rebuild those.
  const int8 = (f: string) =>
    existsSync(f.replace('.onnx', '_quantized.onnx')) && statSync(f.replace('.onnx', '_quantized.onnx')).size < statSync(f).size / 2;
  if (done.every((f) => existsSync(f) && int8(f))) return dir;
  console.error(`building full-size fixture models into ${dir} (once) ...`);
  await buildFixtures({ size: 'full', outDir: dir, sharedModelsDir: defaultSharedModelsDir() });
  return dir;
}

/** Tiny fixtures live where vitest's global setup builds them; build them here if a test run never did. */
export async function ensureTinyFixtures(dir = TINY_FIXTURES_DIR): Promise<string> {
  const done = [path.join(dir, BERT_TINY, 'onnx', 'model.onnx'), path.join(dir, T5_TINY, 'onnx', 'decoder_model_merged.onnx')];
  if (done.every((f) => existsSync(f))) return dir;
  console.error(`building tiny fixture models into ${dir} ...`);
  await buildFixtures({ size: 'tiny', outDir: dir, sharedModelsDir: defaultSharedModelsDir(), seed: DEFAULT_FIXTURE_SEED });
  return dir;
}

/**
 * A server configuration on the full-size fixtures over the bundled corpus, in a fresh indexes folder, silent, with
 * a request timeout a loaded machine cannot reach: benchmarks measure, they do not shed.
 */
export function fullFixtureServerConfig(modelsDir: string, name: string, overrides: ConfigInput = {}): AppConfig {
  return loadConfig({
    env: {},
    overrides: {
      modelsDir,
      embedModel: BERT_FULL,
      readerModel: T5_FULL,
      allowRemote: false,
      indexesDir: mkdtempSync(path.join(os.tmpdir(), `${name}-`)),
      corpusDir: path.join(findRepoRoot(process.cwd()), 'corpus'),
      port: 0,
      host: '127.0.0.1',
      server: { requestTimeoutMs: 600_000 },
      logLevel: 'silent',
      ...overrides,
    },
  });
}
