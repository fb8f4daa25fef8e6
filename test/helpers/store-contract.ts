/**
 * The contract every storage engine must meet, as a vitest suite parameterised by engine. The SQLite engine runs it
 * in test/store-contract.test.ts; another engine calls `runStoreContract(name, makeEngine)` the same way.
 *
 * Vectors are synthetic (clustered, 32-d) so the suite needs no model and checks exact properties only.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { EngineSpec, PassageStore, StoreEngine } from '../../src/store/index.js';
import { EmbeddingMismatchError, CollectionDataNotFoundError, InvalidCollectionNameError, openStoreEngine } from '../../src/store/index.js';
import { REPO_ROOT } from './fixtures.js';
import { DEFAULTS } from './store.js';
import { CONTRACT_DIM, CONTRACT_MODEL, contractDocument, contractOpenOptions, contractVector } from './store-contract-data.js';

export { CONTRACT_DIM, CONTRACT_MODEL, contractDocument, contractOpenOptions, contractVector };

export interface ContractEngine {
  engine: StoreEngine;
  /** Opens the same storage from another process (JSON-serialisable). */
  spec: EngineSpec;
  cleanup(): Promise<void>;
}

/** Opens `spec` for the suite; cleaning up closes the engine and removes `folder`, where it keeps its files. */
export async function openContractEngine(spec: EngineSpec, folder: string): Promise<ContractEngine> {
  const engine = await openStoreEngine(spec);
  return {
    engine,
    spec,
    cleanup: async () => {
      await engine.close();
      rmSync(folder, { recursive: true, force: true });
    },
  };
}

const BM25 = { titleWeight: 1, textWeight: 1 };

export function runStoreContract(name: string, makeEngine: () => Promise<ContractEngine>): void {
  describe(`storage contract: ${name}`, () => {
    const cleanups: Array<() => Promise<void>> = [];
    afterEach(async () => {
      while (cleanups.length > 0) await cleanups.pop()!();
    });

    async function fresh(): Promise<ContractEngine> {
      const made = await makeEngine();
      cleanups.push(() => made.cleanup());
      return made;
    }

    async function openNew(engine: StoreEngine, collection = 'contract'): Promise<PassageStore> {
      const store = await engine.openCollection(collection, contractOpenOptions());
      cleanups.push(() => store.close());
      return store;
    }

    it('CRUD: writes, reads back, replaces, lists and reports per-document outcomes', async () => {
      const { engine } = await fresh();
      const store = await openNew(engine);
      expect(store).toMatchObject({ name: 'contract', embedModel: CONTRACT_MODEL, dim: CONTRACT_DIM, readonly: false });
      const written = await store.writeDocuments([
        contractDocument('a', 1, 3, { lang: 'en' }),
        contractDocument('b', 2, 2, { lang: 'de' }),
      ]);
      expect(written).toMatchObject({ inserted: 2, replaced: 0, passagesAdded: 5, passagesRemoved: 0 });
      expect(written.documents).toEqual([
        { id: 'a', status: 'added', passages: 3 },
        { id: 'b', status: 'added', passages: 2 },
      ]);

      expect(await store.getDocument('a')).toEqual({
        id: 'a',
        title: 'Title a',
        metadata: { lang: 'en' },
        contentHash: 'hash-a-1',
        chunking: 'contract',
        passages: 3,
      });
      expect(await store.getDocument('nope')).toBeUndefined();
      const passages = await store.passagesOfDocument('a');
      expect(passages.map((p) => [p.id, p.chunkNo, p.docId, p.charStart, p.charEnd])).toEqual([
        ['a#0', 0, 'a', 0, 9],
        ['a#1', 1, 'a', 10, 19],
        ['a#2', 2, 'a', 20, 29],
      ]);
      expect(passages[0]!.metadata).toEqual({ lang: 'en' });
      const byLabel = await store.passagesByLabels([...passages.map((p) => p.label), 987_654]);
      expect([...byLabel.keys()].sort()).toEqual(passages.map((p) => p.label).sort());
      expect(byLabel.get(passages[1]!.label)).toEqual(passages[1]);

      const states = await store.documentStates(['a', 'b', 'missing']);
      expect(Object.fromEntries(states)).toEqual({
        a: { contentHash: 'hash-a-1', chunking: 'contract', passages: 3 },
        b: { contentHash: 'hash-b-2', chunking: 'contract', passages: 2 },
      });

      const replaced = await store.writeDocuments([contractDocument('a', 11, 1, { lang: 'fr' })]);
      expect(replaced).toMatchObject({ inserted: 0, replaced: 1, passagesAdded: 1, passagesRemoved: 3 });
      expect(replaced.documents).toEqual([{ id: 'a', status: 'updated', passages: 1 }]);
      const after = await store.passagesOfDocument('a');
      expect(after.map((p) => p.id)).toEqual(['a#0']);
      expect(after[0]!.text).toContain('w11p0');
      // Old passages are gone everywhere, and labels are never reused.
      expect((await store.passagesByLabels(passages.map((p) => p.label))).size).toBe(0);
      expect(passages.map((p) => p.label)).not.toContain(after[0]!.label);

      const stats = await store.stats();
      expect(stats).toMatchObject({ embedModel: CONTRACT_MODEL, dim: CONTRACT_DIM, documents: 2, passages: 3, vectors: 3, hnswLive: 3 });
      expect(stats.bytes).toBeGreaterThan(0);
      expect(await store.verify()).toMatchObject({ ok: true, problems: [] });
    });

    it('lists documents by page, id prefix and metadata', async () => {
      const { engine } = await fresh();
      const store = await openNew(engine);
      const ids = ['folder/x/1', 'folder/x/2', 'folder/y/1', 'other/1', 'folder%_*/1'];
      await store.writeDocuments(ids.map((id, i) => contractDocument(id, 20 + i, 1, { source: id.split('/')[0]!, n: i })));
      const all: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await store.listDocuments({ limit: 2, after });
        expect(page.documents.length).toBeLessThanOrEqual(2);
        all.push(...page.documents.map((d) => d.id));
        if (!page.next) break;
        after = page.next;
      }
      expect(all).toEqual([...ids].sort());
      const prefixed = await store.listDocuments({ idPrefix: 'folder/x/' });
      expect(prefixed.documents.map((d) => d.id)).toEqual(['folder/x/1', 'folder/x/2']);
      expect(prefixed.next).toBeUndefined();
      expect(prefixed.documents[0]).toMatchObject({ title: 'Title folder/x/1', contentHash: 'hash-folder/x/1-20', chunking: 'contract' });
      // Pattern characters in a prefix are plain characters.
      expect((await store.listDocuments({ idPrefix: 'folder%_*' })).documents.map((d) => d.id)).toEqual(['folder%_*/1']);
      expect((await store.listDocuments({ idPrefix: 'folder_' })).documents).toEqual([]);
      expect((await store.listDocuments({ metadata: { source: 'other' } })).documents.map((d) => d.id)).toEqual(['other/1']);
      expect((await store.listDocuments({ metadata: { n: 1 } })).documents.map((d) => d.id)).toEqual(['folder/x/2']);
      expect((await store.listDocuments({ metadata: { n: '1' } })).documents).toEqual([]);
    });

    it('exports every document with passages and vectors, so another collection takes them unchanged', async () => {
      const { engine } = await fresh();
      const source = await openNew(engine, 'export-from');
      const docs = Array.from({ length: 7 }, (_, i) => contractDocument(`e${i}`, 300 + i, 1 + (i % 3), { n: i }));
      await source.writeDocuments(docs);
      const pages: string[][] = [];
      const target = await openNew(engine, 'export-to');
      for await (const page of source.exportDocuments(3)) {
        pages.push(page.map((w) => w.document.id));
        await target.writeDocuments(page);
      }
      expect(pages).toEqual([['e0', 'e1', 'e2'], ['e3', 'e4', 'e5'], ['e6']]);
      for (const d of docs) {
        const [from, to] = [await source.passagesOfDocument(d.document.id), await target.passagesOfDocument(d.document.id)];
        expect(to.map(({ label: _l, ...p }) => p)).toEqual(from.map(({ label: _l, ...p }) => p));
        expect(await target.getDocument(d.document.id)).toEqual(await source.getDocument(d.document.id));
      }
      const query = contractVector(301 * 100);
      const [a, b] = [await source.exactSearch(query, 5), await target.exactSearch(query, 5)];
      expect(b).toHaveLength(a.length);
      b.forEach((h, i) => expect(h.score).toBeCloseTo(a[i]!.score, 5));
      let exported = 0;
      for await (const page of (await openNew(engine, 'export-empty')).exportDocuments(10)) exported += page.length;
      expect(exported).toBe(0);
    });

    it('applies a batch atomically: a bad batch changes nothing, a good one is seen whole', async () => {
      const { engine } = await fresh();
      const store = await openNew(engine);
      await store.writeDocuments([contractDocument('keep', 1)]);
      const bad = contractDocument('bad', 2);
      bad.passages[1]!.vector = new Float32Array(CONTRACT_DIM + 1);
      await expect(store.writeDocuments([contractDocument('new', 3), contractDocument('keep', 4), bad])).rejects.toThrow();
      await expect(store.writeDocuments([contractDocument('dup', 5), contractDocument('dup', 6)])).rejects.toThrow();
      await expect(
        store.writeDocuments([{ ...contractDocument('x', 7), document: { ...contractDocument('x', 7).document, id: '' } }]),
      ).rejects.toThrow();
      expect(await store.getDocument('new')).toBeUndefined();
      expect(await store.getDocument('dup')).toBeUndefined();
      expect((await store.getDocument('keep'))!.contentHash).toBe('hash-keep-1');
      expect((await store.stats()).passages).toBe(3);
      expect((await store.verify()).ok).toBe(true);

      await store.writeDocuments(Array.from({ length: 20 }, (_, i) => contractDocument(`batch${i}`, 100 + i, 2)));
      const found = await store.bm25Search(['shared'], 1000, BM25);
      expect(found).toHaveLength(43);
    });

    it('a large write lets reads run while it works, and they see none of it until it is whole', async () => {
      const { engine } = await fresh();
      const store = await openNew(engine);
      await store.writeDocuments([contractDocument('old', 1, 40)]);
      // One write adding a large document and replacing another: thousands of passages, FTS rows and graph points.
      const big = contractDocument('big', 2, 4000);
      const probe = big.passages[17]!.vector;
      const snapshot = async () => {
        // What searches and document views see; `documentStates` is the writers' view, which in a replicated
        // deployment is the database's and runs ahead of the replica's searchable state.
        const stats = await store.stats();
        return {
          big: (await store.getDocument('big'))?.passages ?? 0,
          old: (await store.getDocument('old'))?.passages ?? 0,
          passages: stats.passages,
          searchable: stats.hnswLive,
          bm25: (await store.bm25Search(['w2p17', 'w3p5'], 10, BM25)).length,
          exactVector: (await store.denseSearch(probe, 1)).some((h) => h.score > 0.9999),
        };
      };
      const before = await snapshot();
      expect(before).toEqual({ big: 0, old: 40, passages: 40, searchable: 40, bm25: 0, exactVector: false });

      const during: Array<typeof before> = [];
      let writing = true;
      const reads = (async () => {
        for (;;) {
          await new Promise((resolve) => setImmediate(resolve));
          if (!writing) return;
          during.push(await snapshot());
        }
      })();
      await store.writeDocuments([big, contractDocument('old', 3, 3000)]);
      writing = false;
      await reads;

      // Reads were answered while the write worked; each saw the state before it or the whole of it, never a mix
      // (an engine may make the write visible a moment before its promise settles).
      const after = { big: 4000, old: 3000, passages: 7000, searchable: 7000, bm25: 2, exactVector: true };
      expect(during.filter((seen) => JSON.stringify(seen) === JSON.stringify(before)).length).toBeGreaterThan(1);
      for (const seen of during) expect([before, after]).toContainEqual(seen);
      expect(await snapshot()).toEqual(after);
      expect((await store.verify()).ok).toBe(true);
    });

    it('searches agree: dense finds what exact finds, scores are cosine, BM25 finds unique words', async () => {
      const { engine } = await fresh();
      const store = await openNew(engine);
      await store.writeDocuments(Array.from({ length: 60 }, (_, i) => contractDocument(`d${i}`, i, 4, { group: i % 3 })));
      let found = 0;
      for (let q = 0; q < 20; q++) {
        const query = contractVector(10_000 + q);
        const exact = await store.exactSearch(query, 10);
        const dense = await store.denseSearch(query, 10);
        expect(exact).toHaveLength(10);
        expect(dense).toHaveLength(10);
        for (let i = 1; i < exact.length; i++) expect(exact[i - 1]!.score).toBeGreaterThanOrEqual(exact[i]!.score);
        const exactScore = new Map(exact.map((h) => [h.label, h.score]));
        for (const h of dense) {
          if (exactScore.has(h.label)) {
            found++;
            expect(h.score).toBeCloseTo(exactScore.get(h.label)!, 4);
          }
        }
      }
      expect(found / 200).toBeGreaterThanOrEqual(0.9);
      // A passage's own vector finds it first, with cosine 1.
      const own = contractVector(17 * 100 + 2);
      const top = (await store.exactSearch(own, 1))[0]!;
      expect(top.score).toBeCloseTo(1, 5);
      expect((await store.passagesByLabels([top.label])).get(top.label)!.id).toBe('d17#2');
      expect((await store.denseSearch(own, 1))[0]!.label).toBe(top.label);

      const bm25 = await store.bm25Search(['w17p2'], 5, BM25);
      expect(bm25).toHaveLength(1);
      expect(bm25[0]!.label).toBe(top.label);
      expect((await store.bm25Search(['w17p2', 'w18p1'], 5, BM25)).length).toBe(2);
      // Words that are query syntax elsewhere are plain words here.
      for (const terms of [['AND'], ['"'], ['NEAR(', 'a'], ['title:x'], ['*'], ['']]) {
        await expect(store.bm25Search(terms, 5, BM25)).resolves.toBeInstanceOf(Array);
      }
      expect(await store.bm25Search([], 5, BM25)).toEqual([]);
      expect(await store.denseSearch(own, 0)).toEqual([]);
      await expect(store.denseSearch(new Float32Array(CONTRACT_DIM + 1), 3)).rejects.toThrow();
    });

    it('filters apply inside every search, by document id and type-strict metadata', async () => {
      const { engine } = await fresh();
      const store = await openNew(engine);
      await store.writeDocuments(
        Array.from({ length: 60 }, (_, i) => contractDocument(`d${i}`, i, 4, { group: i % 3, even: i % 2 === 0, tag: `t${i % 5}` })),
      );
      const query = contractVector(555);
      const labelsOf = async (docIds: string[]) =>
        new Set((await Promise.all(docIds.map((id) => store.passagesOfDocument(id)))).flat().map((p) => p.label));
      const group1 = await labelsOf(
        Array.from({ length: 60 }, (_, i) => i)
          .filter((i) => i % 3 === 1)
          .map((i) => `d${i}`),
      );

      for (const search of [
        () => store.denseSearch(query, 10, { filter: { metadata: { group: 1 } } }),
        () => store.exactSearch(query, 10, { metadata: { group: 1 } }),
        () => store.bm25Search(['shared'], 10, { ...BM25, filter: { metadata: { group: 1 } } }),
      ]) {
        const hits = await search();
        expect(hits).toHaveLength(10);
        expect(hits.every((h) => group1.has(h.label))).toBe(true);
      }
      // A filter admitting few passages still fills k up to what exists.
      const two = await labelsOf(['d4', 'd9']);
      const few = await store.denseSearch(query, 20, { filter: { docIds: ['d4', 'd9'] } });
      expect(new Set(few.map((h) => h.label))).toEqual(two);
      expect(new Set((await store.exactSearch(query, 20, { docIds: ['d4', 'd9'] })).map((h) => h.label))).toEqual(two);
      // Type-strict values, combined conditions, empty results.
      expect(await store.exactSearch(query, 10, { metadata: { group: '1' } })).toEqual([]);
      const evenT2 = await store.exactSearch(query, 100, { metadata: { even: true, tag: 't2' } });
      const expected = await labelsOf(
        Array.from({ length: 60 }, (_, i) => i)
          .filter((i) => i % 2 === 0 && i % 5 === 2)
          .map((i) => `d${i}`),
      );
      expect(new Set(evenT2.map((h) => h.label))).toEqual(expected);
      expect(await store.denseSearch(query, 10, { filter: { docIds: [] } })).toEqual([]);
      expect(await store.bm25Search(['shared'], 10, { ...BM25, filter: { docIds: ['nope'] } })).toEqual([]);
    });

    it('deletes remove documents from every search, atomically and durably', async () => {
      const { engine } = await fresh();
      const store = await openNew(engine);
      await store.writeDocuments(Array.from({ length: 10 }, (_, i) => contractDocument(`d${i}`, i, 3)));
      const doomed = [...(await store.passagesOfDocument('d3')), ...(await store.passagesOfDocument('d7'))];
      const outcome = await store.deleteDocuments(['d3', 'd7', 'never', 'd3']);
      expect(outcome).toEqual({ deleted: ['d3', 'd7'], missing: ['never'], passagesRemoved: 6 });
      const check = async (s: PassageStore) => {
        const labels = new Set(doomed.map((p) => p.label));
        for (const p of doomed) {
          const vector = contractVector(Number(p.docId.slice(1)) * 100 + p.chunkNo);
          expect((await s.denseSearch(vector, 30)).some((h) => labels.has(h.label))).toBe(false);
          expect((await s.exactSearch(vector, 30)).some((h) => labels.has(h.label))).toBe(false);
        }
        expect((await s.bm25Search(['docd3', 'docd7'], 30, BM25)).length).toBe(0);
        expect(await s.getDocument('d3')).toBeUndefined();
        expect((await s.passagesByLabels([...labels])).size).toBe(0);
        expect(await s.stats()).toMatchObject({ documents: 8, passages: 24, vectors: 24, hnswLive: 24 });
        expect(await s.verify()).toMatchObject({ ok: true, problems: [] });
      };
      await check(store);
      await store.checkpoint();
      await store.close();
      const reopened = await openNew(engine);
      await check(reopened);
    });

    it('a read-only open follows a writer without being told, and refuses writes', async () => {
      const { engine } = await fresh();
      const writer = await openNew(engine);
      await writer.writeDocuments([contractDocument('first', 1)]);
      await writer.checkpoint();
      const reader = await engine.openCollection('contract', contractOpenOptions({ readonly: true }));
      cleanups.push(() => reader.close());
      expect(reader.readonly).toBe(true);
      expect((await reader.stats()).documents).toBe(1);
      await writer.writeDocuments([contractDocument('second', 2)]);
      await writer.deleteDocuments(['first']);
      expect(await reader.getDocument('first')).toBeUndefined();
      expect((await reader.getDocument('second'))!.passages).toBe(3);
      const query = contractVector(2 * 100 + 1);
      expect(await reader.denseSearch(query, 3)).toEqual(await writer.denseSearch(query, 3));
      await expect(reader.writeDocuments([contractDocument('x', 3)])).rejects.toThrow(/read-only/);
      await expect(reader.deleteDocuments(['second'])).rejects.toThrow(/read-only/);
      await expect(reader.checkpoint()).rejects.toThrow(/read-only/);
    });

    it('keeps collections apart, refuses bad names and other models, and drops a collection whole', async () => {
      const { engine } = await fresh();
      const a = await openNew(engine, 'col-a');
      const b = await openNew(engine, 'col-b');
      await a.writeDocuments([contractDocument('only-a', 1)]);
      expect(await b.getDocument('only-a')).toBeUndefined();
      expect(await b.bm25Search(['doconlya'], 10, BM25)).toEqual([]);
      expect(await b.exactSearch(contractVector(100), 10)).toEqual([]);
      expect((await engine.listCollections()).map((c) => c.name)).toEqual(['col-a', 'col-b']);
      expect(await engine.describeCollection('col-a')).toMatchObject({
        embedModel: CONTRACT_MODEL,
        dim: CONTRACT_DIM,
        chunk: DEFAULTS.chunk,
      });
      expect(await engine.describeCollection('col-none')).toBeUndefined();

      for (const bad of ['../x', 'A', '', '.hidden', 'a/b', 'x'.repeat(65)]) {
        await expect(engine.openCollection(bad, contractOpenOptions())).rejects.toThrow(InvalidCollectionNameError);
      }
      await expect(engine.openCollection('col-none', contractOpenOptions({ create: false }))).rejects.toThrow(CollectionDataNotFoundError);
      await b.close();
      await expect(engine.openCollection('col-b', { ...contractOpenOptions(), embedModel: 'other/model' })).rejects.toThrow(
        EmbeddingMismatchError,
      );
      await expect(engine.openCollection('col-b', { ...contractOpenOptions(), dim: CONTRACT_DIM + 1 })).rejects.toThrow(
        EmbeddingMismatchError,
      );

      expect(await engine.dropCollection('col-b')).toBe(true);
      expect(await engine.dropCollection('col-b')).toBe(false);
      expect((await engine.listCollections()).map((c) => c.name)).toEqual(['col-a']);
      const recreated = await openNew(engine, 'col-b');
      expect((await recreated.stats()).documents).toBe(0);
      expect((await a.getDocument('only-a'))!.passages).toBe(3);
    });

    it('reopens after a crash with every acknowledged write present and all invariants holding', async () => {
      const { engine, spec } = await fresh();
      // The collection exists before the writer process starts, as a server's would.
      const setup = await engine.openCollection('crashy', contractOpenOptions());
      await setup.writeDocuments([contractDocument('pre', 9)]);
      await setup.close();

      const acked = await writeUntilKilled(spec, 'crashy', 12);
      expect(acked.length).toBeGreaterThanOrEqual(12);

      const store = await engine.openCollection('crashy', contractOpenOptions());
      cleanups.push(() => store.close());
      const report = await store.verify();
      expect(report.problems).toEqual([]);
      for (const id of ['pre', ...acked]) expect(await store.getDocument(id), id).toBeDefined();
      // Documents are whole: three passages each, searchable by their words and their vectors.
      const stats = await store.stats();
      expect(stats.passages).toBe(stats.documents * 3);
      expect(stats.hnswLive).toBe(stats.passages);
      const last = acked.at(-1)!;
      const seed = Number(last.slice(1));
      expect((await store.bm25Search([`w${seed}p1`], 3, BM25)).length).toBe(1);
      expect((await store.denseSearch(contractVector(seed * 100 + 1), 1))[0]!.score).toBeCloseTo(1, 5);
    }, 120_000);
  });
}

/**
 * Runs test/helpers/store-contract-child.ts: it opens the engine from `spec`, writes one document per batch and
 * prints "ack <id>" after each write resolves; it is SIGKILLed after `killAfter` acknowledgements.
 */
function writeUntilKilled(spec: EngineSpec, collection: string, killAfter: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(REPO_ROOT, 'test', 'helpers', 'store-contract-child.ts'), JSON.stringify({ spec, collection })],
      {
        cwd: REPO_ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const acked: string[] = [];
    let buffer = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      buffer += d.toString();
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line.startsWith('ack ')) acked.push(line.slice(4));
        if (acked.length === killAfter) child.kill('SIGKILL');
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (_code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`writer was not killed (signal ${signal}); stderr:\n${stderr}`));
      else resolve(acked);
    });
  });
}
