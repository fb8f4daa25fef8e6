/**
 * Child process for test/store-crash.test.ts: runs an ingest and SIGKILLs itself at the given fault point, which is
 * exactly what `kill -9` at that moment would do (no finally blocks, no exit handlers, no flushes).
 */
import { readFileSync } from 'node:fs';
import { deleteDocuments, ingestDocuments, type SourceDocument } from '../src/ingest/index.js';
import { Embedder } from '../src/models/index.js';
import { IndexStore, type FaultPoint } from '../src/store/index.js';
import { BERT_TINY, FIXTURES_DIR } from './helpers/fixtures.js';

interface CrashPlan {
  dir: string;
  corpusFile: string;
  deleteIds: string[];
  point: FaultPoint;
  occurrence: number;
  chunk: { maxTokens: number; overlapTokens: number };
  batchPassages: number;
  checkpointEveryPassages: number;
}

const plan = JSON.parse(process.argv[2]!) as CrashPlan;
const docs = JSON.parse(readFileSync(plan.corpusFile, 'utf8')) as SourceDocument[];
const embedder = await Embedder.load(BERT_TINY, { modelsDir: FIXTURES_DIR, allowRemote: false, quantized: false, batchSize: 16 });

let seen = 0;
const store = IndexStore.open(plan.dir, {
  embedModel: embedder.modelId,
  dim: embedder.dim,
  faultHook: (point) => {
    if (point === plan.point && ++seen === plan.occurrence) process.kill(process.pid, 'SIGKILL');
  },
});
if (plan.deleteIds.length > 0) deleteDocuments(plan.deleteIds, store);
await ingestDocuments(docs, {
  store,
  embedder,
  chunk: plan.chunk,
  batchPassages: plan.batchPassages,
  checkpointEveryPassages: plan.checkpointEveryPassages,
  progress: false,
});
store.close();
process.stdout.write('completed without reaching the fault point\n');
