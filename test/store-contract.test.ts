import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStoreEngine, type EngineSpec } from '../src/store/index.js';
import { runStoreContract } from './helpers/store-contract.js';

runStoreContract('sqlite', async () => {
  const indexesDir = mkdtempSync(path.join(os.tmpdir(), 'store-contract-'));
  const spec: EngineSpec = { kind: 'sqlite', indexesDir };
  const engine = await openStoreEngine(spec);
  return {
    engine,
    spec,
    cleanup: async () => {
      await engine.close();
      rmSync(indexesDir, { recursive: true, force: true });
    },
  };
});
