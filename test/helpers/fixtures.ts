/** Where vitest's globalSetup (test/global-setup.ts) puts the tiny fixture models. */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_FIXTURE_SEED, findRepoRoot, fixtureDirName } from '../../src/fixtures/index.js';

export const REPO_ROOT = findRepoRoot(fileURLToPath(new URL('.', import.meta.url)));

/** `<repo>/.cache/fixtures`: use as transformers.js `env.localModelPath`. */
export const FIXTURES_DIR = join(REPO_ROOT, '.cache', 'fixtures');

/** Model folder names inside FIXTURES_DIR. */
export const BERT_TINY = fixtureDirName('bert', 'tiny');
export const T5_TINY = fixtureDirName('t5', 'tiny');
export const CROSS_ENCODER_TINY = fixtureDirName('cross-encoder', 'tiny');

/** Seed the fixtures are built with. */
export const FIXTURE_SEED = DEFAULT_FIXTURE_SEED;
