import { existsSync, mkdtempSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deleteDocuments, ingestDocuments, type SourceDocument } from '../src/ingest/index.js';
import { Embedder } from '../src/models/index.js';
import { queryTerms } from '../src/retrieval/index.js';
import { EmbeddingMismatchError, IndexLockedError, type PassageStore } from '../src/store/index.js';
import { BERT_TINY, FIXTURES_DIR } from './helpers/fixtures.js';
import { BULK_CHECKPOINTS, ingestOptions, openTestStore, type TestStoreOptions } from './helpers/store.js';

let embedder: Embedder;
const open: PassageStore[] = [];
const TMP = mkdtempSync(path.join(os.tmpdir(), 'store-test-'));

beforeAll(async () => {
  embedder = await Embedder.load(BERT_TINY, { modelsDir: FIXTURES_DIR, allowRemote: false, quantized: false, batchSize: 16 });
});

afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

afterAll(() => rmSync(TMP, { recursive: true, force: true }));

function newDir(): string {
  return path.join(mkdtempSync(path.join(TMP, 'case-')), 'index');
}

async function openStore(dir: string, extra: Partial<TestStoreOptions> = {}): Promise<PassageStore> {
  const store = await openTestStore(dir, { embedModel: embedder.modelId, dim: embedder.dim, ...extra });
  open.push(store);
  return store;
}

async function closeStore(store: PassageStore): Promise<void> {
  await store.close();
  open.splice(open.indexOf(store), 1);
}

/** Each document carries a made-up marker word so BM25 can find exactly it. */
function doc(id: string, marker: string, sentences = 3, metadata: Record<string, unknown> = {}): SourceDocument {
  const text = Array.from({ length: sentences }, (_, i) => `Sentence ${i} of ${id} mentions ${marker} and the river delta.`).join(' ');
  return { id, title: `Title ${id}`, text, metadata };
}

const CORPUS = [doc('alpha', 'zorblax', 4), doc('beta', 'quintrel', 12), doc('gamma', 'mervish', 2), doc('delta', 'plonkit', 6)];
const CHUNK = { maxTokens: 40, overlapTokens: 8 };

async function ingest(store: PassageStore, docs: SourceDocument[], chunk = CHUNK) {
  return ingestDocuments(docs, ingestOptions(store, embedder, { chunk, batchPassages: 8 }));
}

async function bm25Docs(store: PassageStore, words: string): Promise<string[]> {
  const hits = await store.bm25Search(queryTerms(words), 100, { titleWeight: 1, textWeight: 1 });
  return [...(await store.passagesByLabels(hits.map((h) => h.label))).values()].map((p) => p.docId);
}

/** Labels the HNSW graph returns when asked for more neighbours than there are passages. */
async function denseLabels(store: PassageStore, vector: Float32Array): Promise<number[]> {
  return (await store.denseSearch(vector, 1000, { ef: 1000 })).map((h) => h.label);
}

describe('SQLite passage store with ingest', () => {
  it('ingests documents into SQLite, FTS and HNSW consistently', async () => {
    const store = await openStore(newDir());
    const summary = await ingest(store, CORPUS);
    expect(summary).toMatchObject({ documentsSeen: 4, added: 4, updated: 0, unchanged: 0, errors: [] });
    expect(summary.outcomes.map((o) => [o.id, o.status])).toEqual(CORPUS.map((d) => [d.id, 'added']));
    const stats = await store.stats();
    expect(stats.documents).toBe(4);
    expect(stats.passages).toBe(summary.passagesAdded);
    expect(stats.passages).toBeGreaterThan(4);
    expect(stats.hnswLive).toBe(stats.passages);
    expect(stats.pending).toBe(0);
    expect(await store.verify()).toMatchObject({ ok: true, problems: [] });
    expect(await bm25Docs(store, 'quintrel')).toEqual(Array((await store.getDocument('beta'))!.passages).fill('beta'));
  });

  it('re-ingesting unchanged documents is a no-op', async () => {
    const dir = newDir();
    const store = await openStore(dir);
    await ingest(store, CORPUS);
    const before = await store.passagesOfDocument('beta');
    const generation = (await store.stats()).generation;
    const again = await ingest(store, CORPUS);
    expect(again).toMatchObject({ documentsSeen: 4, added: 0, updated: 0, unchanged: 4, passagesAdded: 0, passagesRemoved: 0 });
    expect(again.outcomes.find((o) => o.id === 'beta')).toEqual({ id: 'beta', status: 'unchanged', passages: before.length });
    expect(await store.passagesOfDocument('beta')).toEqual(before);
    // Nothing changed, so no new HNSW generation was written.
    expect((await store.stats()).generation).toBe(generation);
  });

  it('a changed document replaces its passages everywhere, leaving no orphans', async () => {
    const store = await openStore(newDir());
    await ingest(store, CORPUS);
    const old = await store.passagesOfDocument('beta');
    const oldVectors = await embedder.embedPassages(old.map((p) => `${p.title}\n${p.text}`));

    const changed = doc('beta', 'flimwort', 20);
    const summary = await ingest(store, [changed, ...CORPUS.filter((d) => d.id !== 'beta')]);
    expect(summary).toMatchObject({ updated: 1, unchanged: 3, added: 0, passagesRemoved: old.length });
    const fresh = await store.passagesOfDocument('beta');
    expect(summary.outcomes[0]).toEqual({ id: 'beta', status: 'updated', passages: fresh.length });
    expect(fresh.length).toBe(summary.passagesAdded);
    expect(fresh.map((p) => p.id)).toEqual(fresh.map((_, i) => `beta#${i}`));
    expect(fresh.every((p) => p.text.includes('flimwort'))).toBe(true);

    expect(await bm25Docs(store, 'quintrel')).toEqual([]);
    expect((await bm25Docs(store, 'flimwort')).length).toBe(fresh.length);
    const oldLabels = new Set(old.map((p) => p.label));
    for (const v of oldVectors) expect((await denseLabels(store, v)).filter((l) => oldLabels.has(l))).toEqual([]);
    expect(await store.verify()).toMatchObject({ ok: true, problems: [] });
  });

  it('treats metadata and chunking changes as changes', async () => {
    const store = await openStore(newDir());
    await ingest(store, CORPUS);
    const withMeta = CORPUS.map((d) => (d.id === 'gamma' ? { ...d, metadata: { lang: 'en' } } : d));
    expect(await ingest(store, withMeta)).toMatchObject({ updated: 1, unchanged: 3 });
    expect((await store.passagesOfDocument('gamma')).every((p) => p.metadata.lang === 'en')).toBe(true);
    // Same content, different passage budget: every document is re-chunked.
    expect(await ingest(store, withMeta, { maxTokens: 24, overlapTokens: 4 })).toMatchObject({ updated: 4, unchanged: 0 });
    expect((await store.verify()).ok).toBe(true);
  });

  it('keeps the last version when a document appears twice in one run', async () => {
    const store = await openStore(newDir());
    const summary = await ingest(store, [doc('twice', 'firstver'), doc('other', 'otherword'), doc('twice', 'secondver')]);
    expect(summary).toMatchObject({ documentsSeen: 3, added: 2, updated: 1 });
    expect(summary.outcomes.map((o) => `${o.id}:${o.status}`)).toEqual(['twice:added', 'other:added', 'twice:updated']);
    expect(await bm25Docs(store, 'firstver')).toEqual([]);
    expect(new Set(await bm25Docs(store, 'secondver'))).toEqual(new Set(['twice']));
    expect((await store.verify()).ok).toBe(true);
  });

  it('delete removes a document from SQLite, FTS and HNSW, durably', async () => {
    const dir = newDir();
    const store = await openStore(dir);
    await ingest(store, CORPUS);
    const doomed = await store.passagesOfDocument('delta');
    const vectors = await embedder.embedPassages(doomed.map((p) => `${p.title}\n${p.text}`));
    expect((await bm25Docs(store, 'plonkit')).length).toBe(doomed.length);

    const summary = await deleteDocuments(['delta', 'no-such-doc'], store, BULK_CHECKPOINTS);
    expect(summary).toMatchObject({ deleted: 1, passagesRemoved: doomed.length });
    expect(summary.errors).toEqual([{ path: 'no-such-doc', message: expect.stringMatching(/no document/) }]);
    expect(summary.outcomes.map((o) => o.status)).toEqual(['deleted', 'error']);

    const check = async (s: PassageStore) => {
      expect(await s.getDocument('delta')).toBeUndefined();
      expect(await s.passagesOfDocument('delta')).toEqual([]);
      expect(await bm25Docs(s, 'plonkit')).toEqual([]);
      const labels = new Set(doomed.map((p) => p.label));
      for (const v of vectors) expect((await denseLabels(s, v)).filter((l) => labels.has(l))).toEqual([]);
      expect((await s.exactSearch(vectors[0]!, 1000)).filter((h) => labels.has(h.label))).toEqual([]);
      expect(await s.verify()).toMatchObject({ ok: true, problems: [] });
    };
    await check(store);
    await closeStore(store);
    await check(await openStore(dir));
  });

  it('persists across close and open', async () => {
    const dir = newDir();
    const store = await openStore(dir);
    await ingest(store, CORPUS);
    const stats = await store.stats();
    const query = await embedder.embedQuery('river delta');
    const before = await store.denseSearch(query, 5);
    await closeStore(store);
    const reopened = await openStore(dir);
    const { bytes: _before, ...same } = stats;
    expect(await reopened.stats()).toMatchObject(same);
    expect(await reopened.denseSearch(query, 5)).toEqual(before);
    expect(readdirSync(dir).filter((f) => f.startsWith('hnsw-'))).toEqual([`hnsw-${stats.generation}.bin`]);
  });

  it('rebuilds the graph from stored vectors when the HNSW file is gone', async () => {
    const dir = newDir();
    const store = await openStore(dir);
    await ingest(store, CORPUS);
    const query = await embedder.embedQuery('mervish');
    const exact = await store.exactSearch(query, 3);
    const generation = (await store.stats()).generation;
    await closeStore(store);
    unlinkSync(path.join(dir, `hnsw-${generation}.bin`));

    const rebuilt = await openStore(dir);
    expect(await rebuilt.stats()).toMatchObject({ rebuiltFromVectors: true, hnswLive: (await rebuilt.stats()).passages });
    expect((await rebuilt.denseSearch(query, 3, { ef: 200 })).map((h) => h.label)).toEqual(exact.map((h) => h.label));
    // The writer saved the rebuilt graph right away, so the files on disk are consistent again.
    expect(existsSync(path.join(dir, `hnsw-${generation + 1}.bin`))).toBe(true);
    expect(await rebuilt.verify()).toMatchObject({ ok: true, problems: [] });
  });

  it('refuses another embedding model or dimension, naming both models', async () => {
    const dir = newDir();
    const store = await openStore(dir);
    await ingest(store, CORPUS.slice(0, 1));
    await closeStore(store);

    const attempt = () => openTestStore(dir, { embedModel: 'Xenova/all-MiniLM-L6-v2', dim: 384 });
    await expect(attempt()).rejects.toThrow(EmbeddingMismatchError);
    await expect(attempt()).rejects.toThrow(new RegExp(`${BERT_TINY}.*Xenova/all-MiniLM-L6-v2`));
    await expect(openTestStore(dir, { embedModel: embedder.modelId, dim: embedder.dim + 1 })).rejects.toThrow(EmbeddingMismatchError);
    // The failed opens left no lock behind.
    await openStore(dir);
  });

  it('refuses to ingest with an embedder other than the index model', async () => {
    const store = await openStore(newDir(), { embedModel: 'some/other-model' });
    await expect(ingest(store, CORPUS)).rejects.toThrow(/some\/other-model/);
  });

  it('allows one writer at a time and any number of readers that follow the writer by themselves', async () => {
    const dir = newDir();
    const writer = await openStore(dir);
    await ingest(writer, CORPUS.slice(0, 2));
    await expect(openTestStore(dir, { embedModel: embedder.modelId, dim: embedder.dim })).rejects.toThrow(IndexLockedError);

    const reader = await openStore(dir, { readonly: true });
    expect((await reader.stats()).documents).toBe(2);
    await expect(reader.deleteDocuments(['alpha'])).rejects.toThrow(/read-only/);

    await ingest(writer, CORPUS.slice(2));
    await deleteDocuments(['alpha'], writer, BULK_CHECKPOINTS);
    // No refresh call: the read-only store follows the writer's commits on its own.
    expect(await reader.stats()).toMatchObject({ documents: 3, hnswLive: (await writer.stats()).passages });
    const query = await embedder.embedQuery('plonkit');
    expect(await reader.denseSearch(query, 3)).toEqual(await writer.denseSearch(query, 3));
    expect((await reader.verify()).ok).toBe(true);
    // Uncheckpointed writes are followed too.
    await writer.writeDocuments([]);
    await deleteDocuments(['beta'], writer, { everyPassages: Number.POSITIVE_INFINITY, atEnd: false });
    expect(await reader.getDocument('beta')).toBeUndefined();
    expect((await reader.stats()).hnswLive).toBe((await writer.stats()).passages);

    await closeStore(writer);
    await openStore(dir);
  });
});
