import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../src/main.js';
import type { RagService } from '../src/service/index.js';
import { fixtureConfig } from './helpers/config.js';
import { request } from './helpers/http.js';

const DOCS: Record<string, string> = {
  'zebras.md':
    '# Zebra migration\n\nEvery year zebras migrate across the Serengeti following the rains. The zebra herds travel with wildebeest.',
  'volcanoes.md': '# Volcanoes\n\nA volcano erupts when magma rises through the crust. Basalt lava flows are runny; andesite is sticky.',
  'bread.md': '# Sourdough bread\n\nSourdough is leavened by a starter of wild yeast and lactobacilli. The dough ferments overnight.',
  'chess.md': "# Chess openings\n\nThe Sicilian Defence answers 1.e4 with c5. The Queen's Gambit offers a pawn for central control.",
};

let base = '';
let server: Awaited<ReturnType<typeof startServer>>;
let service: RagService;

const post = (route: string, body: unknown, headers: Record<string, string> = {}) => request(base, 'POST', route, { body, headers });

/** Parses a Server-Sent Events body into its events. */
function parseEvents(text: string): Array<{ event: string; data: any }> {
  return text
    .split('\n\n')
    .filter((block) => block.trim())
    .map((block) => {
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = /^data: (.*)$/m.exec(block)?.[1] ?? 'null';
      return { event, data: JSON.parse(data) };
    });
}

beforeAll(async () => {
  const corpus = mkdtempSync(path.join(os.tmpdir(), 'rag-corpus-'));
  for (const [name, text] of Object.entries(DOCS)) writeFileSync(path.join(corpus, name), text);
  // Auth is covered by test/auth.test.ts; these tests are about the endpoints themselves.
  const config = fixtureConfig({
    corpusDir: corpus,
    auth: { disabled: true },
    server: { generationConcurrency: 1, generationQueueLength: 0, bodyLimit: '4kb', requestTimeoutMs: 30_000 },
  });
  server = await startServer(config, pino({ level: 'silent' }));
  base = `http://127.0.0.1:${server.port}`;
  service = await server.ready;
});

afterAll(async () => {
  await server?.close();
});

describe('service endpoints', () => {
  it('answers liveness and readiness once the bundled corpus is ingested', async () => {
    expect((await fetch(base + '/healthz')).status).toBe(200);
    const ready = await fetch(base + '/readyz');
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as any).status).toBe('ready');
    expect((await service.stats()).documents).toBe(Object.keys(DOCS).length);
  });

  it('publishes an OpenAPI 3.1 document of every route', async () => {
    const doc = (await (await fetch(base + '/openapi.json')).json()) as any;
    expect(doc.openapi).toBe('3.1.0');
    for (const route of ['/v1/search', '/v1/ask', '/healthz', '/readyz']) expect(doc.paths[route]).toBeDefined();
    expect(doc.components.schemas.SearchRequest.properties.query).toBeDefined();
  });

  it('unknown routes are JSON 404s', async () => {
    const res = await fetch(base + '/v1/nothing');
    expect(res.status).toBe(404);
    expect(((await res.json()) as any).error.code).toBe('not_found');
  });
});

describe('POST /v1/search', () => {
  it('bm25 ranks the document that contains the query terms first', async () => {
    const res = await post('/v1/search', { query: 'zebra migration Serengeti', mode: 'bm25', k: 3 });
    expect(res.status).toBe(200);
    expect(res.json.results[0].docId).toBe('zebras.md');
    expect(res.json.results[0].text).toContain('Serengeti');
    expect(res.json.timings.totalMs).toBeGreaterThanOrEqual(0);
  });

  it.each(['dense', 'hybrid', 'exact'] as const)('%s mode returns k scored passages', async (mode) => {
    const res = await post('/v1/search', { query: 'how do volcanoes erupt', mode, k: 2 });
    expect(res.status).toBe(200);
    expect(res.json.results).toHaveLength(2);
    for (const r of res.json.results) expect(typeof r.score).toBe('number');
  });

  it('filters by document id', async () => {
    const res = await post('/v1/search', { query: 'zebra', mode: 'hybrid', k: 5, filter: { docIds: ['bread.md'] } });
    expect(res.status).toBe(200);
    expect(res.json.results.length).toBeGreaterThan(0);
    for (const r of res.json.results) expect(r.docId).toBe('bread.md');
  });

  it('treats FTS syntax in the query as plain text', async () => {
    for (const query of ['"unbalanced', 'zebra*', 'NEAR(a b)', 'AND OR NOT', 'title:zebra', '(((']) {
      const res = await post('/v1/search', { query, mode: 'bm25' });
      expect(res.status, query).toBe(200);
    }
  });

  it.each([
    [{}, 'query'],
    [{ query: '' }, 'query'],
    [{ query: 'x', k: 0 }, 'k'],
    [{ query: 'x', k: 'ten' }, 'k'],
    [{ query: 'x', k: 1.5 }, 'k'],
    [{ query: 'x', k: 100000 }, 'k'],
    [{ query: 'x', mode: 'fuzzy' }, 'mode'],
    [{ query: 42 }, 'query'],
    [{ query: 'x', filter: { docIds: 'a' } }, 'filter.docIds'],
    [{ query: 'x', filter: { metadata: { a: { $regex: 1 } } } }, 'filter.metadata.a.$regex'],
  ])('rejects %j with a 400 naming %s', async (body, field) => {
    const res = await post('/v1/search', body);
    expect(res.status).toBe(400);
    expect(res.json.error.code).toBe('invalid_request');
    expect(res.json.error.field).toBe(field);
  });

  it('rejects unknown fields, malformed JSON, wrong content type and oversized bodies', async () => {
    const unknown = await post('/v1/search', { query: 'x', topK: 3 });
    expect(unknown.status).toBe(400);
    expect(unknown.json.error.message).toMatch(/topK/);

    const malformed = await post('/v1/search', '{"query": ');
    expect(malformed.status).toBe(400);
    expect(malformed.json.error.code).toBe('invalid_json');
    expect(malformed.text).not.toMatch(/at .*\.js/);

    const text = await post('/v1/search', 'query=x', { 'content-type': 'text/plain' });
    expect(text.status).toBe(415);

    const big = await post('/v1/search', { query: 'x'.repeat(10_000) });
    expect(big.status).toBe(413);
    expect(big.json.error.code).toBe('payload_too_large');
  });
});

describe('POST /v1/ask', () => {
  it('answers with passages whose cross-attention shares sum to 1', async () => {
    const res = await post('/v1/ask', { question: 'When do zebras migrate?', k: 3, maxNewTokens: 6 });
    expect(res.status).toBe(200);
    const body = res.json;
    expect(typeof body.answer).toBe('string');
    expect(body.attribution).toBe('cross-attention');
    expect(body.passages).toHaveLength(3);
    const total = body.passages.reduce((s: number, p: { attention: number }) => s + p.attention, 0);
    expect(total).toBeCloseTo(1, 5);
    expect(body.citations.length).toBeGreaterThan(0);
    const citationTotal = body.citations.reduce((s: number, c: { score: number }) => s + c.score, 0);
    expect(citationTotal).toBeCloseTo(1, 5);
    for (const c of body.citations) {
      const passage = body.passages.find((p: { passageId: string }) => p.passageId === c.passageId);
      expect(passage.attention).toBe(c.attention);
    }
    for (const key of ['retrieveMs', 'encodeMs', 'decodeMs', 'totalMs']) expect(body.timings[key]).toBeGreaterThanOrEqual(0);
  });

  it('answers with no passages and no citations when the filter excludes every document', async () => {
    const res = await post('/v1/ask', { question: 'zebra', filter: { docIds: ['no-such-document'] } });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ answer: '', citations: [], passages: [] });
  });

  it('streams tokens whose concatenation is the non-streamed answer', async () => {
    const question = 'What leavens sourdough bread?';
    const plain = await post('/v1/ask', { question, k: 2, maxNewTokens: 8 });
    const streamed = await post('/v1/ask', { question, k: 2, maxNewTokens: 8, stream: true });
    expect(streamed.status).toBe(200);
    expect(streamed.headers.get('content-type')).toMatch(/text\/event-stream/);
    const events = parseEvents(streamed.text);
    const final = events.at(-1)!;
    expect(final.event).toBe('answer');
    const tokens = events.filter((e) => e.event === 'token').map((e) => e.data.text as string);
    expect(tokens.join('')).toBe(final.data.answer);
    expect(final.data.answer).toBe(plain.json.answer);
    expect(final.data.passages).toEqual(plain.json.passages);
  });

  it('also streams when the client asks for text/event-stream', async () => {
    const res = await post('/v1/ask', { question: 'chess', k: 1, maxNewTokens: 3 }, { accept: 'text/event-stream' });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    expect(parseEvents(res.text).at(-1)!.event).toBe('answer');
  });

  it('validates its parameters', async () => {
    for (const [body, field] of [
      [{ question: 'x', numBeams: 0 }, 'numBeams'],
      [{ question: 'x', maxNewTokens: 100000 }, 'maxNewTokens'],
      [{ question: 'x', fusion: 'late' }, 'fusion'],
      [{ k: 3 }, 'question'],
    ] as const) {
      const res = await post('/v1/ask', body);
      expect(res.status).toBe(400);
      expect(res.json.error.field).toBe(field);
    }
  });

  it('answers 503 with Retry-After when the generation queue is full, and /healthz keeps answering', async () => {
    // Concurrency 1 and no waiting room: while one answer is generated, the others must be refused.
    const requests = Array.from({ length: 4 }, () => post('/v1/ask', { question: 'zebra', k: 5, maxNewTokens: 64, numBeams: 4 }));
    const health = await fetch(base + '/healthz');
    expect(health.status).toBe(200);
    const results = await Promise.all(requests);
    const refused = results.filter((r) => r.status === 503);
    expect(results.some((r) => r.status === 200)).toBe(true);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) {
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(r.json.error.code).toBe('queue_full');
    }
  });

  it('stops decoding when a streaming client disconnects', async () => {
    const seen: { aborted?: boolean; settled?: string } = {};
    const original = service.ask.bind(service);
    service.ask = async (params, hooks) => {
      hooks?.signal?.addEventListener('abort', () => (seen.aborted = true));
      try {
        const r = await original(params, hooks);
        seen.settled = 'completed';
        return r;
      } catch (err) {
        seen.settled = (err as Error).name;
        throw err;
      }
    };
    try {
      const controller = new AbortController();
      const res = await fetch(base + '/v1/ask', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ question: 'zebra', k: 10, maxNewTokens: 256, numBeams: 8, stream: true }),
        signal: controller.signal,
      });
      expect(res.status).toBe(200);
      controller.abort();
      await expect.poll(() => seen.settled, { timeout: 20_000 }).toBeDefined();
      expect(seen.aborted).toBe(true);
      expect(seen.settled).not.toBe('completed');
    } finally {
      service.ask = original;
    }
  });
});
