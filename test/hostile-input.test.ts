/**
 * Hostile input on the upload, chat and collection surfaces (issue: defects found by hostile input): a malformed
 * multipart body answered 400 with the server still up, invalid UTF-8 in a chat body or an upload's file name
 * refused, Windows device names refused as collection names, random truncations of valid bodies refused on every
 * route, and kill -9 in the middle of uploads losing nothing acknowledged and leaving nothing half-written.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey, hashApiKey } from '../src/api/index.js';
import { mulberry32 } from '../src/fixtures/prng.js';
import { startServer } from '../src/main.js';
import { fixtureConfig } from './helpers/config.js';
import { REPO_ROOT } from './helpers/fixtures.js';
import { request, type HttpReply } from './helpers/http.js';
import { serverSetup, spawnServer, type Child } from './helpers/server-process.js';

const KEY = generateApiKey();

/** Exact bytes on the wire with a Content-Length that matches them: what fetch and FormData would never send. */
function rawPost(base: string, route: string, body: Buffer, headers: Record<string, string>): Promise<HttpReply> {
  const url = new URL(route, base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        headers: { ...headers, authorization: `Bearer ${KEY}`, 'content-length': String(body.length) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: any;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: new Headers(res.headers as Record<string, string>), json, text });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error(`no reply to POST ${route} within 30 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

const BOUNDARY = 'x';
const multipartType = { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` };

/** One multipart body: a part per file, the file name's bytes as given (so they may be any bytes at all). */
function multipart(files: Array<{ filename: Buffer | string; text: string }>, closing = true): Buffer {
  const parts = files.map(({ filename, text }) =>
    Buffer.concat([
      Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="`),
      Buffer.isBuffer(filename) ? filename : Buffer.from(filename, 'utf8'),
      Buffer.from(`"\r\nContent-Type: text/plain\r\n\r\n${text}\r\n`),
    ]),
  );
  return Buffer.concat([...parts, Buffer.from(closing ? `--${BOUNDARY}--\r\n` : '')]);
}

/** The defect's own request: a part that never ends, and no closing boundary. */
const UNTERMINATED = Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n\r\nunterminated`);

describe('the server process under a malformed upload', () => {
  let child: Child;

  beforeAll(async () => {
    const { configFile } = serverSetup();
    child = await spawnServer(configFile, 'node', KEY);
  }, 90_000);

  afterAll(async () => {
    child?.process.kill('SIGKILL');
    await child?.exited;
  });

  it('answers an unterminated multipart body with a 400 naming the problem, writes nothing, and stays up', async () => {
    const reply = await rawPost(child.base, '/v1/documents/files', UNTERMINATED, multipartType);
    expect(reply.status, reply.text).toBe(400);
    expect(reply.json.error.field).toBe('(body)');
    expect(reply.json.error.message).toMatch(/malformed multipart request: unexpected end of form/i);
    expect((await request(child.base, 'GET', '/healthz')).status).toBe(200);
    expect((await request(child.base, 'GET', '/v1/documents/a.txt', { key: KEY })).status).toBe(404);
    expect(child.process.exitCode).toBeNull();
    // A part cut inside its headers, and one cut inside the closing boundary: the same.
    for (const body of [
      UNTERMINATED.subarray(0, 40),
      Buffer.concat([multipart([{ filename: 'b.txt', text: 'cut' }], false), Buffer.from(`--${BOUNDARY}-`)]),
    ]) {
      expect((await rawPost(child.base, '/v1/documents/files', body, multipartType)).status).toBe(400);
    }
    expect((await request(child.base, 'GET', '/healthz')).status).toBe(200);
  });
});

describe('hostile input in process', () => {
  let base = '';
  let server: Awaited<ReturnType<typeof startServer>>;

  beforeAll(async () => {
    const corpus = mkdtempSync(path.join(os.tmpdir(), 'hostile-corpus-'));
    writeFileSync(path.join(corpus, 'seed.md'), '# Seed\n\nA seed document about gardening and tomatoes.');
    const config = fixtureConfig({
      corpusDir: corpus,
      server: { rateLimit: { max: 0 } },
      auth: { keys: [{ name: 'ops', sha256: hashApiKey(KEY), scopes: ['read', 'write'] }] },
    });
    server = await startServer(config, pino({ level: 'silent' }));
    base = `http://127.0.0.1:${server.port}`;
    await server.ready;
  }, 90_000);

  afterAll(async () => {
    await server?.close();
  });

  const chatBody = (content: string) => JSON.stringify({ model: 'fid-rag/default', messages: [{ role: 'user', content }], max_tokens: 2 });

  it('refuses a chat body that is not UTF-8 as the other JSON routes do', async () => {
    const valid = Buffer.from(chatBody('tomatoes?'));
    const at = valid.indexOf('tomatoes');
    const invalid = Buffer.concat([valid.subarray(0, at), Buffer.from([0xff, 0xfe, 0xc3]), valid.subarray(at)]);
    const reply = await rawPost(base, '/v1/chat/completions', invalid, { 'content-type': 'application/json' });
    expect(reply.status, reply.text).toBe(400);
    expect(reply.json.error.code).toBe('invalid_utf8');
    const search = await rawPost(
      base,
      '/v1/search',
      Buffer.concat([Buffer.from('{"query":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}')]),
      { 'content-type': 'application/json' },
    );
    expect(search.json.error.code).toBe(reply.json.error.code);
    expect((await rawPost(base, '/v1/chat/completions', valid, { 'content-type': 'application/json' })).status).toBe(200);
  });

  it('refuses an upload whose file name is not UTF-8, and keeps a UTF-8 one as sent', async () => {
    const bad = await rawPost(
      base,
      '/v1/documents/files',
      multipart([{ filename: Buffer.from([0x61, 0xff, 0xfe, 0x2e, 0x74, 0x78, 0x74]), text: 'Bytes.' }]),
      multipartType,
    );
    expect(bad.status, bad.text).toBe(400);
    expect(bad.json.error).toMatchObject({ code: 'invalid_utf8', field: 'files.0' });
    const listed = await request(base, 'GET', '/v1/documents?limit=100', { key: KEY });
    expect((listed.json.documents as Array<{ id: string }>).filter((d) => d.id.includes('\ufffd'))).toEqual([]);

    const good = await rawPost(
      base,
      '/v1/documents/files',
      multipart([{ filename: 'café-ü.txt', text: 'A note on coffee.' }]),
      multipartType,
    );
    expect(good.status, good.text).toBe(200);
    expect(good.json.documents[0].id).toBe('café-ü.txt');
    expect((await request(base, 'GET', `/v1/documents/${encodeURIComponent('café-ü.txt')}`, { key: KEY })).status).toBe(200);
    // A metadata field that is not UTF-8 is refused with the field's name, before anything is written.
    const field = Buffer.concat([
      Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{"team":"`),
      Buffer.from([0xff, 0xfe]),
      Buffer.from(`"}\r\n`),
      multipart([{ filename: 'metadata-bytes.txt', text: 'Never written.' }]),
    ]);
    const refused = await rawPost(base, '/v1/documents/files', field, multipartType);
    expect(refused.json.error).toMatchObject({ code: 'invalid_utf8', field: 'metadata' });
    expect((await request(base, 'GET', '/v1/documents/metadata-bytes.txt', { key: KEY })).status).toBe(404);
  });

  it('refuses Windows device names as collection names, on every route that takes one', async () => {
    for (const name of ['con', 'nul', 'aux', 'prn', 'com1', 'lpt1', 'com0', 'lpt9']) {
      const created = await request(base, 'POST', '/v1/collections', { key: KEY, body: { name } });
      expect(created.status, name).toBe(400);
      expect(created.json.error.message).toMatch(/reserved.*device names on Windows/);
      expect((await request(base, 'POST', `/v1/collections/${name}/search`, { key: KEY, body: { query: 'x' } })).status).toBe(400);
    }
    for (const name of ['console', 'con-1', 'com10', 'nul_']) {
      expect((await request(base, 'POST', '/v1/collections', { key: KEY, body: { name } })).status, name).toBe(201);
    }
    const names = ((await request(base, 'GET', '/v1/collections', { key: KEY })).json.collections as Array<{ name: string }>).map(
      (c) => c.name,
    );
    expect(names).not.toContain('con');
  });

  it('refuses every random truncation of a valid body with a 400 on every route, writing nothing', async () => {
    const json = { 'content-type': 'application/json' };
    const gzip = { ...json, 'content-encoding': 'gzip' };
    const documents = JSON.stringify({
      documents: [{ id: 'truncated-doc', text: 'A document that must never be written whole or in part.' }],
    });
    const cases: Array<{ route: string; body: Buffer; headers: Record<string, string> }> = [
      { route: '/v1/search', body: Buffer.from(JSON.stringify({ query: 'gardening', k: 3 })), headers: json },
      {
        route: '/v1/ask',
        body: Buffer.from(JSON.stringify({ question: 'what grows in the garden?', k: 2, maxNewTokens: 3 })),
        headers: json,
      },
      { route: '/v1/documents', body: Buffer.from(documents), headers: json },
      { route: '/v1/documents', body: gzipSync(documents), headers: gzip },
      { route: '/v1/collections/default/documents', body: Buffer.from(documents), headers: json },
      { route: '/v1/collections', body: Buffer.from(JSON.stringify({ name: 'truncated-collection' })), headers: json },
      { route: '/v1/chat/completions', body: Buffer.from(chatBody('what grows in the garden?')), headers: json },
      { route: '/v1/chat/completions', body: gzipSync(chatBody('what grows in the garden?')), headers: gzip },
      {
        route: '/v1/documents/files',
        body: multipart([{ filename: 'truncated-file.txt', text: 'A file that must never be written.' }]),
        headers: multipartType,
      },
    ];
    const random = mulberry32(24);
    let sent = 0;
    for (const { route, body, headers } of cases) {
      // The whole body is valid; the closing boundary's last bytes (its CRLF) are optional, so cuts stop before it.
      const cuttable = headers['content-type']!.startsWith('multipart/') ? body.length - `--${BOUNDARY}--\r\n`.length + 1 : body.length;
      const cuts = new Set([0, 1, cuttable - 1, ...Array.from({ length: 6 }, () => Math.floor(random() * cuttable))]);
      for (const cut of cuts) {
        const reply = await rawPost(base, route, body.subarray(0, cut), headers);
        sent++;
        expect(reply.status, `${route} (${headers['content-encoding'] ?? 'identity'}) cut at ${cut}/${body.length}: ${reply.text}`).toBe(
          400,
        );
        expect(reply.json?.error, `${route} cut at ${cut}`).toBeDefined();
      }
    }
    expect(sent).toBeGreaterThan(50);
    expect((await request(base, 'GET', '/healthz')).status).toBe(200);
    for (const id of ['truncated-doc', 'truncated-file.txt'])
      expect((await request(base, 'GET', `/v1/documents/${id}`, { key: KEY })).status).toBe(404);
    const names = ((await request(base, 'GET', '/v1/collections', { key: KEY })).json.collections as Array<{ name: string }>).map(
      (c) => c.name,
    );
    expect(names).not.toContain('truncated-collection');
  });
});

describe('kill -9 in the middle of uploads', () => {
  /** Every file has the same shape, so every whole document has the same passages but for its own marker word. */
  const fileText = (n: number) =>
    Array.from(
      { length: 24 },
      (_, i) => `Upload ${n} marker${n}x line ${i}: the orchard keeper counts apples, pears and plums before the frost.`,
    ).join('\n');

  it('keeps every acknowledged upload whole after a restart, and nothing half-written', async () => {
    const { configFile } = serverSetup({ documents: { checkpointIdleMs: 600_000 } });
    const random = mulberry32(9);
    const acknowledged = new Set<string>();
    let next = 0;
    for (let trial = 0; trial < 3; trial++) {
      const child = await spawnServer(configFile, 'node', KEY);
      const before = acknowledged.size;
      const uploading = (async () => {
        while (child.process.exitCode === null && child.process.signalCode === null) {
          const batch = [next++, next++, next++];
          const body = multipart(batch.map((n) => ({ filename: `upload-${n}.txt`, text: fileText(n) })));
          try {
            const reply = await rawPost(child.base, '/v1/documents/files', body, multipartType);
            if (reply.status === 200) for (const d of reply.json.documents as Array<{ id: string }>) acknowledged.add(d.id);
          } catch {
            return; // the connection died with the process
          }
        }
      })();
      // The kill lands at a random moment after the trial's first acknowledged upload: a loaded machine may take
      // seconds for the first one, and a kill before any acknowledgement tests nothing.
      const deadline = Date.now() + 60_000;
      while (acknowledged.size === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, Math.floor(random() * 500)));
      child.process.kill('SIGKILL');
      await child.exited;
      await uploading;
    }
    expect(acknowledged.size).toBeGreaterThan(0);

    const after = await spawnServer(configFile, 'node', KEY);
    try {
      const listed = await request(after.base, 'GET', '/v1/documents?limit=1000', { key: KEY });
      const ids = (listed.json.documents as Array<{ id: string }>).map((d) => d.id).filter((id) => id.startsWith('upload-'));
      for (const id of acknowledged) expect(ids, `acknowledged ${id} is missing after the restart`).toContain(id);
      const shapes = new Set<number>();
      for (const id of ids) {
        const doc = await request(after.base, 'GET', `/v1/documents/${id}`, { key: KEY });
        expect(doc.status).toBe(200);
        const n = Number(/upload-(\d+)\.txt/.exec(id)![1]);
        const passages = doc.json.passages as Array<{ text: string }>;
        expect(passages.map((p) => p.text).join('\n')).toContain(`marker${n}x line 23`);
        shapes.add(passages.length);
        const found = await request(after.base, 'POST', '/v1/search', { key: KEY, body: { query: `marker${n}x`, mode: 'bm25', k: 50 } });
        expect((found.json.results as Array<{ docId: string }>).filter((r) => r.docId === id)).toHaveLength(passages.length);
      }
      expect(shapes.size, 'every document has the passages of a whole file').toBe(1);
      console.log(`[hostile-input] kill -9 during uploads: ${acknowledged.size} acknowledged, ${ids.length} present after restart`);
    } finally {
      after.process.kill('SIGKILL');
      await after.exited;
    }
  }, 180_000);
});

describe('the last-resort guard', () => {
  it('answers 500 for the request whose callbacks threw and serves the rest; an error outside requests shuts down', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test', 'last-resort-child.ts')], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout!.once('data', (d: Buffer) => resolve((JSON.parse(d.toString()) as { port: number }).port));
      child.once('exit', () => reject(new Error('the guard child exited before listening')));
    });
    const base = `http://127.0.0.1:${port}`;
    try {
      for (const route of ['/throw-in-timer', '/emitter-error', '/rejection']) {
        const reply = await request(base, 'GET', route, { timeoutMs: 10_000 });
        expect(reply.status, route).toBe(500);
        expect(reply.json.error.code).toBe('internal_error');
        expect((await request(base, 'GET', '/ok')).status).toBe(200);
      }
      expect(child.exitCode).toBeNull();
      child.kill('SIGUSR2');
      expect(await exited).toBe(3);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
