import { existsSync, mkdtempSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deleteDocuments, ingestDocuments, type SourceDocument } from '../src/ingest/index.js';
import { Embedder } from '../src/models/index.js';
import { toFtsQuery } from '../src/retrieval/index.js';
import { EmbeddingMismatchError, IndexLockedError, IndexStore, type IndexStoreOptions } from '../src/store/index.js';
import { BERT_TINY, FIXTURES_DIR } from './helpers/fixtures.js';

let embedder: Embedder;
const open: IndexStore[] = [];
const TMP = mkdtempSync(path.join(os.tmpdir(), 'store-test-'));

beforeAll(async () => {
  embedder = await Embedder.load(BERT_TINY, { modelsDir: FIXTURES_DIR, allowRemote: false, quantized: false, batchSize: 16 });
});

afterEach(() => {
  while (open.length > 0) open.pop()!.close();
});

afterAll(() => rmSync(TMP, { recursive: true, force: true }));

function newDir(): string {
  return path.join(mkdtempSync(path.join(TMP, 'case-')), 'index');
}

function openStore(dir: string, extra: Partial<IndexStoreOptions> = {}): IndexStore {
  const store = IndexStore.open(dir, { embedModel: embedder.modelId, dim: embedder.dim, ...extra });
  open.push(store);
  return store;
}

function closeStore(store: IndexStore): void {
  store.close();
  open.splice(open.indexOf(store), 1);
}

/** Each document carries a made-up marker word so BM25 can find exactly it. */
function doc(id: string, marker: string, sentences = 3, metadata: Record<string, unknown> = {}): SourceDocument {
  const text = Array.from({ length: sentences }, (_, i) => `Sentence ${i} of ${id} mentions ${marker} and the river delta.`).join(' ');
  return { id, title: `Title ${id}`, text, metadata };
}

const CORPUS = [doc('alpha', 'zorblax', 4), doc('beta', 'quintrel', 12), doc('gamma', 'mervish', 2), doc('delta', 'plonkit', 6)];
const CHUNK = { maxTokens: 40, overlapTokens: 8 };

async function ingest(store: IndexStore, docs: SourceDocument[], chunk = CHUNK) {
  return ingestDocuments(docs, { store, embedder, chunk, progress: false, batchPassages: 8 });
}

function bm25Docs(store: IndexStore, words: string): string[] {
  const hits = store.bm25Search(toFtsQuery(words), 100);
  return [...store.passagesByLabels(hits.map((h) => h.label)).values()].map((p) => p.docId);
}

/** Labels the HNSW graph returns when asked for more neighbours than there are passages. */
function denseLabels(store: IndexStore, vector: Float32Array): number[] {
  return store.denseSearch(vector, 1000, { ef: 1000 }).map((h) => h.label);
}

describe('IndexStore with ingest', () => {
  it('ingests documents into SQLite, FTS and HNSW consistently', async () => {
    const store = openStore(newDir());
    const summary = await ingest(store, CORPUS);
    expect(summary).toMatchObject({ documentsSeen: 4, added: 4, updated: 0, unchanged: 0, errors: [] });
    const stats = store.stats();
    expect(stats.documents).toBe(4);
    expect(stats.passages).toBe(summary.passagesAdded);
    expect(stats.passages).toBeGreaterThan(4);
    expect(stats.hnswLive).toBe(stats.passages);
    expect(stats.pending).toBe(0);
    expect(store.verify()).toMatchObject({ ok: true, problems: [] });
    expect(bm25Docs(store, 'quintrel')).toEqual(Array(store.getDocument('beta')!.passages).fill('beta'));
  });

  it('re-ingesting unchanged documents is a no-op', async () => {
    const dir = newDir();
    const store = openStore(dir);
    await ingest(store, CORPUS);
    const before = store.passagesOfDocument('beta');
    const generation = store.stats().generation;
    const again = await ingest(store, CORPUS);
    expect(again).toMatchObject({ documentsSeen: 4, added: 0, updated: 0, unchanged: 4, passagesAdded: 0, passagesRemoved: 0 });
    expect(store.passagesOfDocument('beta')).toEqual(before);
    // Nothing changed, so no new HNSW generation was written.
    expect(store.stats().generation).toBe(generation);
  });

  it('a changed document replaces its passages everywhere, leaving no orphans', async () => {
    const store = openStore(newDir());
    await ingest(store, CORPUS);
    const old = store.passagesOfDocument('beta');
    const oldVectors = await embedder.embedPassages(old.map((p) => `${p.title}\n${p.text}`));

    const changed = doc('beta', 'flimwort', 20);
    const summary = await ingest(store, [changed, ...CORPUS.filter((d) => d.id !== 'beta')]);
    expect(summary).toMatchObject({ updated: 1, unchanged: 3, added: 0, passagesRemoved: old.length });
    const fresh = store.passagesOfDocument('beta');
    expect(fresh.length).toBe(summary.passagesAdded);
    expect(fresh.map((p) => p.id)).toEqual(fresh.map((_, i) => `beta#${i}`));
    expect(fresh.every((p) => p.text.includes('flimwort'))).toBe(true);

    expect(bm25Docs(store, 'quintrel')).toEqual([]);
    expect(bm25Docs(store, 'flimwort').length).toBe(fresh.length);
    const oldLabels = new Set(old.map((p) => p.label));
    for (const v of oldVectors) expect(denseLabels(store, v).filter((l) => oldLabels.has(l))).toEqual([]);
    expect(store.verify()).toMatchObject({ ok: true, problems: [] });
  });

  it('treats metadata and chunking changes as changes', async () => {
    const store = openStore(newDir());
    await ingest(store, CORPUS);
    const withMeta = CORPUS.map((d) => (d.id === 'gamma' ? { ...d, metadata: { lang: 'en' } } : d));
    expect(await ingest(store, withMeta)).toMatchObject({ updated: 1, unchanged: 3 });
    expect(store.passagesOfDocument('gamma').every((p) => p.metadata.lang === 'en')).toBe(true);
    // Same content, different passage budget: every document is re-chunked.
    expect(await ingest(store, withMeta, { maxTokens: 24, overlapTokens: 4 })).toMatchObject({ updated: 4, unchanged: 0 });
    expect(store.verify().ok).toBe(true);
  });

  it('keeps the last version when a document appears twice in one run', async () => {
    const store = openStore(newDir());
    const summary = await ingest(store, [doc('twice', 'firstver'), doc('other', 'otherword'), doc('twice', 'secondver')]);
    expect(summary).toMatchObject({ documentsSeen: 3, added: 2, updated: 1 });
    expect(bm25Docs(store, 'firstver')).toEqual([]);
    expect(new Set(bm25Docs(store, 'secondver'))).toEqual(new Set(['twice']));
    expect(store.verify().ok).toBe(true);
  });

  it('delete removes a document from SQLite, FTS and HNSW, durably', async () => {
    const dir = newDir();
    const store = openStore(dir);
    await ingest(store, CORPUS);
    const doomed = store.passagesOfDocument('delta');
    const vectors = await embedder.embedPassages(doomed.map((p) => `${p.title}\n${p.text}`));
    expect(bm25Docs(store, 'plonkit').length).toBe(doomed.length);

    const summary = deleteDocuments(['delta', 'no-such-doc'], store);
    expect(summary).toMatchObject({ deleted: 1, passagesRemoved: doomed.length });
    expect(summary.errors).toEqual([{ path: 'no-such-doc', message: expect.stringMatching(/no document/) }]);

    const check = (s: IndexStore) => {
      expect(s.getDocument('delta')).toBeUndefined();
      expect(s.passagesOfDocument('delta')).toEqual([]);
      expect(bm25Docs(s, 'plonkit')).toEqual([]);
      const labels = new Set(doomed.map((p) => p.label));
      for (const v of vectors) expect(denseLabels(s, v).filter((l) => labels.has(l))).toEqual([]);
      expect(s.exactSearch(vectors[0]!, 1000).filter((h) => labels.has(h.label))).toEqual([]);
      expect(s.verify()).toMatchObject({ ok: true, problems: [] });
    };
    check(store);
    closeStore(store);
    check(openStore(dir));
  });

  it('persists across close and open', async () => {
    const dir = newDir();
    const store = openStore(dir);
    await ingest(store, CORPUS);
    const stats = store.stats();
    const query = await embedder.embedQuery('river delta');
    const before = store.denseSearch(query, 5);
    closeStore(store);
    const reopened = openStore(dir);
    expect(reopened.stats()).toEqual(stats);
    expect(reopened.denseSearch(query, 5)).toEqual(before);
    expect(readdirSync(dir).filter((f) => f.startsWith('hnsw-'))).toEqual([`hnsw-${stats.generation}.bin`]);
  });

  it('rebuilds the graph from stored vectors when the HNSW file is gone', async () => {
    const dir = newDir();
    const store = openStore(dir);
    await ingest(store, CORPUS);
    const query = await embedder.embedQuery('mervish');
    const exact = store.exactSearch(query, 3);
    const generation = store.stats().generation;
    closeStore(store);
    unlinkSync(path.join(dir, `hnsw-${generation}.bin`));

    const rebuilt = openStore(dir);
    expect(rebuilt.stats()).toMatchObject({ rebuiltFromVectors: true, hnswLive: rebuilt.stats().passages });
    expect(rebuilt.denseSearch(query, 3, { ef: 200 }).map((h) => h.label)).toEqual(exact.map((h) => h.label));
    // The writer saved the rebuilt graph right away, so the files on disk are consistent again.
    expect(existsSync(path.join(dir, `hnsw-${generation + 1}.bin`))).toBe(true);
    expect(rebuilt.verify()).toMatchObject({ ok: true, problems: [] });
  });

  it('refuses another embedding model or dimension, naming both models', async () => {
    const dir = newDir();
    const store = openStore(dir);
    await ingest(store, CORPUS.slice(0, 1));
    closeStore(store);

    const attempt = () => IndexStore.open(dir, { embedModel: 'Xenova/all-MiniLM-L6-v2', dim: 384 });
    expect(attempt).toThrow(EmbeddingMismatchError);
    expect(attempt).toThrow(new RegExp(`${BERT_TINY}.*Xenova/all-MiniLM-L6-v2`));
    expect(() => IndexStore.open(dir, { embedModel: embedder.modelId, dim: embedder.dim + 1 })).toThrow(EmbeddingMismatchError);
    // The failed opens left no lock behind.
    openStore(dir);
  });

  it('refuses to ingest with an embedder other than the index model', async () => {
    const store = openStore(newDir(), { embedModel: 'some/other-model' });
    await expect(ingest(store, CORPUS)).rejects.toThrow(/some\/other-model/);
  });

  it('allows one writer at a time and any number of readers that follow the writer', async () => {
    const dir = newDir();
    const writer = openStore(dir);
    await ingest(writer, CORPUS.slice(0, 2));
    expect(() => IndexStore.open(dir, { embedModel: embedder.modelId, dim: embedder.dim })).toThrow(IndexLockedError);

    const reader = openStore(dir, { readonly: true });
    expect(reader.stats().documents).toBe(2);
    expect(() => reader.deleteDocuments(['alpha'])).toThrow(/read-only/);

    await ingest(writer, CORPUS.slice(2));
    deleteDocuments(['alpha'], writer);
    expect(reader.refresh()).toBe(true);
    expect(reader.stats()).toMatchObject({ documents: 3, hnswLive: writer.stats().passages });
    const query = await embedder.embedQuery('plonkit');
    expect(reader.denseSearch(query, 3)).toEqual(writer.denseSearch(query, 3));
    expect(reader.refresh()).toBe(false);
    expect(reader.verify().ok).toBe(true);

    closeStore(writer);
    openStore(dir);
  });
});
