/**
 * POST /v1/documents/files: multipart uploads of PDF, DOCX, Markdown, HTML and text through the same readers and write
 * path as the CLI; per-document outcomes; 415 naming an unsupported type; 413 over the limits; page ranges and heading
 * paths in search and ask; the document list filtered with the filter language.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey, hashApiKey } from '../src/api/index.js';
import { startServer } from '../src/main.js';
import { fixtureConfig } from './helpers/config.js';
import { docxFile, encryptedPdf, sentences, singleColumnPdf } from './helpers/documents.js';
import { readReply, request } from './helpers/http.js';

const WRITER = generateApiKey();
const READER = generateApiKey();
const MAX_FILE = 200_000;
const MAX_REQUEST = 400_000;

let base = '';
let server: Awaited<ReturnType<typeof startServer>>;

type Part = { name: string; bytes: Uint8Array | string; type?: string };

async function upload(parts: Part[], fields: Record<string, string> = {}, key = WRITER) {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  for (const p of parts) form.append('files', new Blob([p.bytes], { type: p.type ?? 'application/octet-stream' }), p.name);
  return readReply(await fetch(`${base}/v1/documents/files`, { method: 'POST', body: form, headers: { authorization: `Bearer ${key}` } }));
}

const post = (route: string, body: unknown) => request(base, 'POST', route, { body, key: WRITER });
const get = (route: string) => request(base, 'GET', route, { key: WRITER });

let pdf: Uint8Array;

beforeAll(async () => {
  const corpus = mkdtempSync(path.join(os.tmpdir(), 'upload-corpus-'));
  writeFileSync(path.join(corpus, 'seed.md'), '# Seed\n\nA seed document about gardening.');
  const config = fixtureConfig({
    corpusDir: corpus,
    server: { rateLimit: { max: 0 }, requestTimeoutMs: 60_000 },
    auth: {
      keys: [
        { name: 'writer', sha256: hashApiKey(WRITER), scopes: ['read', 'write'] },
        { name: 'reader', sha256: hashApiKey(READER), scopes: ['read'] },
      ],
    },
    documents: { upload: { maxFileBytes: MAX_FILE, maxRequestBytes: MAX_REQUEST, maxFiles: 5 }, checkpointIdleMs: 200 },
  });
  server = await startServer(config, pino({ level: 'silent' }));
  base = `http://127.0.0.1:${server.port}`;
  await server.ready;
  const page = (topic: string) => sentences(topic, 12).flatMap((s) => [s.slice(0, 45), s.slice(45)]);
  pdf = await singleColumnPdf([page('volcano'), page('glacier'), page('desert')], 'Landforms');
});

afterAll(async () => {
  await server?.close();
});

describe('POST /v1/documents/files', () => {
  it('indexes PDF, DOCX and Markdown files with per-document outcomes; re-uploading is unchanged', async () => {
    const docx = await docxFile([
      { heading: 1, text: 'Install' },
      { heading: 2, text: 'Linux' },
      { text: 'Install the volcano toolkit with apt.' },
    ]);
    const parts: Part[] = [
      { name: 'landforms.pdf', bytes: pdf, type: 'application/pdf' },
      { name: 'setup.docx', bytes: docx },
      { name: 'notes.md', bytes: '# Notes\n\n## Field trip\n\nWe walked to the volcano rim.', type: 'text/markdown' },
    ];
    const first = await upload(parts, { metadata: JSON.stringify({ team: 'geo', year: 2024 }) });
    expect(first.status, first.text).toBe(200);
    expect(first.json.documents).toEqual([
      { id: 'landforms.pdf', status: 'added', passages: expect.any(Number) },
      { id: 'setup.docx', status: 'added', passages: 1 },
      { id: 'notes.md', status: 'added', passages: 1 },
    ]);
    const again = await upload(parts, { metadata: JSON.stringify({ team: 'geo', year: 2024 }) });
    expect(again.json.documents.map((d: { status: string }) => d.status)).toEqual(['unchanged', 'unchanged', 'unchanged']);

    const doc = await get('/v1/documents/landforms.pdf');
    expect(doc.json.metadata).toEqual({ format: 'pdf', pages: 3, team: 'geo', year: 2024 });
    expect(doc.json.passages[0]).toMatchObject({ pageStart: 1 });
  });

  it('search results and answers carry page ranges and heading paths', async () => {
    const search = await post('/v1/search', { query: 'glacier note', mode: 'bm25', k: 5, filter: { docIds: ['landforms.pdf'] } });
    expect(search.status).toBe(200);
    const top = search.json.results[0];
    expect(top.pageStart).toBe(2);
    expect(top.pageEnd).toBeGreaterThanOrEqual(2);
    const md = await post('/v1/search', { query: 'volcano rim', mode: 'bm25', k: 1, filter: { docIds: ['notes.md'] } });
    // The one passage starts at the top heading: it is labelled with the section it starts in.
    expect(md.json.results[0].section).toEqual(['Notes']);
    expect(md.json.results[0].pageStart).toBeUndefined();

    const ask = await post('/v1/ask', {
      question: 'What about the desert?',
      k: 3,
      maxNewTokens: 3,
      filter: { metadata: { team: 'geo', format: 'pdf' } },
    });
    expect(ask.status, ask.text).toBe(200);
    for (const p of ask.json.passages) expect(p.pageStart).toBeGreaterThanOrEqual(1);
    expect(ask.json.citations.length).toBeGreaterThan(0);
    for (const c of ask.json.citations) expect(c.pageStart).toBeGreaterThanOrEqual(1);
  });

  it('an unreadable file is an error outcome with the reason; the others are written', async () => {
    const reply = await upload([
      { name: 'secret.pdf', bytes: await encryptedPdf() },
      { name: 'plain.txt', bytes: 'A plain note about basalt.', type: 'text/plain' },
      { name: 'latin1.txt', bytes: Buffer.from('Caf\u00e9 au lait', 'latin1') },
    ]);
    expect(reply.status, reply.text).toBe(200);
    expect(reply.json.documents).toEqual([
      { id: 'secret.pdf', status: 'error', error: expect.stringMatching(/encrypted/) },
      { id: 'plain.txt', status: 'added', passages: 1 },
      { id: 'latin1.txt', status: 'error', error: expect.stringMatching(/not valid UTF-8/) },
    ]);
    expect((await get('/v1/documents/secret.pdf')).status).toBe(404);
  });

  it('an unsupported type is a 415 naming it, and nothing is written', async () => {
    const reply = await upload([
      { name: 'ok.md', bytes: '# OK\n\nfine' },
      { name: 'photo.gif', bytes: 'not a gif', type: 'image/gif' },
    ]);
    expect(reply.status).toBe(415);
    expect(reply.json.error.field).toBe('files.1');
    expect(reply.json.error.message).toMatch(/image\/gif/);
    expect(reply.json.error.message).toMatch(/photo\.gif/);
    expect((await get('/v1/documents/ok.md')).status).toBe(404);
    const json = await post('/v1/documents/files', { files: [] });
    expect(json.status).toBe(415);
  });

  it('per-file and per-request limits are 413s, and the server stays healthy', async () => {
    const big = await upload([{ name: 'big.txt', bytes: 'x'.repeat(MAX_FILE + 1000) }]);
    expect(big.status).toBe(413);
    expect(big.json.error.message).toMatch(/big\.txt.*file limit/);
    const many = await upload(Array.from({ length: 3 }, (_, i) => ({ name: `part${i}.txt`, bytes: 'y '.repeat(MAX_FILE / 2 - 10) })));
    expect(many.status).toBe(413);
    expect(many.json.error.message).toMatch(/request limit/);
    const count = await upload(Array.from({ length: 6 }, (_, i) => ({ name: `n${i}.txt`, bytes: 'z' })));
    expect(count.status).toBe(413);
    expect((await get('/v1/documents/part0.txt')).status).toBe(404);
    expect((await request(base, 'GET', '/healthz')).status).toBe(200);
  });

  it('needs the write scope and a file', async () => {
    expect((await upload([{ name: 'a.txt', bytes: 'a' }], {}, READER)).status).toBe(403);
    const none = await upload([], { metadata: '{}' });
    expect(none.status).toBe(400);
    const badMeta = await upload([{ name: 'a.txt', bytes: 'a' }], { metadata: '[1]' });
    expect(badMeta.status).toBe(400);
    expect(badMeta.json.error.field).toBe('metadata');
  });
});

describe('GET /v1/documents (filtered list)', () => {
  it('lists documents matching a filter-language filter, paged by id', async () => {
    const filter = encodeURIComponent(JSON.stringify({ team: 'geo', format: { $in: ['pdf', 'docx'] } }));
    const page = await get(`/v1/documents?filter=${filter}`);
    expect(page.status, page.text).toBe(200);
    expect(page.json.documents.map((d: { id: string }) => d.id)).toEqual(['landforms.pdf', 'setup.docx']);
    const first = await get(`/v1/documents?filter=${filter}&limit=1`);
    expect(first.json.documents.map((d: { id: string }) => d.id)).toEqual(['landforms.pdf']);
    const second = await get(`/v1/documents?filter=${filter}&limit=1&after=${encodeURIComponent(first.json.next)}`);
    expect(second.json.documents.map((d: { id: string }) => d.id)).toEqual(['setup.docx']);
    const bad = await get(`/v1/documents?filter=${encodeURIComponent(JSON.stringify({ year: { $gt: 'later' } }))}`);
    expect(bad.status).toBe(400);
    expect(bad.json.error.field).toBe('filter.year.$gt');
  });
});
