/**
 * Collections on an in-process server over the tiny fixture models: isolation between collections (search, ask,
 * documents), keys limited to collections, deleting one leaving the others untouched, names that could escape the
 * indexes folder, lazy opening with a bounded number open (50 collections), and the ingest CLI's --collection.
 */
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey, hashApiKey } from '../src/api/index.js';
import type { AppConfig } from '../src/config/index.js';
import { startServer } from '../src/main.js';
import { fixtureConfig } from './helpers/config.js';
import { BERT_TINY } from './helpers/fixtures.js';
import { runIngestCli } from './helpers/cli.js';
import { request, type RequestOptions } from './helpers/http.js';

type Server = Awaited<ReturnType<typeof startServer>>;

const ADMIN = generateApiKey();
const TEAM_A = generateApiKey();
const MAX_OPEN = 4;

let server: Server;
let base: string;
let config: AppConfig;

const call = (method: string, route: string, options: RequestOptions = {}) => request(base, method, route, { key: ADMIN, ...options });
const scoped = (collection: string, route: string) => `/v1/collections/${collection}${route}`;

beforeAll(async () => {
  const corpus = mkdtempSync(path.join(os.tmpdir(), 'collections-corpus-'));
  writeFileSync(path.join(corpus, 'seed.md'), '# Seed\n\nThe default collection holds this seed about lighthouses.');
  config = fixtureConfig({
    corpusDir: corpus,
    collections: { maxOpen: MAX_OPEN },
    auth: {
      keys: [
        { name: 'admin', sha256: hashApiKey(ADMIN), scopes: ['read', 'write'] },
        { name: 'team-a', sha256: hashApiKey(TEAM_A), scopes: ['read', 'write'], collections: ['team-a'] },
      ],
    },
  });
  server = await startServer(config, pino({ level: 'silent' }));
  await server.ready;
  base = `http://127.0.0.1:${server.port}`;
  for (const name of ['team-a', 'team-b']) expect((await call('POST', '/v1/collections', { body: { name } })).status).toBe(201);
  const write = await call('POST', scoped('team-a', '/documents'), {
    body: { documents: [{ id: 'secret-a', title: 'Alpha plan', text: 'The quokkaplan of team alpha ships on Tuesday.' }] },
  });
  expect(write.status, write.text).toBe(200);
  expect(write.json.documents[0]).toMatchObject({ id: 'secret-a', status: 'added' });
  const writeB = await call('POST', scoped('team-b', '/documents'), {
    body: { documents: [{ id: 'note-b', title: 'Beta note', text: 'Team beta writes about the wombatnote.' }] },
  });
  expect(writeB.status, writeB.text).toBe(200);
}, 120_000);

afterAll(async () => {
  await server?.close();
});

const bm25 = (query: string) => ({ query, mode: 'bm25', k: 10 });

describe('collections are isolated', () => {
  it('a document written to A is never returned from B or the default collection (search, ask, documents)', async () => {
    const inA = await call('POST', scoped('team-a', '/search'), { body: bm25('quokkaplan') });
    expect(inA.status).toBe(200);
    expect(inA.json.results.map((r: { docId: string }) => r.docId)).toEqual(['secret-a']);

    for (const route of [scoped('team-b', '/search'), '/v1/search']) {
      for (const mode of ['bm25', 'dense', 'hybrid', 'exact']) {
        const res = await call('POST', route, { body: { query: 'quokkaplan alpha Tuesday', mode, k: 100 } });
        expect(res.status, `${route} ${mode}`).toBe(200);
        expect(
          res.json.results.some((r: { docId: string }) => r.docId === 'secret-a'),
          `${route} ${mode}`,
        ).toBe(false);
      }
      const ask = await call('POST', route.replace('/search', '/ask'), { body: { question: 'When does the quokkaplan ship?', k: 50 } });
      expect(ask.status, ask.text).toBe(200);
      expect(ask.json.passages.some((p: { docId: string }) => p.docId === 'secret-a')).toBe(false);
    }
    const askA = await call('POST', scoped('team-a', '/ask'), { body: { question: 'When does the quokkaplan ship?', k: 5 } });
    expect(askA.json.passages.map((p: { docId: string }) => p.docId)).toEqual(['secret-a']);

    expect((await call('GET', scoped('team-a', '/documents/secret-a'))).status).toBe(200);
    expect((await call('GET', scoped('team-b', '/documents/secret-a'))).status).toBe(404);
    expect((await call('GET', '/v1/documents/secret-a')).status).toBe(404);
    // Deleting it through B changes nothing in A.
    expect((await call('DELETE', scoped('team-b', '/documents/secret-a'))).status).toBe(404);
    expect((await call('GET', scoped('team-a', '/documents/secret-a'))).status).toBe(200);

    const statsA = (await call('GET', scoped('team-a', '/stats'))).json;
    const statsDefault = (await call('GET', '/v1/stats')).json;
    expect(statsA).toMatchObject({ collection: 'team-a', documents: 1, models: { embed: BERT_TINY } });
    expect(statsDefault).toMatchObject({ collection: 'default', documents: 1 });
  });

  it('the same document gets the same outcome in every collection and through the unscoped routes', async () => {
    const doc = { id: 'same', text: 'Identical text in every collection.' };
    const empty = { id: 'blank', text: '   ' };
    for (const route of [scoped('team-a', '/documents'), scoped('team-b', '/documents'), '/v1/documents']) {
      const res = await call('POST', route, { body: { documents: [doc, empty] } });
      expect(
        res.json.documents.map((d: { status: string }) => d.status),
        route,
      ).toEqual(['added', 'error']);
      const again = await call('POST', route, { body: { documents: [doc] } });
      expect(again.json.documents[0].status, route).toBe('unchanged');
    }
  });
});

describe('API keys limited to collections', () => {
  it('a key limited to A works on A and gets 403 on B, on the default collection and on creating others', async () => {
    const asA = (method: string, route: string, body?: unknown) => request(base, method, route, { key: TEAM_A, body });
    expect((await asA('POST', scoped('team-a', '/search'), bm25('quokkaplan'))).status).toBe(200);
    expect((await asA('GET', scoped('team-a', '/stats'))).status).toBe(200);

    const refused = [
      await asA('POST', scoped('team-b', '/search'), bm25('wombatnote')),
      await asA('POST', scoped('team-b', '/ask'), { question: 'wombatnote?' }),
      await asA('POST', scoped('team-b', '/documents'), { documents: [{ id: 'x', text: 'intrusion' }] }),
      await asA('GET', scoped('team-b', '/documents/note-b')),
      await asA('DELETE', scoped('team-b', '/documents/note-b')),
      await asA('GET', scoped('team-b', '/stats')),
      await asA('DELETE', '/v1/collections/team-b'),
      await asA('POST', '/v1/search', bm25('lighthouses')),
      await asA('GET', '/v1/stats'),
      await asA('POST', '/v1/collections', { name: 'team-c' }),
    ];
    for (const res of refused) {
      expect(res.status, res.text).toBe(403);
      expect(res.json.error.code).toBe('forbidden');
    }
    // Nothing changed in B.
    expect((await call('GET', scoped('team-b', '/documents/note-b'))).status).toBe(200);
    expect((await call('GET', scoped('team-b', '/documents/x'))).status).toBe(404);

    const listed = await asA('GET', '/v1/collections');
    expect(listed.status).toBe(200);
    expect(listed.json.collections.map((c: { name: string }) => c.name)).toEqual(['team-a']);
    const all = await call('GET', '/v1/collections');
    expect(all.json.collections.map((c: { name: string }) => c.name)).toEqual(expect.arrayContaining(['default', 'team-a', 'team-b']));
    expect(all.json.default).toBe('default');
  });
});

describe('creating and deleting collections', () => {
  it('validates names, refuses duplicates and the default, and deleting B leaves A untouched', async () => {
    for (const name of ['UPPER', '-dash', 'a'.repeat(65), '..', 'a/b', 'a.b', '']) {
      const res = await call('POST', '/v1/collections', { body: { name } });
      expect(res.status, name).toBe(400);
      expect(res.json.error.field).toBe('name');
    }
    for (const route of ['/v1/collections/..%2F..%2Fetc/search', '/v1/collections/UP/search', '/v1/collections/a.b/stats']) {
      const res = await call(route.endsWith('search') ? 'POST' : 'GET', route, { body: route.endsWith('search') ? bm25('x') : undefined });
      expect(res.status, route).toBe(400);
    }
    expect(readdirSync(config.indexesDir).sort()).toEqual(expect.arrayContaining(['default', 'team-a', 'team-b']));
    expect(existsSync(path.join(config.indexesDir, '..', 'etc'))).toBe(false);

    expect((await call('POST', '/v1/collections', { body: { name: 'team-a' } })).status).toBe(409);
    expect((await call('POST', '/v1/collections', { body: { name: 'x1', embedModel: 'no-such/model' } })).status).toBe(422);
    expect((await call('DELETE', '/v1/collections/default')).status).toBe(409);
    expect((await call('DELETE', '/v1/collections/never-made')).status).toBe(404);
    expect((await call('POST', scoped('never-made', '/search'), { body: bm25('x') })).status).toBe(404);

    const before = (await call('GET', scoped('team-a', '/stats'))).json;
    const del = await call('DELETE', '/v1/collections/team-b');
    expect(del.status, del.text).toBe(200);
    expect(del.json).toEqual({ name: 'team-b', deleted: true });
    expect(existsSync(path.join(config.indexesDir, 'team-b'))).toBe(false);
    expect((await call('GET', scoped('team-b', '/stats'))).status).toBe(404);
    expect((await call('POST', scoped('team-b', '/search'), { body: bm25('wombatnote') })).status).toBe(404);
    const after = (await call('GET', scoped('team-a', '/stats'))).json;
    expect({ ...after, indexBytes: 0 }).toEqual({ ...before, indexBytes: 0 });
    expect((await call('POST', scoped('team-a', '/search'), { body: bm25('quokkaplan') })).json.results).toHaveLength(1);
    // The name is free again, and the new collection starts empty.
    expect((await call('POST', '/v1/collections', { body: { name: 'team-b', chunk: { maxTokens: 64, overlapTokens: 8 } } })).status).toBe(
      201,
    );
    expect((await call('GET', scoped('team-b', '/stats'))).json.documents).toBe(0);
  });
});

function openDescriptors(): number {
  return readdirSync('/proc/self/fd').length;
}

describe('many collections', () => {
  it(`50 collections are created and queried while at most ${MAX_OPEN} stay open`, async () => {
    const rss: Array<[number, number]> = [];
    const fds: number[] = [];
    for (let i = 0; i < 50; i++) {
      const name = `many-${String(i).padStart(2, '0')}`;
      expect((await call('POST', '/v1/collections', { body: { name } })).status).toBe(201);
      const marker = `marker${i}x`;
      const write = await call('POST', scoped(name, '/documents'), {
        body: { documents: [{ id: `doc-${i}`, text: `Collection ${i} keeps the ${marker}.` }] },
      });
      expect(write.status, write.text).toBe(200);
      const open = (await call('GET', '/v1/collections')).json.open;
      expect(open.count).toBeLessThanOrEqual(MAX_OPEN);
      if (i === 9 || i === 49) {
        rss.push([i + 1, process.memoryUsage().rss]);
        fds.push(openDescriptors());
      }
    }
    // Query every collection again (each reopens lazily): each finds its own document and no other.
    for (let i = 0; i < 50; i++) {
      const res = await call('POST', scoped(`many-${String(i).padStart(2, '0')}`, '/search'), {
        body: { query: `marker${i}x marker${(i + 1) % 50}x`, mode: 'bm25', k: 10 },
      });
      expect(res.json.results.map((r: { docId: string }) => r.docId)).toEqual([`doc-${i}`]);
    }
    const { open } = (await call('GET', '/v1/collections')).json;
    expect(open.count).toBeLessThanOrEqual(MAX_OPEN);
    expect(open.peak).toBeLessThanOrEqual(MAX_OPEN);
    expect(open.max).toBe(MAX_OPEN);
    console.log(
      `[collections] RSS after ${rss[0]![0]} collections ${(rss[0]![1] / 2 ** 20).toFixed(1)} MB, after ${rss[1]![0]} ` +
        `${(rss[1]![1] / 2 ** 20).toFixed(1)} MB; open file descriptors ${fds[0]} → ${fds[1]}; open collections ` +
        `${open.count}, peak ${open.peak}, bound ${open.max}`,
    );
    // Closed collections give their files back: descriptors do not grow with the number of collections.
    expect(fds[1]!).toBeLessThanOrEqual(fds[0]! + 8);
  }, 300_000);
});

describe('ingest CLI --collection', () => {
  it('creates the collection beside a running server, which opens it lazily and serves it', async () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'collections-cli-')), 'narwhal.md');
    writeFileSync(file, '# Narwhals\n\nThe narwhalfact: the tusk is a tooth.');
    const result = await runIngestCli([file, '--collection', 'from-cli'], config.indexesDir);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/collection from-cli: 1 documents/);
    const res = await call('POST', scoped('from-cli', '/search'), { body: bm25('narwhalfact') });
    expect(res.status, res.text).toBe(200);
    expect(res.json.results.map((r: { docId: string }) => r.docId)).toEqual(['narwhal.md']);
  }, 120_000);
});
