/**
 * vitest globalSetup: builds the tiny fixture models into `.cache/fixtures` unless a build stamp shows they are
 * current. The stamp hashes the builder sources, the seed and the real configs the fixtures derive from, so editing
 * the builder triggers a rebuild.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BERT_SOURCE_MODEL,
  buildFixtures,
  CROSS_ENCODER_SOURCE_MODEL,
  defaultSharedModelsDir,
  FIXTURE_BUILDER_SOURCE_DIR,
  T5_SOURCE_MODEL,
} from '../src/fixtures/index.js';
import { writeJsonAtomic } from '../src/fixtures/files.js';
import { BERT_TINY, CROSS_ENCODER_TINY, FIXTURE_SEED, FIXTURES_DIR, T5_TINY } from './helpers/fixtures.js';

const STAMP_FILE = join(FIXTURES_DIR, 'fixture-stamp.json');

/** Files whose presence shows a completed build (the stamp is written after all of them). */
const REQUIRED_FILES = [
  `${BERT_TINY}/config.json`,
  `${BERT_TINY}/onnx/model.onnx`,
  `${BERT_TINY}/onnx/model_quantized.onnx`,
  `${T5_TINY}/config.json`,
  `${T5_TINY}/onnx/encoder_model.onnx`,
  `${T5_TINY}/onnx/encoder_model_quantized.onnx`,
  `${T5_TINY}/onnx/decoder_model_merged.onnx`,
  `${T5_TINY}/onnx/decoder_model_merged_quantized.onnx`,
  `${CROSS_ENCODER_TINY}/config.json`,
  `${CROSS_ENCODER_TINY}/onnx/model.onnx`,
  `${CROSS_ENCODER_TINY}/onnx/model_quantized.onnx`,
];

async function buildStamp(sharedModelsDir: string): Promise<string> {
  const hash = createHash('sha256');
  hash.update(`seed=${FIXTURE_SEED};size=tiny\n`);
  const sources = (await readdir(FIXTURE_BUILDER_SOURCE_DIR)).filter((f) => f.endsWith('.ts')).sort();
  for (const file of sources) {
    hash.update(`${file}\n`);
    hash.update(await readFile(join(FIXTURE_BUILDER_SOURCE_DIR, file)));
  }
  for (const file of [`${BERT_SOURCE_MODEL}/config.json`, `${T5_SOURCE_MODEL}/config.json`, `${CROSS_ENCODER_SOURCE_MODEL}/config.json`]) {
    hash.update(await readFile(join(sharedModelsDir, file)));
  }
  return hash.digest('hex');
}

async function currentStamp(): Promise<string | undefined> {
  if (!existsSync(STAMP_FILE) || REQUIRED_FILES.some((f) => !existsSync(join(FIXTURES_DIR, f)))) return undefined;
  try {
    const parsed = JSON.parse(await readFile(STAMP_FILE, 'utf8')) as { stamp?: unknown };
    return typeof parsed.stamp === 'string' ? parsed.stamp : undefined;
  } catch {
    return undefined;
  }
}

export default async function setup(): Promise<void> {
  const sharedModelsDir = defaultSharedModelsDir();
  const stamp = await buildStamp(sharedModelsDir);
  if ((await currentStamp()) === stamp) return;

  const started = performance.now();
  // Every file is written atomically, so a concurrent run in the same checkout only ever sees complete files.
  await buildFixtures({ size: 'tiny', outDir: FIXTURES_DIR, sharedModelsDir, seed: FIXTURE_SEED });
  await writeJsonAtomic(STAMP_FILE, { stamp, seed: FIXTURE_SEED, builtAt: new Date().toISOString() });
  console.log(`[global-setup] built tiny fixtures in ${((performance.now() - started) / 1000).toFixed(1)} s -> ${FIXTURES_DIR}`);
}
