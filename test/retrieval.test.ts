import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ingestDocuments, type SourceDocument } from '../src/ingest/index.js';
import { Embedder } from '../src/models/index.js';
import { reciprocalRankFusion, Retriever, toFtsQuery, type SearchMode } from '../src/retrieval/index.js';
import { EmbeddingMismatchError, InvalidFilterError, type PassageStore, type SearchFilter } from '../src/store/index.js';
import { BERT_TINY, FIXTURES_DIR } from './helpers/fixtures.js';
import { DEFAULTS, ingestOptions, openTestStore } from './helpers/store.js';

const WORDS = (
  'river mountain forest ocean desert city village castle bridge tower garden market harbor valley island ' +
  'engine planet comet galaxy crystal silver copper marble canvas violin piano poetry theory history science'
).split(' ');

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** 80 documents of ~4 passages, each with a unique marker word and filterable metadata. */
function corpus(): SourceDocument[] {
  const rand = prng(42);
  return Array.from({ length: 80 }, (_, d) => {
    const sentences = Array.from({ length: 12 }, () => {
      const words = Array.from({ length: 8 }, () => WORDS[Math.floor(rand() * WORDS.length)]!);
      return `The ${words.join(' ')} marker${d}.`;
    });
    return {
      id: `doc-${d}`,
      title: `Document ${d}`,
      text: sentences.join(' '),
      metadata: { group: d % 3, lang: d % 2 === 0 ? 'en' : 'de', featured: d % 4 === 0 },
    };
  });
}

const TMP = mkdtempSync(path.join(os.tmpdir(), 'retrieval-test-'));
let embedder: Embedder;
let store: PassageStore;
let retriever: Retriever;
const MODES: SearchMode[] = ['dense', 'bm25', 'hybrid', 'exact'];

beforeAll(async () => {
  embedder = await Embedder.load(BERT_TINY, { modelsDir: FIXTURES_DIR, allowRemote: false, quantized: false, batchSize: 32 });
  const dir = path.join(TMP, 'index');
  store = await openTestStore(dir, { embedModel: embedder.modelId, dim: embedder.dim, hnsw: { M: 16, efConstruction: 200, efSearch: 64 } });
  await ingestDocuments(corpus(), ingestOptions(store, embedder, { chunk: { maxTokens: 48, overlapTokens: 8 } }));
  retriever = new Retriever(store, embedder, DEFAULTS.retrieval);
});

afterAll(async () => {
  await store.close();
  rmSync(TMP, { recursive: true, force: true });
});

describe('toFtsQuery', () => {
  it('quotes each word and joins with OR, dropping syntax', () => {
    expect(toFtsQuery('river AND (ocean* OR "desert')).toBe('"river" OR "ocean" OR "desert"');
    expect(toFtsQuery('title:castle NEAR(a b)')).toBe('"title" OR "castle" OR "NEAR" OR "b"');
    expect(toFtsQuery('"*():^-+')).toBe('');
    expect(toFtsQuery('Café  café CAFÉ')).toBe('"Café"');
  });

  it('drops function words unless nothing else is left', () => {
    expect(toFtsQuery('what is the capital of France')).toBe('"capital" OR "France"');
    expect(toFtsQuery('to be or not to be')).toBe('"to" OR "be" OR "or" OR "not"');
  });
});

describe('Retriever', () => {
  it('BM25 never throws on FTS5 syntax or SQL in user text', async () => {
    const nasty = [
      '"',
      '""',
      '*',
      'NEAR',
      'AND',
      'OR',
      'NOT',
      '(',
      ')',
      ':',
      'title:',
      'text:river',
      'river AND',
      'AND river',
      'NEAR(river ocean)',
      'river NEAR/2 ocean',
      '"unbalanced quote',
      'river*',
      '^river',
      '-river',
      '+river',
      '{title text}: river',
      "'; DROP TABLE passages; --",
      'marker7) OR (1=1',
      '\\',
      '\u0000',
      '🙂🙂',
      'a'.repeat(5000),
      Array(200).fill('river').join(' OR '),
    ];
    for (const query of nasty) {
      for (const mode of ['bm25', 'hybrid'] as const) {
        await expect(retriever.search(query, { mode, k: 5 }), `${mode}: ${JSON.stringify(query.slice(0, 40))}`).resolves.toBeDefined();
      }
    }
    expect((await store.stats()).passages).toBeGreaterThan(300);
    expect((await store.verify()).ok).toBe(true);
  });

  it('BM25 finds a word next to operator syntax, as a plain term', async () => {
    const { hits } = await retriever.search('marker17 AND (NEAR "*', { mode: 'bm25', k: 3 });
    expect(hits.length).toBeGreaterThan(0);
    expect(hits[0]!.docId).toBe('doc-17');
    expect(hits[0]!.score).toBeGreaterThan(0);
    for (let i = 1; i < hits.length; i++) expect(hits[i]!.score).toBeLessThanOrEqual(hits[i - 1]!.score);
  });

  it('dense scores are cosine similarities and agree with exact search at the top', async () => {
    const query = 'river valley castle marker5';
    const dense = await retriever.search(query, { mode: 'dense', k: 10 });
    const exact = await retriever.search(query, { mode: 'exact', k: 10 });
    expect(dense.hits[0]!.passageId).toBe(exact.hits[0]!.passageId);
    expect(dense.hits[0]!.score).toBeCloseTo(exact.hits[0]!.score, 5);
    // Cosine of unit vectors: recompute from the passage's own embedding (title + text, as ingested).
    const q = await embedder.embedQuery(query);
    const [p] = await embedder.embedPassages([`${exact.hits[0]!.title}\n${exact.hits[0]!.text}`]);
    expect(exact.hits[0]!.score).toBeCloseTo(
      q.reduce((s, v, i) => s + v * p![i]!, 0),
      4,
    );
    expect(dense.timings.embedMs).toBeGreaterThan(0);
    expect(dense.timings.searchMs).toBeGreaterThanOrEqual(0);
  });

  it('HNSW recall@10 against exact search is high', async () => {
    const rand = prng(7);
    let found = 0;
    let total = 0;
    for (let i = 0; i < 30; i++) {
      const query = Array.from({ length: 5 }, () => WORDS[Math.floor(rand() * WORDS.length)]!).join(' ');
      const vector = await embedder.embedQuery(query);
      const exact = new Set((await store.exactSearch(vector, 10)).map((h) => h.label));
      found += (await store.denseSearch(vector, 10)).filter((h) => exact.has(h.label)).length;
      total += exact.size;
    }
    expect(found / total).toBeGreaterThanOrEqual(0.95);
  });

  it('hybrid fuses both lists with reciprocal rank fusion', async () => {
    const query = 'marker23 piano poetry';
    const { hits } = await retriever.search(query, { mode: 'hybrid', k: 10 });
    const dense = (await retriever.search(query, { mode: 'dense', k: 50 })).hits.map((h) => h.passageId);
    const bm25 = (await retriever.search(query, { mode: 'bm25', k: 50 })).hits.map((h) => h.passageId);
    expect(hits).toHaveLength(10);
    for (const hit of hits) {
      const rd = dense.indexOf(hit.passageId);
      const rb = bm25.indexOf(hit.passageId);
      const expected = (rd >= 0 ? 1 / (60 + rd + 1) : 0) + (rb >= 0 ? 1 / (60 + rb + 1) : 0);
      expect(hit.score).toBeCloseTo(expected, 10);
      expect(hit.components?.bm25 !== undefined).toBe(rb >= 0);
      expect(hit.components?.dense !== undefined).toBe(rd >= 0);
    }
    for (let i = 1; i < hits.length; i++) expect(hits[i]!.score).toBeLessThanOrEqual(hits[i - 1]!.score);
    // Random fixture weights make the dense ranking arbitrary, but the best BM25 match carries the unique marker.
    expect(bm25[0]!.startsWith('doc-23#')).toBe(true);
  });

  it.each(MODES)('%s: filters restrict results to the allowed documents and metadata', async (mode) => {
    const query = 'river mountain marker3 marker4 marker9';
    const byDoc = await retriever.search(query, { mode, k: 10, filter: { docIds: ['doc-3', 'doc-9'] } });
    expect(byDoc.hits.length).toBeGreaterThan(0);
    expect(byDoc.hits.every((h) => ['doc-3', 'doc-9'].includes(h.docId))).toBe(true);

    const byMeta = await retriever.search(query, { mode, k: 20, filter: { metadata: { group: 0, lang: 'de' } } });
    expect(byMeta.hits.length).toBeGreaterThan(0);
    for (const h of byMeta.hits) expect(h.metadata).toMatchObject({ group: 0, lang: 'de' });

    const both = await retriever.search(query, { mode, k: 20, filter: { docIds: ['doc-3', 'doc-4'], metadata: { featured: true } } });
    expect(both.hits.length).toBeGreaterThan(0);
    expect(both.hits.every((h) => h.docId === 'doc-4')).toBe(true);

    // Type-strict: the number 0 is stored, the string "0" matches nothing.
    expect((await retriever.search(query, { mode, filter: { metadata: { group: '0' } } })).hits).toEqual([]);
    expect((await retriever.search(query, { mode, filter: { docIds: [] } })).hits).toEqual([]);
    expect((await retriever.search(query, { mode, filter: { docIds: ['no-such-doc'] } })).hits).toEqual([]);
  });

  it('dense filters are applied inside the HNSW walk, also for large allowed sets', async () => {
    // Threshold 0 forces the graph walk with the label filter instead of the exact path for small sets.
    const graphStore = await openTestStore(store.location, {
      embedModel: embedder.modelId,
      dim: embedder.dim,
      hnsw: { efSearch: 64 },
      readonly: true,
      exactFilterThreshold: 0,
    });
    try {
      const vector = await embedder.embedQuery('ocean harbor island');
      const filter = { metadata: { lang: 'en' } };
      // Every passage the filter admits: an exact search asked for more than there are.
      const allowedBy = async (f: SearchFilter) => new Set((await graphStore.exactSearch(vector, 1_000_000, f)).map((h) => h.label));
      const allowed = await allowedBy(filter);
      expect(allowed.size).toBeGreaterThan(100);
      const viaGraph = await graphStore.denseSearch(vector, 10, { filter });
      expect(viaGraph).toHaveLength(10);
      expect(viaGraph.every((h) => allowed.has(h.label))).toBe(true);
      const exact = new Set((await graphStore.exactSearch(vector, 10, filter)).map((h) => h.label));
      expect(viaGraph.filter((h) => exact.has(h.label)).length).toBeGreaterThanOrEqual(9);
      // A filter admitting only a few passages still fills k up to what exists.
      const few = await graphStore.denseSearch(vector, 10, { filter: { docIds: ['doc-11'] } });
      expect(few.map((h) => h.label).sort()).toEqual([...(await allowedBy({ docIds: ['doc-11'] }))].sort());
    } finally {
      await graphStore.close();
    }
  });

  it('rejects malformed filters with a clear error', async () => {
    await expect(retriever.search('river', { mode: 'bm25', filter: { metadata: { 'bad\\': 1 } } })).rejects.toThrow(InvalidFilterError);
    await expect(
      retriever.search('river', { mode: 'dense', filter: { metadata: { nested: { a: 1 } as unknown as string } } }),
    ).rejects.toThrow(InvalidFilterError);
  });

  it('handles k, empty queries and unknown modes', async () => {
    const small = new Retriever(store, embedder, { ...DEFAULTS.retrieval, defaultK: 3, maxK: 5 });
    expect((await small.search('river', { mode: 'exact' })).hits).toHaveLength(3);
    expect((await small.search('river', { mode: 'exact', k: 50 })).hits).toHaveLength(5);
    await expect(small.search('river', { k: 0 })).rejects.toThrow(RangeError);
    await expect(small.search('river', { mode: 'fuzzy' as SearchMode })).rejects.toThrow(/unknown search mode/);
    expect(await small.search('   ', { mode: 'hybrid' })).toEqual({ hits: [], timings: { embedMs: 0, searchMs: 0 } });
    const bm25 = await small.search('river', { mode: 'bm25' });
    expect(bm25.timings.embedMs).toBe(0);
  });

  it('refuses an embedder other than the index model', async () => {
    const dir = path.join(TMP, 'other-index');
    const other = await openTestStore(dir, { embedModel: 'Xenova/bge-small-en-v1.5', dim: 384 });
    try {
      expect(() => new Retriever(other, embedder, DEFAULTS.retrieval)).toThrow(EmbeddingMismatchError);
      expect(() => new Retriever(other, embedder, DEFAULTS.retrieval)).toThrow(/Xenova\/bge-small-en-v1\.5.*fixture-bert-tiny/);
    } finally {
      await other.close();
    }
  });
});

describe('reciprocalRankFusion', () => {
  it('sums weight / (k + rank) over lists and ranks items found by both first', () => {
    const fused = reciprocalRankFusion(
      [
        { labels: [1, 2, 3], weight: 1 },
        { labels: [3, 4], weight: 2 },
      ],
      10,
    );
    expect(fused.map((f) => f.label)).toEqual([3, 4, 1, 2]);
    expect(fused[0]!.score).toBeCloseTo(1 / 13 + 2 / 11, 12);
    expect(fused[1]!.score).toBeCloseTo(2 / 12, 12);
    expect(fused[2]!.score).toBeCloseTo(1 / 11, 12);
  });

  it('ignores zero-weight lists and breaks ties by label', () => {
    expect(
      reciprocalRankFusion(
        [
          { labels: [9, 8], weight: 0 },
          { labels: [5], weight: 1 },
        ],
        60,
      ).map((f) => f.label),
    ).toEqual([5]);
    expect(
      reciprocalRankFusion(
        [
          { labels: [7], weight: 1 },
          { labels: [3], weight: 1 },
        ],
        60,
      ).map((f) => f.label),
    ).toEqual([3, 7]);
  });
});
