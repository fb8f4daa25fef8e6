/**
 * The PostgreSQL deployment with real server processes: replicas (`src/main.ts` with RAG_DATABASE_URL) over one
 * throwaway PostgreSQL server, each with its own local folder, on the tiny fixture models. Two replicas serve every
 * scenario (each in a collection of its own, so server starts stay few); scenarios that kill or rebuild a replica
 * restart it on the same folder.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServerProcess, type ServerProcess } from '../scripts/lib/server-process.js';
import type { ThrowawayPostgres } from '../scripts/lib/throwaway-postgres.js';
import { BERT_TINY, FIXTURES_DIR, T5_TINY } from './helpers/fixtures.js';
import { request } from './helpers/http.js';
import { ownPostgres, postgresAvailable } from './helpers/postgres.js';

/**
 * Bound on how long a change may take to reach another replica here: generous, CI machines are shared (bench:replicas
 * measures the real lag).
 */
const CONVERGE_MS = 30_000;

const WORDS = 'replica database passage vector index search answer fusion decoder encoder token attention'.split(' ');

function text(seed: number, words = 40): string {
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(WORDS[(seed * 7 + i * 3 + ((seed * i) % 5)) % WORDS.length]!);
  return `${out.join(' ')}.`;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = CONVERGE_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe.skipIf(!postgresAvailable())('replicas over one PostgreSQL', () => {
  let pgServer: ThrowawayPostgres;
  let root: string;
  let configFile: string;
  let a: ServerProcess;
  let b: ServerProcess;
  const running = new Set<ServerProcess>();

  async function startReplica(name: string): Promise<ServerProcess> {
    const server = await startServerProcess({
      modelsDir: FIXTURES_DIR,
      embedModel: BERT_TINY,
      readerModel: T5_TINY,
      indexesDir: path.join(root, name),
      corpusDir: path.join(root, 'no-corpus'),
      configFile,
      env: { RAG_AUTH_DISABLED: 'true', RAG_DATABASE_URL: pgServer.url },
      // Model loading on a shared, loaded machine can take long; the tests bound replication, not start-up.
      readyTimeoutMs: 180_000,
    });
    running.add(server);
    void server.exited.then(() => running.delete(server));
    return server;
  }

  async function stop(server: ServerProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    server.child.kill(signal);
    await server.exited;
  }

  const route = (collection: string, rest: string) => `/v1/collections/${collection}${rest}`;

  const search = async (server: ServerProcess, collection: string, query: string, mode = 'hybrid') => {
    const reply = await request(server.base, 'POST', route(collection, '/search'), { body: { query, k: 10, mode } });
    expect(reply.status, reply.text).toBe(200);
    return (reply.json.results as Array<{ passageId: string; score: number }>).map((r) => `${r.passageId} ${r.score.toFixed(9)}`);
  };

  const upsert = (server: ServerProcess, collection: string, docs: Array<{ id: string; text: string }>) =>
    request(server.base, 'POST', route(collection, '/documents'), { body: { documents: docs } });

  const getDoc = (server: ServerProcess, collection: string, id: string) =>
    request(server.base, 'GET', route(collection, `/documents/${id}`));

  const stats = async (server: ServerProcess, collection: string) => (await request(server.base, 'GET', route(collection, '/stats'))).json;

  async function createCollection(name: string): Promise<void> {
    const reply = await request(a.base, 'POST', '/v1/collections', { body: { name } });
    expect(reply.status, reply.text).toBe(201);
    await until(`B to see collection ${name}`, async () =>
      (await request(b.base, 'GET', route(name, '/stats'))).status === 200 ? true : undefined,
    );
  }

  beforeAll(async () => {
    pgServer = await ownPostgres();
    root = mkdtempSync(path.join(os.tmpdir(), 'rag-replicas-'));
    configFile = path.join(root, 'rag.config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        server: { ingestCorpusOnStart: false, rateLimit: { max: 0 } },
        database: { pollIntervalMs: 200, connectTimeoutMs: 1000 },
      }),
    );
    // Started together: the schema migration and the default collection's creation race, and must not fail.
    [a, b] = await Promise.all([startReplica('a'), startReplica('b')]);
  });

  afterAll(async () => {
    for (const server of running) server.child.kill('SIGKILL');
    pgServer?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('a write through A is searchable on B with the same ranking; a delete through B disappears from A; collections and lag propagate', async () => {
    await createCollection('s1');
    const docs = Array.from({ length: 6 }, (_, i) => ({ id: `s1-${i}`, text: text(i) }));
    const write = await upsert(a, 's1', docs);
    expect(write.status, write.text).toBe(200);
    // Read-your-writes on the replica that took the write.
    expect((await getDoc(a, 's1', 's1-3')).status).toBe(200);
    for (const mode of ['bm25', 'hybrid', 'dense']) {
      const expected = await search(a, 's1', 'replica passage fusion', mode);
      expect(expected.length).toBeGreaterThan(0);
      await until(`B to rank like A (${mode})`, async () =>
        JSON.stringify(await search(b, 's1', 'replica passage fusion', mode)) === JSON.stringify(expected) ? true : undefined,
      );
    }
    const statsB = await stats(b, 's1');
    expect(statsB.replication).toMatchObject({ lagChanges: 0, database: 'ok' });
    expect(statsB.replication.appliedChangeId).toBe((await stats(a, 's1')).replication.appliedChangeId);
    const ready = await request(b.base, 'GET', '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.json.replication).toMatchObject({ database: 'ok' });

    const deleted = await request(b.base, 'DELETE', route('s1', '/documents/s1-2'));
    expect(deleted.status, deleted.text).toBe(200);
    await until('A to forget s1-2', async () => ((await getDoc(a, 's1', 's1-2')).status === 404 ? true : undefined));
    expect((await search(a, 's1', 'replica passage fusion', 'bm25')).some((r) => r.startsWith('s1-2#'))).toBe(false);

    // A collection deleted through B vanishes from A.
    expect((await request(b.base, 'DELETE', '/v1/collections/s1')).status).toBe(200);
    await until('A to lose collection s1', async () =>
      (await request(a.base, 'GET', route('s1', '/stats'))).status === 404 ? true : undefined,
    );
    expect((await request(a.base, 'GET', '/v1/collections')).json.collections.map((c: { name: string }) => c.name)).not.toContain('s1');
  });

  it('concurrent writes through two replicas lose nothing, and a document written through both ends whole', async () => {
    await createCollection('s2');
    const replies = await Promise.all(
      Array.from({ length: 12 }, (_, i) => {
        const server = i % 2 === 0 ? a : b;
        const shared = { id: 'shared', text: Array.from({ length: 1 + (i % 4) * 3 }, (_, j) => text(i * 10 + j, 120)).join('\n\n') };
        return upsert(server, 's2', [{ id: `s2-${i}`, text: text(i + 100) }, shared]);
      }),
    );
    for (const r of replies) expect(r.status, r.text).toBe(200);
    for (const server of [a, b]) {
      await until('all 13 documents', async () => ((await stats(server, 's2')).documents === 13 ? true : undefined));
    }
    const [onA, onB] = await Promise.all([a, b].map(async (s) => (await getDoc(s, 's2', 'shared')).json));
    expect(onA.passages).toEqual(onB.passages);
    // Whole: one writer's version, every chunk of it, numbered without gaps.
    expect(onA.passages.map((p: { passageId: string }) => p.passageId)).toEqual(onA.passages.map((_: unknown, i: number) => `shared#${i}`));
  });

  it('PostgreSQL restarted mid-traffic: writes get 503 database_unavailable, searches keep working, then recovery without restarting replicas', async () => {
    await createCollection('s4');
    expect((await upsert(a, 's4', [{ id: 'before', text: text(1) }])).status).toBe(200);
    pgServer.stopServer();
    try {
      const refused = await upsert(a, 's4', [{ id: 'during', text: text(2) }]);
      expect(refused.status, refused.text).toBe(503);
      expect(refused.json.error.code).toBe('database_unavailable');
      expect(refused.headers.get('retry-after')).toBeTruthy();
      await until('B to serve searches from its local index', async () =>
        (await search(b, 's4', 'replica', 'bm25')).length > 0 ? true : undefined,
      );
      expect((await request(b.base, 'GET', '/healthz')).status).toBe(200);
    } finally {
      pgServer.start();
    }
    await until('writes to be accepted again', async () =>
      (await upsert(a, 's4', [{ id: 'after', text: text(3) }])).status === 200 ? true : undefined,
    );
    await until('B to see the write after the restart', async () => ((await getDoc(b, 's4', 'after')).status === 200 ? true : undefined));
    expect((await stats(b, 's4')).replication.database).toBe('ok');
    expect((await getDoc(b, 's4', 'during')).status).toBe(404);
  });

  it('kill -9 of a replica mid-write: no partial document anywhere, every acknowledged one present, the restart catches up', async () => {
    await createCollection('s3');
    const longText = (i: number) => Array.from({ length: 4 }, (_, j) => text(i * 10 + j, 150)).join('\n\n');
    const acknowledged: string[] = [];
    const victim = a;
    const writes = (async () => {
      for (let i = 0; ; i++) {
        const reply = await upsert(victim, 's3', [{ id: `k${i}`, text: longText(i) }]).catch(() => undefined);
        if (!reply || reply.status !== 200) return;
        acknowledged.push(`k${i}`);
      }
    })();
    await until('a few acknowledged writes', async () => (acknowledged.length >= 3 ? true : undefined), 60_000);
    victim.child.kill('SIGKILL');
    await victim.exited;
    await writes;

    // PostgreSQL is the truth: every acknowledged document is there, and B shows each document with exactly the
    // passages PostgreSQL holds for it (a document whose write was cut off is absent everywhere, never partial).
    const client = new pg.Client({ connectionString: pgServer.url });
    await client.connect();
    const truth = new Map(
      (
        await client.query<{ doc_id: string; n: number }>(
          "SELECT doc_id, count(*)::int AS n FROM passages WHERE collection = 's3' GROUP BY doc_id",
        )
      ).rows.map((r) => [r.doc_id, r.n]),
    );
    await client.end();
    for (const id of acknowledged) expect(truth.has(id), `acknowledged ${id} in PostgreSQL`).toBe(true);
    await until('B to hold every document of PostgreSQL', async () => ((await stats(b, 's3')).documents === truth.size ? true : undefined));
    for (const [id, passages] of truth) {
      const doc = await getDoc(b, 's3', id);
      expect(doc.status, id).toBe(200);
      expect(doc.json.passages.length, `${id} on B`).toBe(passages);
    }

    a = await startReplica('a');
    const [statsA, statsB] = await Promise.all([stats(a, 's3'), stats(b, 's3')]);
    expect(statsA.documents).toBe(statsB.documents);
    expect(statsA.passages).toBe(statsB.passages);
    expect(statsA.replication.appliedChangeId).toBe(statsB.replication.appliedChangeId);
    expect(await search(a, 's3', 'replica database', 'bm25')).toEqual(await search(b, 's3', 'replica database', 'bm25'));
  });

  it('a replica whose local files are deleted rebuilds them from PostgreSQL with identical search results', async () => {
    await createCollection('s5');
    expect(
      (
        await upsert(
          a,
          's5',
          Array.from({ length: 8 }, (_, i) => ({ id: `s5-${i}`, text: text(i + 50) })),
        )
      ).status,
    ).toBe(200);
    await until('B to converge', async () => ((await stats(b, 's5')).documents === 8 ? true : undefined));
    const modes = ['bm25', 'hybrid', 'dense'];
    const expected = await Promise.all(modes.map((mode) => search(a, 's5', 'attention token search', mode)));
    expect(await Promise.all(modes.map((mode) => search(b, 's5', 'attention token search', mode)))).toEqual(expected);
    await stop(b);
    rmSync(path.join(root, 'b'), { recursive: true, force: true });
    b = await startReplica('b');
    expect(await Promise.all(modes.map((mode) => search(b, 's5', 'attention token search', mode)))).toEqual(expected);
    expect(b.output()).toContain('local index built from PostgreSQL');
  });
});
