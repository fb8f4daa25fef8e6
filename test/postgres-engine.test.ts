/**
 * The PostgreSQL engine at the library level: two engines with their own local folders stand for two replicas over
 * one database. Vectors are small and deterministic, so no model is needed.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStoreEngine, type EngineSpec, type OpenCollectionOptions, type PassageStore, type StoreEngine } from '../src/store/index.js';

type PostgresEngineSpec = Extract<EngineSpec, { kind: 'postgres' }>;
import { migrate } from '../src/store/postgres/migrations.js';
import type { DocumentWrite } from '../src/store/types.js';
import { freshDatabase, ownPostgres, postgresAvailable, stopTestPostgres } from './helpers/postgres.js';
import { StorageUnavailableError } from '../src/store/index.js';

const DIM = 8;
const OPEN: OpenCollectionOptions = {
  embedModel: 'test-model',
  dim: DIM,
  hnsw: { M: 16, efConstruction: 200, efSearch: 200 },
  exactFilterThreshold: 256,
  create: true,
};

function vectorFor(text: string): Float32Array {
  const v = new Float32Array(DIM);
  for (let i = 0; i < text.length; i++) v[i % DIM]! += text.charCodeAt(i) / 100;
  return v;
}

function doc(id: string, texts: string[], metadata: Record<string, unknown> = {}): DocumentWrite {
  return {
    document: { id, title: `title ${id}`, contentHash: `hash-${texts.join('|')}`, chunking: 'c1', metadata },
    passages: texts.map((text, chunkNo) => ({
      id: `${id}#${chunkNo}`,
      chunkNo,
      title: `title ${id}`,
      text,
      metadata,
      charStart: 0,
      charEnd: text.length,
      vector: vectorFor(text),
    })),
  };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function ranking(store: PassageStore, terms: string[]) {
  const hits = await store.bm25Search(terms, 10, { titleWeight: 1, textWeight: 1 });
  const passages = await store.passagesByLabels(hits.map((h) => h.label));
  return hits.map((h) => ({ id: passages.get(h.label)!.id, score: h.score.toFixed(9) }));
}

async function denseRanking(store: PassageStore, text: string) {
  const hits = await store.denseSearch(vectorFor(text), 5);
  const passages = await store.passagesByLabels(hits.map((h) => h.label));
  return hits.map((h) => ({ id: passages.get(h.label)!.id, score: h.score.toFixed(6) }));
}

describe.skipIf(!postgresAvailable())('PostgreSQL engine', () => {
  let url: string;
  const dirs: string[] = [];
  const engines: StoreEngine[] = [];

  const spec = (localDir: string): PostgresEngineSpec => ({
    kind: 'postgres',
    url,
    localDir,
    poolMax: 4,
    connectTimeoutMs: 2000,
    pollIntervalMs: 200,
    applyBatchChanges: 50,
  });

  async function replica(
    localDir = mkdtempSync(path.join(os.tmpdir(), 'rag-replica-')),
  ): Promise<{ engine: StoreEngine; dir: string; builds: () => number }> {
    dirs.push(localDir);
    const messages: string[] = [];
    const log = {
      info: (_: object, msg?: string) => messages.push(msg ?? ''),
      warn: (_: object, msg?: string) => messages.push(msg ?? ''),
    };
    const engine = await openStoreEngine(spec(localDir), log);
    engines.push(engine);
    return { engine, dir: localDir, builds: () => messages.filter((m) => m === 'local index built from PostgreSQL').length };
  }

  beforeAll(async () => {
    url = await freshDatabase();
  });

  afterAll(async () => {
    for (const e of engines) await e.close().catch(() => undefined);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    await stopTestPostgres();
  });

  it('applies migrations once when replicas start together', async () => {
    const other = await freshDatabase();
    const pools = Array.from({ length: 4 }, () => new pg.Pool({ connectionString: other, max: 2 }));
    try {
      const applied = await Promise.all(pools.map((p) => migrate(p)));
      expect(applied.flat()).toEqual([1]);
      const { rows } = await pools[0]!.query('SELECT version FROM schema_migrations');
      expect(rows).toEqual([{ version: 1 }]);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('a write through A is searchable on B with the same ranking; a delete through B vanishes from A', async () => {
    const a = await replica();
    const b = await replica();
    const storeA = await a.engine.openCollection('docs', OPEN);
    const storeB = await b.engine.openCollection('docs', OPEN);
    const outcome = await storeA.writeDocuments([
      doc('d1', ['the quick brown fox', 'jumps over the lazy dog']),
      doc('d2', ['a fox in the henhouse'], { lang: 'en' }),
      doc('d3', ['nothing to see here', 'fox fox fox']),
    ]);
    expect(outcome.documents.map((d) => d.status)).toEqual(['added', 'added', 'added']);
    // Read-your-writes on A at once.
    expect((await ranking(storeA, ['fox'])).length).toBe(3);
    const onB = await until('B to converge', async () => ((await storeB.stats()).passages === 5 ? true : undefined));
    expect(onB).toBe(true);
    expect(await ranking(storeB, ['fox'])).toEqual(await ranking(storeA, ['fox']));
    expect(await denseRanking(storeB, 'fox fox')).toEqual(await denseRanking(storeA, 'fox fox'));
    expect((await storeB.stats()).replication).toMatchObject({ lagChanges: 0, database: 'ok' });

    const deleted = await storeB.deleteDocuments(['d2', 'missing']);
    expect(deleted).toMatchObject({ deleted: ['d2'], missing: ['missing'], passagesRemoved: 1 });
    await until('A to drop d2', async () => ((await storeA.getDocument('d2')) === undefined ? true : undefined));
    expect(await ranking(storeA, ['fox'])).toEqual(await ranking(storeB, ['fox']));
    expect((await storeA.verify()).problems).toEqual([]);
    await storeA.close();
    await storeB.close();
  });

  it('the same document written through two replicas at once ends whole, as one of the two versions', async () => {
    const a = await replica();
    const b = await replica();
    const storeA = await a.engine.openCollection('race', OPEN);
    const storeB = await b.engine.openCollection('race', OPEN);
    for (let round = 0; round < 5; round++) {
      const versionA = doc('same', [`alpha ${round} one`, `alpha ${round} two`, `alpha ${round} three`]);
      const versionB = doc('same', [`beta ${round} one`]);
      await Promise.all([
        storeA.writeDocuments([versionA, doc(`a${round}`, ['a'])]),
        storeB.writeDocuments([doc(`b${round}`, ['b']), versionB]),
      ]);
      for (const store of [storeA, storeB]) {
        await until('convergence', async () => ((await store.stats()).replication!.lagChanges === 0 ? true : undefined));
      }
      const [pa, pb] = await Promise.all([storeA.passagesOfDocument('same'), storeB.passagesOfDocument('same')]);
      await until('both replicas to agree', async () => {
        const [x, y] = await Promise.all([storeA.passagesOfDocument('same'), storeB.passagesOfDocument('same')]);
        return JSON.stringify(x.map((p) => p.text)) === JSON.stringify(y.map((p) => p.text)) ? true : undefined;
      });
      const texts = (await storeA.passagesOfDocument('same')).map((p) => p.text);
      const whole =
        JSON.stringify(texts) === JSON.stringify(versionA.passages.map((p) => p.text)) ||
        JSON.stringify(texts) === JSON.stringify(versionB.passages.map((p) => p.text));
      expect(whole, `mixed passages: ${JSON.stringify(texts)} (A saw ${pa.length}, B saw ${pb.length})`).toBe(true);
    }
    // Nothing lost: every other document of both writers is there on both replicas.
    await until('all documents on B', async () => ((await storeB.stats()).documents === 11 ? true : undefined));
    expect((await storeA.stats()).documents).toBe(11);
    await storeA.close();
    await storeB.close();
  });

  it('collections created or dropped on one replica appear on or vanish from the other', async () => {
    const a = await replica();
    const b = await replica();
    const created = await a.engine.openCollection('fresh', OPEN);
    await created.writeDocuments([doc('x', ['x marks the spot'])]);
    expect((await b.engine.listCollections()).map((c) => c.name)).toContain('fresh');
    const onB = await b.engine.openCollection('fresh', { ...OPEN, create: false });
    expect((await onB.stats()).documents).toBe(1);
    expect(existsSync(path.join(b.dir, 'fresh'))).toBe(true);

    await created.close();
    expect(await a.engine.dropCollection('fresh')).toBe(true);
    expect((await b.engine.listCollections()).map((c) => c.name)).not.toContain('fresh');
    await until('B to drop its local index', async () => (existsSync(path.join(b.dir, 'fresh')) ? undefined : true));
    await expect(onB.getDocument('x')).rejects.toThrow(/dropped/);
    await expect(b.engine.openCollection('fresh', { ...OPEN, create: false })).rejects.toThrow(/does not exist/);
  });

  it('a local folder held by another open replica is left alone: the second one serves from a private index', async () => {
    const a = await replica();
    const b = await replica(a.dir);
    const storeA = await a.engine.openCollection('shared-dir', OPEN);
    await storeA.writeDocuments([doc('s', ['shared folder'])]);
    const storeB = await b.engine.openCollection('shared-dir', OPEN);
    expect((await storeB.getDocument('s'))?.id).toBe('s');
    expect((await ranking(storeA, ['shared'])).map((r) => r.id)).toEqual(['s#0']);
    await storeB.close();
    expect(existsSync(path.join(a.dir, '.private')) ? readdirSync(path.join(a.dir, '.private')) : []).toEqual([]);
    expect((await storeA.verify()).ok).toBe(true);
    await storeA.close();
  });

  it('a restarted replica catches up from its checkpoint; deleted or corrupt local files are rebuilt with identical results', async () => {
    const a = await replica();
    const bDir = mkdtempSync(path.join(os.tmpdir(), 'rag-replica-'));
    let b = await replica(bDir);
    const storeA = await a.engine.openCollection('restart', OPEN);
    let storeB = await b.engine.openCollection('restart', OPEN);
    await storeA.writeDocuments([doc('r1', ['red apples are sweet']), doc('r2', ['green apples are sour', 'apple pie'])]);
    await until('B to converge', async () => ((await storeB.stats()).documents === 2 ? true : undefined));
    await storeB.close();
    await b.engine.close();

    // While B is down: an update, a delete and new documents.
    await storeA.writeDocuments([doc('r1', ['red apples are very sweet', 'apples again']), doc('r3', ['apple trees'])]);
    await storeA.deleteDocuments(['r2']);
    const applied = (await storeA.stats()).replication!.appliedChangeId;

    b = await replica(bDir);
    storeB = await b.engine.openCollection('restart', OPEN);
    expect((await storeB.stats()).replication!.appliedChangeId).toBe(applied);
    expect(b.builds(), 'caught up from its checkpoint without a rebuild').toBe(0);
    const expected = await ranking(storeA, ['apples', 'apple']);
    expect(await ranking(storeB, ['apples', 'apple'])).toEqual(expected);
    expect((await storeB.verify()).ok).toBe(true);

    // Local files deleted: rebuilt from PostgreSQL with the same results.
    await storeB.close();
    await b.engine.close();
    rmSync(path.join(bDir, 'restart'), { recursive: true, force: true });
    b = await replica(bDir);
    storeB = await b.engine.openCollection('restart', OPEN);
    expect(b.builds()).toBe(1);
    expect(await ranking(storeB, ['apples', 'apple'])).toEqual(expected);
    expect(await denseRanking(storeB, 'apple pie')).toEqual(await denseRanking(storeA, 'apple pie'));

    // Corrupt database file: rebuilt as well.
    await storeB.close();
    await b.engine.close();
    writeFileSync(path.join(bDir, 'restart', 'index.sqlite'), 'not a database');
    b = await replica(bDir);
    storeB = await b.engine.openCollection('restart', OPEN);
    expect(b.builds()).toBe(1);
    expect(await ranking(storeB, ['apples', 'apple'])).toEqual(expected);
    expect((await storeB.verify()).problems).toEqual([]);
    await storeA.close();
    await storeB.close();
  });
});

describe.skipIf(!postgresAvailable())('PostgreSQL engine when PostgreSQL restarts', () => {
  it('writes fail with StorageUnavailableError while it is down, reads go on, and both replicas recover by themselves', async () => {
    const server = await ownPostgres();
    const root = mkdtempSync(path.join(os.tmpdir(), 'rag-replica-restart-'));
    const spec = (name: string): PostgresEngineSpec => ({
      kind: 'postgres',
      url: server.url,
      localDir: path.join(root, name),
      poolMax: 4,
      connectTimeoutMs: 1000,
      pollIntervalMs: 200,
      applyBatchChanges: 50,
    });
    const a = await openStoreEngine(spec('a'));
    const b = await openStoreEngine(spec('b'));
    try {
      const storeA = await a.openCollection('live', OPEN);
      const storeB = await b.openCollection('live', OPEN);
      await storeA.writeDocuments([doc('before', ['written before the restart'])]);
      await until('B to see it', async () => ((await storeB.getDocument('before')) ? true : undefined));

      server.stopServer();
      await expect(storeA.writeDocuments([doc('during', ['refused'])])).rejects.toBeInstanceOf(StorageUnavailableError);
      await expect(storeB.deleteDocuments(['before'])).rejects.toBeInstanceOf(StorageUnavailableError);
      expect((await ranking(storeB, ['restart'])).map((r) => r.id)).toEqual(['before#0']);
      await until('B to notice', async () => ((await storeB.stats()).replication!.database === 'unavailable' ? true : undefined));

      server.start();
      await until('writes to work again', async () => {
        try {
          await storeA.writeDocuments([doc('after', ['written after the restart'])]);
          return true;
        } catch (err) {
          if (err instanceof StorageUnavailableError) return undefined;
          throw err;
        }
      });
      await until('B to converge without a restart', async () => ((await storeB.getDocument('after')) ? true : undefined));
      expect((await storeB.stats()).replication).toMatchObject({ database: 'ok', lagChanges: 0 });
      await storeA.close();
      await storeB.close();
    } finally {
      await a.close().catch(() => undefined);
      await b.close().catch(() => undefined);
      server.stop();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
