import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe } from 'vitest';
import type { EngineSpec } from '../src/store/index.js';
import { freshDatabase, postgresAvailable, stopTestPostgres } from './helpers/postgres.js';
import { openContractEngine, runStoreContract } from './helpers/store-contract.js';

// The PostgreSQL engine passes the same contract as the embedded one: a fresh database and local folder per test.
describe.skipIf(!postgresAvailable())('postgres engine', () => {
  afterAll(stopTestPostgres);

  runStoreContract('postgres', async () => {
    const localDir = mkdtempSync(path.join(os.tmpdir(), 'store-contract-pg-'));
    const spec: EngineSpec = {
      kind: 'postgres',
      url: await freshDatabase(),
      localDir,
      poolMax: 4,
      connectTimeoutMs: 5000,
      pollIntervalMs: 200,
      applyBatchChanges: 500,
    };
    return openContractEngine(spec, localDir);
  });
});
