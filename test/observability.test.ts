/**
 * Logs and metrics of an in-process server over the tiny fixture models: request ids (accepted, generated, echoed, on
 * every line of a request), no content or keys in info logs, and the Prometheus series.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey, hashApiKey } from '../src/api/index.js';
import { startServer } from '../src/main.js';
import type { RagService } from '../src/service/index.js';
import { fixtureConfig } from './helpers/config.js';

const KEY = generateApiKey();
const SECRET_QUESTION = 'what does the confidential walrus-project-omega memo say';
const SECRET_TEXT = 'Quarterly numbers for walrus-project-omega are strictly internal.';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let server: Awaited<ReturnType<typeof startServer>>;
let service: RagService;
let base = '';
const lines: Array<Record<string, any>> = [];
const raw: string[] = [];

async function call(method: string, route: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(base + route, {
    method,
    headers: { authorization: `Bearer ${KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** Parses the exposition format into `name{labels}` → value. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

beforeAll(async () => {
  const corpus = mkdtempSync(path.join(os.tmpdir(), 'observability-corpus-'));
  writeFileSync(path.join(corpus, 'seals.md'), '# Seals\n\nHarbor seals rest on sandbanks at low tide.');
  const sink = new Writable({
    write(chunk, _enc, done) {
      raw.push(String(chunk));
      lines.push(JSON.parse(String(chunk)) as Record<string, any>);
      done();
    },
  });
  const config = fixtureConfig({
    corpusDir: corpus,
    auth: { keys: [{ name: 'observer', sha256: hashApiKey(KEY), scopes: ['read', 'write'] }] },
  });
  server = await startServer(config, pino({ level: 'info' }, sink));
  service = await server.ready;
  base = `http://127.0.0.1:${server.port}`;
});

afterAll(async () => {
  await server?.close();
});

describe('request ids', () => {
  it('echoes a sane X-Request-Id and generates one otherwise', async () => {
    expect((await call('GET', '/healthz', undefined, { 'x-request-id': 'client-abc.123' })).headers.get('x-request-id')).toBe(
      'client-abc.123',
    );
    expect((await call('GET', '/healthz')).headers.get('x-request-id')).toMatch(UUID);
    for (const insane of ['has spaces in it', 'x'.repeat(200), 'quote"injection', '{"json":1}']) {
      const echoed = (await call('GET', '/healthz', undefined, { 'x-request-id': insane })).headers.get('x-request-id');
      expect(echoed, insane).toMatch(UUID);
    }
  });

  it('puts the request id on every line logged for a request', async () => {
    const reply = await call(
      'POST',
      '/v1/documents',
      { documents: [{ id: 'memo', text: SECRET_TEXT }] },
      { 'x-request-id': 'write-req-1' },
    );
    expect(reply.status).toBe(200);
    await expect.poll(() => lines.filter((l) => l.reqId === 'write-req-1').length).toBeGreaterThanOrEqual(2);
    const mine = lines.filter((l) => l.reqId === 'write-req-1');
    expect(mine.map((l) => l.msg)).toEqual(expect.arrayContaining(['documents written', 'request completed']));
    const completed = mine.find((l) => l.msg === 'request completed')!;
    expect(completed).toMatchObject({ req: { method: 'POST', path: '/v1/documents' }, res: { statusCode: 200 }, apiKey: 'observer' });
    expect(typeof completed.responseTime).toBe('number');
    // Lines that belong to no request are the start-up and checkpoint lines.
    const requestLines = lines.filter((l) => l.req !== undefined || l.msg === 'documents written');
    for (const l of requestLines) expect(typeof l.reqId, JSON.stringify(l)).toBe('string');
  });

  it('logs an internal error once, with the request id and the error, and tells the client nothing more', async () => {
    const original = service.search.bind(service);
    service.search = async () => {
      throw new Error('boom in search');
    };
    try {
      const reply = await call('POST', '/v1/search', { query: 'seals' }, { 'x-request-id': 'failing-req' });
      expect(reply.status).toBe(500);
      expect(reply.text).not.toContain('boom');
      await expect.poll(() => lines.filter((l) => l.reqId === 'failing-req' && l.level === 50).length).toBeGreaterThanOrEqual(1);
      const failure = lines.find((l) => l.reqId === 'failing-req' && l.msg === 'request failed' && l.err?.message === 'boom in search');
      expect(failure).toBeDefined();
    } finally {
      service.search = original;
    }
  });

  it('keeps questions, document text and keys out of the logs', async () => {
    expect((await call('POST', '/v1/ask', { question: SECRET_QUESTION, k: 1, maxNewTokens: 2 })).status).toBe(200);
    expect((await call('POST', '/v1/search', { query: SECRET_QUESTION })).status).toBe(200);
    expect((await call('GET', '/v1/documents/memo')).status).toBe(200);
    expect((await call('POST', '/v1/search', { query: 'x' }, { authorization: `Bearer ${KEY}-wrong` })).status).toBe(401);
    const all = raw.join('');
    expect(all).toContain('/v1/ask');
    expect(all).not.toContain('walrus-project-omega');
    expect(all).not.toContain(KEY);
    expect(all).not.toMatch(/authorization/i);
  });
});

describe('GET /metrics', () => {
  it('exposes request, stage, queue, token, index and process series', async () => {
    expect((await call('POST', '/v1/search', { query: 'seals', mode: 'hybrid' })).status).toBe(200);
    expect((await call('POST', '/v1/search', { query: '' })).status).toBe(400);
    expect((await call('POST', '/v1/ask', { question: 'seals?', k: 1, maxNewTokens: 3 })).status).toBe(200);
    expect((await call('GET', '/v1/documents/memo')).status).toBe(200);
    expect((await call('GET', '/v1/nothing-here')).status).toBe(404);
    expect((await call('GET', '/styles.css')).status).toBe(200);

    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const m = parseMetrics(text);

    expect(m.get('http_requests_total{method="POST",route="/v1/search",status="200"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('http_requests_total{method="POST",route="/v1/search",status="400"}')).toBe(1);
    expect(m.get('http_requests_total{method="GET",route="/v1/documents/:id",status="200"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('http_requests_total{method="GET",route="(unmatched)",status="404"}')).toBe(1);
    expect(m.get('http_requests_total{method="GET",route="(static)",status="200"}')).toBeGreaterThanOrEqual(1);
    expect(text).not.toContain('memo"');
    expect(text).not.toContain('nothing-here');
    expect(m.get('http_request_duration_seconds_count{method="POST",route="/v1/ask",status="200"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/v1/ask",status="200"}')).toBeGreaterThanOrEqual(1);

    for (const stage of ['embed', 'search', 'encode', 'decode', 'write']) {
      expect(m.get(`rag_stage_duration_seconds_count{stage="${stage}"}`), stage).toBeGreaterThanOrEqual(1);
    }
    expect(m.get('rag_generated_tokens_total')).toBeGreaterThanOrEqual(1);
    expect(m.get('rag_answer_queue_depth')).toBe(0);
    expect(m.get('rag_write_queue_depth')).toBe(0);
    expect(m.get('rag_index_passages')).toBe((await service.stats()).passages);
    expect(m.get('process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(m.get('nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
  });
});
