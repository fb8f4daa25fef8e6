/**
 * The server as a real process on the tiny fixture models: an acknowledged write survives kill -9, SIGTERM finishes or
 * cancels in-flight work and exits 0 with the index saved and reopenable, and start-up refuses an index whose stores
 * disagree or that another writer holds.
 *
 * Processes run as `node --import tsx src/main.ts`. The tsx CLI (today's `npm start`) relays a signal to its node
 * child and SIGKILLs it unless the child acknowledges within 30 ms, which a server busy decoding cannot do: under load
 * a graceful shutdown needs the single-process form. The tsx form is tested on an idle server.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { generateApiKey } from '../src/api/index.js';
import { indexDir } from '../src/config/index.js';
import { startServer } from '../src/main.js';
import { IndexInconsistentError } from '../src/service/index.js';
import { IndexLockedError } from '../src/store/index.js';
import { fixtureConfig } from './helpers/config.js';
import { request } from './helpers/http.js';
import { serverSetup, spawnServer } from './helpers/server-process.js';
import { openExistingTestStore } from './helpers/store.js';

const KEY = generateApiKey();

const call = (base: string, method: string, route: string, body?: unknown) => request(base, method, route, { body, key: KEY });

const docIds = (reply: { json: any }) => new Set((reply.json.results as Array<{ docId: string }>).map((r) => r.docId));

describe('server process', () => {
  it('keeps an acknowledged write through kill -9, recovering the unsaved graph from SQLite', async () => {
    // The graph is saved only after 10 minutes idle: the kill always lands before it.
    const { configFile } = serverSetup({ documents: { checkpointIdleMs: 600_000 } });
    const first = await spawnServer(configFile, 'node', KEY);
    const docs = Array.from({ length: 5 }, (_, i) => ({
      id: `durable-${i}`,
      text: `Durablemarker note ${i}: the lighthouse keeper logs every ship.`,
    }));
    const ack = await call(first.base, 'POST', '/v1/documents', { documents: docs });
    expect(ack.status, ack.text).toBe(200);
    first.process.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');

    const second = await spawnServer(configFile, 'node', KEY);
    try {
      const verified = second.logs.find((l) => l.msg === 'index verified');
      expect(verified?.recoveredPassages).toBe(5);
      expect((await call(second.base, 'GET', '/v1/documents/durable-3')).status).toBe(200);
      const bm25 = await call(second.base, 'POST', '/v1/search', { query: 'durablemarker', mode: 'bm25', k: 10 });
      expect(docIds(bm25).size).toBe(5);
      const dense = await call(second.base, 'POST', '/v1/search', { query: 'lighthouse keeper ship', mode: 'dense', k: 50 });
      expect([...docIds(dense)].filter((id) => id.startsWith('durable-'))).toHaveLength(5);
      expect((await call(second.base, 'GET', '/v1/stats')).json.hnsw.pending).toBe(0);
    } finally {
      second.process.kill('SIGKILL');
      await second.exited;
    }
  });

  it('on SIGTERM stops accepting, cancels work past the deadline, exits 0 and leaves a saved, consistent index', async () => {
    const { configFile, dir } = serverSetup({ server: { shutdownTimeoutMs: 1000 }, documents: { checkpointIdleMs: 600_000 } });
    const child = await spawnServer(configFile, 'node', KEY);
    const acked = await call(child.base, 'POST', '/v1/documents', {
      documents: [{ id: 'before-term', text: 'Acknowledged before the signal.' }],
    });
    expect(acked.status).toBe(200);

    // A long streamed answer, and a write racing the signal.
    const answer = fetch(`${child.base}/v1/ask`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ question: 'lighthouse', k: 10, maxNewTokens: 256, numBeams: 8, stream: true }),
    });
    const answerResponse = await answer;
    expect(answerResponse.status).toBe(200);
    const racing = call(child.base, 'POST', '/v1/documents', {
      documents: Array.from({ length: 30 }, (_, i) => ({ id: `racing-${i}`, text: `Racing write ${i}. `.repeat(200) })),
    });
    await new Promise((r) => setTimeout(r, 100));
    const signalled = performance.now();
    child.process.kill('SIGTERM');

    const stream = await answerResponse.text();
    const racingReply = await racing;
    const { code } = await child.exited;
    const exitMs = performance.now() - signalled;
    expect(code).toBe(0);
    expect(exitMs).toBeLessThan(1000 + 2000 + 5000);
    const lastEvent = stream.trim().split('\n\n').at(-1) ?? '';
    console.log(
      `[shutdown] exit ${code} after ${exitMs.toFixed(0)} ms; answer ended with "${lastEvent.split('\n')[0]}", racing write got ${racingReply.status}`,
    );
    // The answer either finished within the deadline or was cancelled with a clear error event.
    expect(lastEvent).toMatch(/^event: (answer|error)/);
    if (lastEvent.startsWith('event: error')) expect(lastEvent).toContain('shutting_down');
    expect(child.logs.some((l) => l.msg === 'shut down')).toBe(true);
    await expect(fetch(`${child.base}/healthz`)).rejects.toThrow();

    // The lock is released, the graph saved, and the index holds exactly what was acknowledged.
    const store = await openExistingTestStore(dir);
    try {
      const report = await store.verify();
      expect(report.problems).toEqual([]);
      expect(report.stats.pending).toBe(0);
      expect(await store.getDocument('before-term')).toBeDefined();
      const racingStored = (await store.getDocument('racing-0')) !== undefined;
      expect([200, 503]).toContain(racingReply.status);
      expect(racingStored).toBe(racingReply.status === 200);
      if (racingReply.status === 503) expect(racingReply.json.error.message).toMatch(/nothing was changed/);
    } finally {
      await store.close();
    }
  });

  it('exits 0 on SIGTERM under the tsx CLI when idle, with the index saved', async () => {
    const { configFile, dir } = serverSetup({ documents: { checkpointIdleMs: 600_000 } });
    const child = await spawnServer(configFile, 'tsx', KEY);
    expect(
      (await call(child.base, 'POST', '/v1/documents', { documents: [{ id: 'idle', text: 'Written before an idle shutdown.' }] })).status,
    ).toBe(200);
    child.process.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);
    const store = await openExistingTestStore(dir);
    try {
      expect((await store.stats()).pending).toBe(0);
      expect(await store.getDocument('idle')).toBeDefined();
    } finally {
      await store.close();
    }
  });
});

describe('start-up checks', () => {
  it('refuses an index whose stores disagree, saying how to repair it', async () => {
    const config = fixtureConfig({ auth: { disabled: true } });
    const first = await startServer(config, pino({ level: 'silent' }));
    const service = await first.ready;
    await service.upsertDocuments([
      { id: 'a', text: 'Alpha passage.' },
      { id: 'b', text: 'Beta passage.' },
    ]);
    await first.close();

    const db = new Database(path.join(indexDir(config), 'index.sqlite'));
    db.prepare("DELETE FROM passage_vectors WHERE label = (SELECT label FROM passages WHERE doc_id = 'a')").run();
    db.close();

    // Start-up fails before listening: no port ever accepts requests for a service that cannot answer them.
    const logged: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void logged.push(line) });
    const second = startServer(config, log);
    await expect(second).rejects.toBeInstanceOf(IndexInconsistentError);
    await expect(second).rejects.toThrow(/1 passages have no stored vector.*re-running the ingest/);
    expect(logged.some((l) => l.includes('"listening"'))).toBe(false);
  });

  it('starts beside another writer of its index: reads are served, writes refused saying who holds it', async () => {
    const config = fixtureConfig({ auth: { disabled: true } });
    const first = await startServer(config, pino({ level: 'silent' }));
    await (await first.ready).upsertDocuments([{ id: 'a', text: 'Alpha passage.' }]);
    await first.close();
    const other = await openExistingTestStore(indexDir(config));
    const second = await startServer(config, pino({ level: 'silent' }));
    try {
      const service = await second.ready;
      expect((await service.search({ query: 'alpha', k: 1, mode: 'bm25' })).results).toHaveLength(1);
      const write = service.upsertDocuments([{ id: 'b', text: 'Beta passage.' }]);
      await expect(write).rejects.toBeInstanceOf(IndexLockedError);
      await expect(write).rejects.toThrow(
        new RegExp(`held by process ${process.pid} .*if it is an ingest, wait .*server\\.readOnly: true`),
      );
    } finally {
      await second.close();
      await other.close();
    }
  });
});
