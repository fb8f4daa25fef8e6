/**
 * Child process for test/collection-delete-crash.test.ts: opens the collections of an indexes folder as the server
 * does (Collections over the embedded engine, writable, verified), writes two collections (left with writes since
 * their last checkpoint, so the delete's close saves a graph first), then deletes one and SIGKILLs itself at the
 * given step of the delete: exactly what `kill -9` at that moment would do.
 */
import { loadEmbedder, type EmbeddingModel } from '../src/models/index.js';
import { Collections } from '../src/service/collections.js';
import type { DocumentInput } from '../src/service/index-writer.js';
import { SqliteEngine, type DropFaultPoint } from '../src/store/sqlite/sqlite-engine.js';
import { fixtureConfig } from './helpers/config.js';

export interface DeleteCrashPlan {
  indexesDir: string;
  point: DropFaultPoint;
  /** Collection name → its documents. */
  collections: Record<string, DocumentInput[]>;
  doomed: string;
}

const plan = JSON.parse(process.argv[2]!) as DeleteCrashPlan;
const config = fixtureConfig({ indexesDir: plan.indexesDir });
const embedder: Promise<EmbeddingModel> = loadEmbedder(config);
const engine = new SqliteEngine(plan.indexesDir, (point) => {
  if (point === plan.point) process.kill(process.pid, 'SIGKILL');
});
const collections = new Collections({ engine, config, writable: true, verify: true, embedderFor: () => embedder });
for (const [name, documents] of Object.entries(plan.collections)) {
  await collections.create(name);
  await collections.use(name, async ({ writer }) => {
    await writer!.upsert(documents);
  });
}
await collections.drop(plan.doomed);
process.stdout.write('completed without reaching the fault point\n');
