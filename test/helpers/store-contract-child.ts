/**
 * Writer process for the contract suite's crash test: opens the engine from a spec, then writes documents one batch
 * at a time, printing "ack <id>" once each write has resolved, until the parent kills it with SIGKILL.
 */
import { openStoreEngine, type EngineSpec } from '../../src/store/index.js';
import { contractDocument, contractOpenOptions } from './store-contract-data.js';

const { spec, collection } = JSON.parse(process.argv[2]!) as { spec: EngineSpec; collection: string };
const engine = await openStoreEngine(spec);
const store = await engine.openCollection(collection, contractOpenOptions({ create: false }));
for (let i = 0; ; i++) {
  await store.writeDocuments([contractDocument(`c${i}`, i)]);
  // Checkpoints now and then, so kills land before, inside and after them.
  if (i % 5 === 4) await store.checkpoint();
  process.stdout.write(`ack c${i}\n`);
}
