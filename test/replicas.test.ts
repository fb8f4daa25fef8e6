/**
 * The PostgreSQL deployment with real server processes: two or three replicas (`src/main.ts` with RAG_DATABASE_URL)
 * over one throwaway PostgreSQL server, each with its own local folder, on the tiny fixture models.
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

/** Bound on how long a change may take to reach another replica in these tests: generous, CI machines are shared (bench:replicas measures the real lag). */
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
    });
    running.add(server);
    void server.exited.then(() => running.delete(server));
    return server;
  }

  async function stop(server: ServerProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    server.child.kill(signal);
    await server.exited;
  }

  const search = async (server: ServerProcess, query: string, mode = 'hybrid') => {
    const reply = await request(server.base, 'POST', '/v1/search', { body: { query, k: 10, mode } });
    expect(reply.status, reply.text).toBe(200);
    return (reply.json.results as Array<{ passageId: string; score: number }>).map((r) => `${r.passageId} ${r.score.toFixed(9)}`);
  };

  const upsert = (server: ServerProcess, docs: Array<{ id: string; text: string }>) =>
    request(server.base, 'POST', '/v1/documents', { body: { documents: docs } });

  const stats = async (server: ServerProcess) => (await request(server.base, 'GET', '/v1/stats')).json;

  beforeAll(async () => {
    pgServer = await ownPostgres();
    root = mkdtempSync(path.join(os.tmpdir(), 'rag-replicas-'));
    configFile = path.join(root, 'rag.config.json');
    writeFileSync(
      configFile,
      JSON.stringify({ server: { ingestCorpusOnStart: false, rateLimit: { max: 0 } }, database: { pollIntervalMs: 200, connectTimeoutMs: 1000 } }),
    );
  });

  afterAll(async () => {
    for (const server of running) server.child.kill('SIGKILL');
    pgServer?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('a write through A is searchable on B with the same ranking; a delete through B disappears from A; stats report lag', async () => {
    const [a, b] = await Promise.all([startReplica('s1-a'), startReplica('s1-b')]);
    const docs = Array.from({ length: 6 }, (_, i) => ({ id: `s1-${i}`, text: text(i) }));
    const write = await upsert(a, docs);
    expect(write.status, write.text).toBe(200);
    // Read-your-writes on the replica that took the write.
    expect((await request(a.base, 'GET', '/v1/documents/s1-3')).status).toBe(200);
    for (const mode of ['bm25', 'hybrid', 'dense']) {
      const expected = await search(a, 'replica passage fusion', mode);
      expect(expected.length).toBeGreaterThan(0);
      await until(`B to rank like A (${mode})`, async () =>
        JSON.stringify(await search(b, 'replica passage fusion', mode)) === JSON.stringify(expected) ? true : undefined,
      );
    }
    const statsB = await stats(b);
    expect(statsB.replication).toMatchObject({ lagChanges: 0, database: 'ok' });
    expect(statsB.replication.appliedChangeId).toBe((await stats(a)).replication.appliedChangeId);
    const ready = await request(b.base, 'GET', '/readyz');
    expect(ready.json.replication).toMatchObject({ lagChanges: 0 });

    const deleted = await request(b.base, 'DELETE', '/v1/documents/s1-2');
    expect(deleted.status, deleted.text).toBe(200);
    await until('A to forget s1-2', async () => ((await request(a.base, 'GET', '/v1/documents/s1-2')).status === 404 ? true : undefined));
    expect((await search(a, 'replica passage fusion', 'bm25')).some((r) => r.startsWith('s1-2#'))).toBe(false);
    await Promise.all([stop(a), stop(b)]);
  });

  it('concurrent writes through two replicas lose nothing, and a document written through both ends whole', async () => {
    const [a, b] = await Promise.all([startReplica('s2-a'), startReplica('s2-b')]);
    const replies = await Promise.all(
      Array.from({ length: 12 }, (_, i) => {
        const server = i % 2 === 0 ? a : b;
        const shared = { id: 's2-shared', text: Array.from({ length: 1 + (i % 4) * 3 }, (_, j) => text(i * 10 + j, 120)).join('\n\n') };
        return upsert(server, [{ id: `s2-${i}`, text: text(i + 100) }, shared]);
      }),
    );
    for (const r of replies) expect(r.status, r.text).toBe(200);
    for (const server of [a, b]) {
      let seen: unknown;
      await until('all 13 documents', async () => {
        seen = await stats(server);
        return (seen as { documents: number }).documents === 13 ? true : undefined;
      }).catch((err: Error) => {
        throw new Error(`${err.message}; last stats ${JSON.stringify(seen)}; ${server.output().split('\n').filter((l) => /warn|error/i.test(l)).slice(-5).join('\n')}`);
      });
    }
    const [onA, onB] = await Promise.all([a, b].map(async (s) => (await request(s.base, 'GET', '/v1/documents/s2-shared')).json));
    expect(onA.passages).toEqual(onB.passages);
    // Whole: one writer's version, every chunk of it, numbered without gaps.
    expect(onA.passages.map((p: { passageId: string }) => p.passageId)).toEqual(onA.passages.map((_: unknown, i: number) => `s2-shared#${i}`));
    await Promise.all([stop(a), stop(b)]);
  });

  it('kill -9 of a replica mid-write: no partial document anywhere, every acknowledged one present, the restart catches up', async () => {
    let a = await startReplica('s3-a');
    const b = await startReplica('s3-b');
    const longText = (i: number) => Array.from({ length: 4 }, (_, j) => text(i * 10 + j, 150)).join('\n\n');
    const acknowledged: string[] = [];
    const writes = (async () => {
      for (let i = 0; ; i++) {
        const reply = await upsert(a, [{ id: `s3-${i}`, text: longText(i) }]).catch(() => undefined);
        if (!reply || reply.status !== 200) return;
        acknowledged.push(`s3-${i}`);
      }
    })();
    await until('a few acknowledged writes', async () => (acknowledged.length >= 3 ? true : undefined), 60_000);
    a.child.kill('SIGKILL');
    await a.exited;
    await writes;

    await until('B to hold every acknowledged document', async () => {
      for (const id of acknowledged) if ((await request(b.base, 'GET', `/v1/documents/${id}`)).status !== 200) return undefined;
      return true;
    });
    // PostgreSQL is the truth: every document B shows has exactly the passages PostgreSQL holds for it.
    const client = new pg.Client({ connectionString: pgServer.url });
    await client.connect();
    const truth = new Map(
      (await client.query<{ doc_id: string; n: number }>("SELECT doc_id, count(*)::int AS n FROM passages WHERE doc_id LIKE 's3-%' GROUP BY doc_id")).rows.map(
        (r) => [r.doc_id, r.n],
      ),
    );
    await client.end();
    expect(truth.size).toBeGreaterThanOrEqual(acknowledged.length);
    for (const id of truth.keys()) {
      const doc = await until(`B to show ${id}`, async () => {
        const reply = await request(b.base, 'GET', `/v1/documents/${id}`);
        return reply.status === 200 ? reply : undefined;
      });
      expect(doc.json.passages.length, `${id} on B`).toBe(truth.get(id));
    }
    a = await startReplica('s3-a');
    const [statsA, statsB] = await Promise.all([stats(a), stats(b)]);
    expect(statsA.documents).toBe(statsB.documents);
    expect(statsA.passages).toBe(statsB.passages);
    expect(await search(a, 'replica database', 'bm25')).toEqual(await search(b, 'replica database', 'bm25'));
    await Promise.all([stop(a), stop(b)]);
  });

  it('PostgreSQL restarted mid-traffic: writes get 503 database_unavailable, searches keep working, then recovery without restarting replicas', async () => {
    const [a, b] = await Promise.all([startReplica('s4-a'), startReplica('s4-b')]);
    expect((await upsert(a, [{ id: 's4-before', text: text(1) }])).status).toBe(200);
    pgServer.stopServer();
    try {
      const refused = await upsert(a, [{ id: 's4-during', text: text(2) }]);
      expect(refused.status, refused.text).toBe(503);
      expect(refused.json.error.code).toBe('database_unavailable');
      expect(refused.headers.get('retry-after')).toBeTruthy();
      expect((await search(b, 'replica', 'bm25')).length).toBeGreaterThan(0);
      expect((await request(b.base, 'GET', '/healthz')).status).toBe(200);
    } finally {
      pgServer.start();
    }
    const accepted = await until('writes to be accepted again', async () => {
      const reply = await upsert(a, [{ id: 's4-after', text: text(3) }]);
      return reply.status === 200 ? reply : undefined;
    });
    expect(accepted.status).toBe(200);
    await until('B to see the write after the restart', async () =>
      (await request(b.base, 'GET', '/v1/documents/s4-after')).status === 200 ? true : undefined,
    );
    expect((await stats(b)).replication.database).toBe('ok');
    await Promise.all([stop(a), stop(b)]);
  });

  it('a replica whose local files are deleted rebuilds them from PostgreSQL with identical search results', async () => {
    const [a, b, c] = await Promise.all([startReplica('s5-a'), startReplica('s5-b'), startReplica('s5-c')]);
    expect((await upsert(c, Array.from({ length: 8 }, (_, i) => ({ id: `s5-${i}`, text: text(i + 50) })))).status).toBe(200);
    const expected = await Promise.all(['bm25', 'hybrid', 'dense'].map((mode) => search(a, 'attention token search', mode)));
    await stop(b);
    rmSync(path.join(root, 's5-b'), { recursive: true, force: true });
    const rebuilt = await startReplica('s5-b');
    expect(rebuilt.output()).toContain('local index built from PostgreSQL');
    const got = await Promise.all(['bm25', 'hybrid', 'dense'].map((mode) => search(rebuilt, 'attention token search', mode)));
    expect(got).toEqual(expected);
    await Promise.all([stop(a), stop(rebuilt), stop(c)]);
  });
});
