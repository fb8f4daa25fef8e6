import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type AppConfig, type ConfigInput } from '../../src/config/index.js';
import { BERT_TINY, FIXTURES_DIR, T5_TINY } from './fixtures.js';

/** A service configuration on the tiny fixture models with a fresh, private indexes folder. */
export function fixtureConfig(overrides: ConfigInput = {}): AppConfig {
  return loadConfig({
    env: {},
    overrides: {
      modelsDir: FIXTURES_DIR,
      embedModel: BERT_TINY,
      readerModel: T5_TINY,
      quantized: false,
      allowRemote: false,
      indexesDir: mkdtempSync(path.join(os.tmpdir(), 'rag-indexes-')),
      port: 0,
      host: '127.0.0.1',
      logLevel: 'silent',
      ...overrides,
    },
  });
}
