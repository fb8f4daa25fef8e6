/**
 * Child process for test/store-crash.test.ts: runs an ingest and SIGKILLs itself at the given fault point, which is
 * exactly what `kill -9` at that moment would do (no finally blocks, no exit handlers, no flushes).
 */
import { readFileSync } from 'node:fs';
import { deleteDocuments, ingestDocuments, type SourceDocument } from '../src/ingest/index.js';
import { Embedder } from '../src/models/index.js';
import type { FaultPoint } from '../src/store/index.js';
import { BERT_TINY, FIXTURES_DIR } from './helpers/fixtures.js';
import { BULK_CHECKPOINTS, ingestOptions, openTestStore } from './helpers/store.js';

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
const store = await openTestStore(plan.dir, {
  embedModel: embedder.modelId,
  dim: embedder.dim,
  faultHook: (point) => {
    if (point === plan.point && ++seen === plan.occurrence) process.kill(process.pid, 'SIGKILL');
  },
});
if (plan.deleteIds.length > 0) await deleteDocuments(plan.deleteIds, store, BULK_CHECKPOINTS);
await ingestDocuments(
  docs,
  ingestOptions(store, embedder, {
    chunk: plan.chunk,
    batchPassages: plan.batchPassages,
    checkpoint: { everyPassages: plan.checkpointEveryPassages, atEnd: true },
  }),
);
await store.close();
process.stdout.write('completed without reaching the fault point\n');
