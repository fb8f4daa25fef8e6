import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deleteDocuments, ingestDocuments, type SourceDocument } from '../src/ingest/index.js';
import { Embedder } from '../src/models/index.js';
import type { FaultPoint, PassageStore } from '../src/store/index.js';
import { runTsxChild } from './helpers/tsx-child.js';
import { BERT_TINY, FIXTURES_DIR, REPO_ROOT } from './helpers/fixtures.js';
import { BULK_CHECKPOINTS, ingestOptions, openTestStore } from './helpers/store.js';

const CHILD = path.join(REPO_ROOT, 'test', 'store-crash-child.ts');
// Small batches and frequent checkpoints so one run passes every fault point several times.
const SETTINGS = { chunk: { maxTokens: 40, overlapTokens: 8 }, batchPassages: 8, checkpointEveryPassages: 16 };

let embedder: Embedder;
const workDir = mkdtempSync(path.join(os.tmpdir(), 'store-crash-'));

beforeAll(async () => {
  embedder = await Embedder.load(BERT_TINY, { modelsDir: FIXTURES_DIR, allowRemote: false, quantized: false, batchSize: 16 });
});

afterAll(() => rmSync(workDir, { recursive: true, force: true }));

function makeDoc(i: number, version: string): SourceDocument {
  const sentences = 1 + (i % 4) * 2;
  const text = Array.from(
    { length: sentences },
    (_, s) => `Document ${i} ${version} sentence ${s} talks about topic${i % 5} and marker${version}${i}.`,
  ).join(' ');
  return { id: `doc-${i}`, title: `Doc ${i}`, text, metadata: { group: i % 3 } };
}

const V1 = Array.from({ length: 24 }, (_, i) => makeDoc(i, 'v1'));
// v2: every third document changed, four deleted, four new ones.
const DELETED = ['doc-1', 'doc-2', 'doc-4', 'doc-5'];
const V2 = [
  ...V1.filter((d) => !DELETED.includes(d.id)).map((d, i) => (i % 3 === 0 ? makeDoc(Number(d.id.slice(4)), 'v2') : d)),
  ...Array.from({ length: 4 }, (_, i) => makeDoc(100 + i, 'v2')),
];

function writeCorpus(docs: SourceDocument[]): string {
  const file = path.join(mkdtempSync(path.join(workDir, 'corpus-')), 'corpus.json');
  writeFileSync(file, JSON.stringify(docs));
  return file;
}

async function crashAt(dir: string, docs: SourceDocument[], point: FaultPoint, occurrence: number, deleteIds: string[] = []) {
  const result = await runTsxChild(CHILD, { dir, corpusFile: writeCorpus(docs), deleteIds, point, occurrence, ...SETTINGS });
  expect(result.signal, `child should be killed at ${point} #${occurrence}; output:\n${result.output}`).toBe('SIGKILL');
}

function openStore(dir: string): Promise<PassageStore> {
  return openTestStore(dir, { embedModel: embedder.modelId, dim: embedder.dim });
}

async function ingest(store: PassageStore, docs: SourceDocument[]) {
  return ingestDocuments(
    docs,
    ingestOptions(store, embedder, {
      chunk: SETTINGS.chunk,
      batchPassages: SETTINGS.batchPassages,
      checkpoint: { everyPassages: SETTINGS.checkpointEveryPassages, atEnd: true },
    }),
  );
}

/** Document id → passage ids and texts: what a correct index holds, independent of labels and insertion order. */
async function contents(store: PassageStore): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const id of await docIds(store))
    out.set(
      id,
      (await store.passagesOfDocument(id)).map((p) => `${p.id}|${p.text}`),
    );
  return out;
}

async function docIds(store: PassageStore): Promise<string[]> {
  const found: string[] = [];
  for (const d of [...V1, ...V2]) if ((await store.getDocument(d.id)) && !found.includes(d.id)) found.push(d.id);
  return found.sort();
}

/** Exact top-10 passage ids for fixed queries; equal across indexes with the same passages and vectors. */
async function exactAnswers(store: PassageStore): Promise<string[][]> {
  const answers: string[][] = [];
  for (const q of ['topic1 sentence', 'marker v2 document', 'talks about topic3']) {
    const hits = await store.exactSearch(await embedder.embedQuery(q), 10);
    const records = await store.passagesByLabels(hits.map((h) => h.label));
    answers.push(hits.map((h) => records.get(h.label)!.id));
  }
  return answers;
}

type Reference = { contents: Map<string, string[]>; answers: string[][] };
const references = new Map<string, Promise<Reference>>();

/** The state a crash-free ingest of the same inputs produces; built once per input sequence. */
function reference(versions: SourceDocument[][], deleteIds: string[] = []): Promise<Reference> {
  const key = `${versions.length}:${deleteIds.join(',')}`;
  if (!references.has(key)) references.set(key, buildReference(versions, deleteIds));
  return references.get(key)!;
}

async function buildReference(versions: SourceDocument[][], deleteIds: string[]): Promise<Reference> {
  const store = await openStore(path.join(mkdtempSync(path.join(workDir, 'ref-')), 'index'));
  try {
    for (const [i, docs] of versions.entries()) {
      if (i === versions.length - 1 && deleteIds.length > 0) await deleteDocuments(deleteIds, store, BULK_CHECKPOINTS);
      await ingest(store, docs);
    }
    return { contents: await contents(store), answers: await exactAnswers(store) };
  } finally {
    await store.close();
  }
}

/** After a crash: openable, all invariants hold, and each document is entirely one of the allowed versions. */
async function expectConsistentAfterCrash(store: PassageStore, allowed: Array<Map<string, string[]>>): Promise<void> {
  const report = await store.verify();
  expect(report.problems).toEqual([]);
  // The protocol alone must keep the saved generation's file intact; the rebuild fallback is for lost files.
  expect(report.stats.rebuiltFromVectors).toBe(false);
  expect(report.stats.hnswLive).toBe(report.stats.passages);
  for (const [id, passages] of await contents(store)) {
    const matches = allowed.some((version) => JSON.stringify(version.get(id)) === JSON.stringify(passages));
    expect(matches, `document ${id} is a mix of versions`).toBe(true);
  }
}

function hnswFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.startsWith('hnsw-'));
}

const POINTS: FaultPoint[] = ['after-sqlite-commit', 'before-hnsw-rename', 'after-hnsw-rename', 'after-generation-commit'];

describe('crash safety (SIGKILL inside an ingest)', () => {
  it.each(POINTS)('first ingest killed at %s: the index opens consistent and a re-run completes it', async (point) => {
    const ref = await reference([V1]);
    const dir = path.join(mkdtempSync(path.join(workDir, 'a-')), 'index');
    await crashAt(dir, V1, point, 2);

    const store = await openStore(dir);
    try {
      await expectConsistentAfterCrash(store, [ref.contents]);
      expect(hnswFiles(dir).length).toBeLessThanOrEqual(1);
      const committed = (await store.stats()).documents;
      expect(committed).toBeGreaterThan(0);
      expect(committed).toBeLessThan(V1.length);

      const rerun = await ingest(store, V1);
      expect(rerun).toMatchObject({ unchanged: committed, added: V1.length - committed, updated: 0, errors: [] });
      expect((await store.verify()).problems).toEqual([]);
      expect((await store.stats()).pending).toBe(0);
      expect(await contents(store)).toEqual(ref.contents);
      expect(await exactAnswers(store)).toEqual(ref.answers);
    } finally {
      await store.close();
    }
  });

  const UPDATE_CASES: Array<[FaultPoint, number]> = [
    ['after-sqlite-commit', 1],
    ['before-hnsw-rename', 1],
    ['after-hnsw-rename', 1],
    ['after-generation-commit', 1],
    ['after-hnsw-rename', 2],
    ['after-sqlite-commit', 3],
  ];

  it.each(UPDATE_CASES)(
    'update with deletes killed at %s #%i: old or new per document, never a mix; re-run completes',
    async (point, occurrence) => {
      const refV1 = await reference([V1]);
      const refV2 = await reference([V1, V2], DELETED);
      const dir = path.join(mkdtempSync(path.join(workDir, 'b-')), 'index');
      const setup = await openStore(dir);
      await ingest(setup, V1);
      await setup.close();

      await crashAt(dir, V2, point, occurrence, DELETED);

      const store = await openStore(dir);
      try {
        await expectConsistentAfterCrash(store, [refV1.contents, refV2.contents]);
        // Passages of deleted or replaced versions must not come back through the graph: the dense results hydrate fully.
        const query = await embedder.embedQuery('marker v1 document');
        const labels = (await store.denseSearch(query, 500, { ef: 500 })).map((h) => h.label);
        expect((await store.passagesByLabels(labels)).size).toBe(labels.length);

        await deleteDocuments(DELETED, store, BULK_CHECKPOINTS);
        await ingest(store, V2);
        expect((await store.verify()).problems).toEqual([]);
        expect((await store.stats()).pending).toBe(0);
        expect(await contents(store)).toEqual(refV2.contents);
        expect(await exactAnswers(store)).toEqual(refV2.answers);
      } finally {
        await store.close();
      }
    },
  );
});
