import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openContractEngine, runStoreContract } from './helpers/store-contract.js';

runStoreContract('sqlite', async () => {
  const indexesDir = mkdtempSync(path.join(os.tmpdir(), 'store-contract-'));
  return openContractEngine({ kind: 'sqlite', indexesDir }, indexesDir);
});
