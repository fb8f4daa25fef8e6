/**
 * The server takes a collection's writer lock only when it writes it, and gives it back once idle: an `npm run ingest`
 * (a real CLI process) writes a collection the server has searched, the server's reads follow what it wrote, the CLI
 * is refused while the server writes (naming the server and what to do), and a server write is refused while another
 * writer holds the lock, without failing the reads.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppConfig } from '../src/config/index.js';
import { startServer } from '../src/main.js';
import { openStoreEngine } from '../src/store/index.js';
import { runIngestCli } from './helpers/cli.js';
import { fixtureConfig } from './helpers/config.js';
import { BERT_TINY } from './helpers/fixtures.js';
import { request } from './helpers/http.js';

const IDLE_MS = 300;

let server: Awaited<ReturnType<typeof startServer>>;
let config: AppConfig;
let base: string;

const lockFile = (collection: string) => path.join(config.indexesDir, collection, 'write.lock');
const lockHolder = (collection: string) =>
  existsSync(lockFile(collection)) ? (JSON.parse(readFileSync(lockFile(collection), 'utf8')) as { pid: number }).pid : undefined;
const search = (collection: string, query: string) =>
  request(base, 'POST', `/v1/collections/${collection}/search`, { body: { query, mode: 'bm25', k: 10 } });
const docIds = (reply: { json: { results: Array<{ docId: string }> } }) => reply.json.results.map((r) => r.docId).sort();

async function waitForNoLock(collection: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (existsSync(lockFile(collection))) {
    if (Date.now() > deadline) throw new Error(`the server still holds ${lockFile(collection)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function folderWith(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'on-demand-docs-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}

beforeAll(async () => {
  config = fixtureConfig({ server: { ingestCorpusOnStart: false }, collections: { writerIdleMs: IDLE_MS } });
  server = await startServer(config, pino({ level: 'silent' }));
  await server.ready;
  base = `http://127.0.0.1:${server.port}`;
}, 120_000);

afterAll(async () => {
  await server?.close();
});

describe('the server holds a writer lock only while it writes', () => {
  it('a search takes no lock; a write does, and gives it back after collections.writerIdleMs', async () => {
    expect((await request(base, 'POST', '/v1/collections', { body: { name: 'mydocs' } })).status).toBe(201);
    const write = await request(base, 'POST', '/v1/collections/mydocs/documents', {
      body: { documents: [{ id: 'api-note', title: 'Kettles', text: 'The copper kettle whistles at dawn.' }] },
    });
    expect(write.status, write.text).toBe(200);
    expect(lockHolder('mydocs')).toBe(process.pid);
    await waitForNoLock('mydocs');

    expect(docIds(await search('mydocs', 'kettle'))).toEqual(['api-note']);
    expect(existsSync(lockFile('mydocs'))).toBe(false);
    const stats = await request(base, 'GET', '/v1/collections/mydocs/stats');
    expect(stats.json).toMatchObject({ collection: 'mydocs', documents: 1, writable: true });
  });

  it('npm run ingest writes a collection the server serves, and the server reads what it wrote', async () => {
    await waitForNoLock('mydocs');
    const folder = folderWith({ 'lanterns.md': '# Lanterns\n\nA paper lantern glows over the harbour.' });
    const ingest = await runIngestCli([folder, '--collection', 'mydocs', '--no-progress'], config.indexesDir);
    expect(ingest.code, ingest.stderr).toBe(0);
    expect(docIds(await search('mydocs', 'lantern'))).toEqual(['lanterns.md']);
    expect(docIds(await search('mydocs', 'kettle'))).toEqual(['api-note']);
  });

  it('while the server writes, the CLI is refused with the server named and the wait it needs', async () => {
    await waitForNoLock('mydocs');
    const write = await request(base, 'POST', '/v1/collections/mydocs/documents', {
      body: { documents: [{ id: 'api-note-2', text: 'The teapot rests beside the kettle.' }] },
    });
    expect(write.status, write.text).toBe(200);
    // The CLI process takes a while to start: keep the server's writer busy meanwhile.
    const keepWriting = setInterval(() => {
      void request(base, 'POST', '/v1/collections/mydocs/documents', {
        body: { documents: [{ id: 'api-note-2', text: `The teapot rests beside the kettle ${Date.now()}.` }] },
      });
    }, IDLE_MS / 3);
    try {
      const folder = folderWith({ 'late.md': 'Arrives while the server writes.' });
      const refused = await runIngestCli([folder, '--collection', 'mydocs', '--no-progress'], config.indexesDir);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(new RegExp(`held by process ${process.pid} .*collections\\.writerIdleMs`));
    } finally {
      clearInterval(keepWriting);
    }
    await waitForNoLock('mydocs');
  });

  it('a server write is refused (503, Retry-After) while another writer holds the lock; its reads go on', async () => {
    await waitForNoLock('mydocs');
    const engine = await openStoreEngine({ kind: 'sqlite', indexesDir: config.indexesDir });
    const manifest = (await engine.describeCollection('mydocs'))!;
    expect(manifest.embedModel).toBe(BERT_TINY);
    const other = await engine.openCollection('mydocs', {
      embedModel: manifest.embedModel,
      dim: manifest.dim,
      hnsw: config.hnsw,
      readonly: false,
      create: false,
      exactFilterThreshold: config.retrieval.exactFilterThreshold,
    });
    try {
      const refused = await request(base, 'POST', '/v1/collections/mydocs/documents', {
        body: { documents: [{ id: 'blocked', text: 'Never written.' }] },
      });
      expect(refused.status).toBe(503);
      expect(refused.json.error.code).toBe('collection_busy');
      expect(refused.headers.get('retry-after')).toBe('5');
      expect(docIds(await search('mydocs', 'lantern'))).toEqual(['lanterns.md']);
    } finally {
      await other.close();
      await engine.close();
    }
    const after = await request(base, 'POST', '/v1/collections/mydocs/documents', {
      body: { documents: [{ id: 'later', text: 'Written once free.' }] },
    });
    expect(after.status, after.text).toBe(200);
    expect((await request(base, 'GET', '/v1/collections/mydocs/documents/blocked')).status).toBe(404);
  });
});
