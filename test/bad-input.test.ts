/**
 * Hostile and malformed requests against an in-process server on the tiny fixture models. Every case must get the
 * right 4xx with a JSON error (naming the field where there is one), and afterwards the server must still be healthy:
 * /healthz answers 200 and an ordinary search still finds the right document.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey, hashApiKey } from '../src/api/index.js';
import { startServer } from '../src/main.js';
import { fixtureConfig } from './helpers/config.js';
import { request, type HttpReply } from './helpers/http.js';

const DOCS = [
  {
    id: 'zebra',
    title: 'Zebra migration',
    text: 'Every year zebras migrate across the Serengeti following the rains.',
    metadata: { topic: 'animals', year: 2020, a: { b: 1 } },
  },
  {
    id: 'volcano',
    title: 'Volcanoes',
    text: 'A volcano erupts when magma rises through the crust of the earth.',
    metadata: { topic: 'geology', year: 2021, 'a.b': 1 },
  },
  {
    id: 'bread',
    title: 'Sourdough',
    text: 'Sourdough is leavened by a starter of wild yeast and lactobacilli.',
    metadata: { topic: 'food', year: 2022 },
  },
];

let base = '';
let server: Awaited<ReturnType<typeof startServer>>;
// Auth is on, so hostile Authorization headers are covered too; every other request carries the writer's key.
const WRITER_KEY = generateApiKey();
const READER_KEY = generateApiKey();

type Reply = HttpReply;

/**
 * Like helpers/http.ts `request`, but also sends Buffers (invalid UTF-8, gzip) exactly as given, and gives up after
 * 30 s so a hang fails the test instead of stalling it.
 */
const send = (method: string, route: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Reply> =>
  request(base, method, route, { body, key: WRITER_KEY, headers });

const post = (route: string, body: unknown, headers?: Record<string, string>) =>
  send('POST', route, typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body), headers);

/** A 4xx with the API's JSON error shape, no stack trace, and the expected field when one is named. */
function expectClientError(reply: Reply, status: number, field?: string): void {
  expect(reply.status, reply.text.slice(0, 500)).toBe(status);
  expect(reply.headers.get('content-type')).toMatch(/application\/json/);
  expect(typeof reply.json?.error?.code).toBe('string');
  expect(typeof reply.json?.error?.message).toBe('string');
  expect(reply.text).not.toMatch(/\bat .*\.(js|ts):\d+/);
  if (field !== undefined) expect(reply.json.error.field).toBe(field);
}

/** Liveness, and a real search that must still find the zebra document first. */
async function expectHealthy(): Promise<void> {
  expect((await send('GET', '/healthz')).status).toBe(200);
  const search = await post('/v1/search', { query: 'zebras Serengeti migrate', mode: 'bm25', k: 3 });
  expect(search.status, search.text).toBe(200);
  expect(search.json.results[0].docId).toBe('zebra');
}

beforeAll(async () => {
  const corpus = mkdtempSync(path.join(os.tmpdir(), 'bad-input-corpus-'));
  writeFileSync(path.join(corpus, 'docs.jsonl'), DOCS.map((d) => JSON.stringify(d)).join('\n'));
  const config = fixtureConfig({
    corpusDir: corpus,
    // No rate limit: this file sends hundreds of requests on purpose.
    server: { bodyLimit: '64kb', maxQueryChars: 2000, requestTimeoutMs: 30_000, rateLimit: { max: 0 } },
    auth: {
      keys: [
        { name: 'writer', sha256: hashApiKey(WRITER_KEY), scopes: ['read', 'write'] },
        { name: 'reader', sha256: hashApiKey(READER_KEY), scopes: ['read'] },
      ],
    },
    documents: { bodyLimit: '1mb', maxBatch: 20, maxTextChars: 20_000, maxMetadataBytes: 2048, maxMetadataDepth: 4, checkpointIdleMs: 200 },
  });
  server = await startServer(config, pino({ level: 'silent' }));
  base = `http://127.0.0.1:${server.port}`;
  await server.ready;
});

afterAll(async () => {
  await server?.close();
});

const deep = (levels: number, open: string, close: string, inner = '1') => open.repeat(levels) + inner + close.repeat(levels);

describe.each(['/v1/search', '/v1/ask'] as const)('%s', (route) => {
  const textField = route === '/v1/search' ? 'query' : 'question';
  const valid = (extra: Record<string, unknown> = {}) => ({
    [textField]: 'zebra',
    k: 1,
    ...(route === '/v1/ask' ? { maxNewTokens: 2 } : {}),
    ...extra,
  });

  it('malformed JSON is a 400 invalid_json naming the body', async () => {
    for (const body of [
      '{',
      `{"${textField}": }`,
      `{"${textField}": "x",}`,
      `{'${textField}': 'x'}`,
      `{"${textField}": NaN}`,
      `{"${textField}": "x"} trailing`,
      'nul',
      '\u0000',
      '[1, 2',
    ]) {
      const reply = await post(route, body);
      expectClientError(reply, 400, '(body)');
      expect(reply.json.error.code, body).toBe('invalid_json');
    }
    await expectHealthy();
  });

  it('bodies that are not a JSON object are refused', async () => {
    // Top-level primitives fail the strict JSON parser; arrays parse and then fail the schema.
    for (const body of ['"zebra"', '42', 'true', 'null']) expectClientError(await post(route, body), 400, '(body)');
    for (const body of ['[]', `[{"${textField}": "zebra"}]`]) expectClientError(await post(route, body), 400, '(body)');
    // An empty body parses as {}: the missing field is named.
    expectClientError(await post(route, ''), 400, textField);
    await expectHealthy();
  });

  it('wrong types and missing fields name the field', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{}, textField],
      [{ k: 3 }, textField],
      [{ [textField]: null }, textField],
      [{ [textField]: 42 }, textField],
      [{ [textField]: ['zebra'] }, textField],
      [{ [textField]: { $ne: '' } }, textField],
      [{ [textField]: '   \n\t ' }, textField],
      [valid({ k: '5' }), 'k'],
      [valid({ k: true }), 'k'],
      [valid({ k: [] }), 'k'],
      [valid({ k: {} }), 'k'],
      [valid({ k: null }), 'k'],
      [valid({ mode: 'BM25' }), 'mode'],
      [valid({ mode: ['bm25'] }), 'mode'],
      [valid({ filter: 'zebra' }), 'filter'],
      [valid({ filter: [] }), 'filter'],
      [valid({ filter: null }), 'filter'],
      [valid({ filter: { docIds: [] } }), 'filter.docIds'],
      [valid({ filter: { docIds: [1] } }), 'filter.docIds.0'],
      [valid({ filter: { docIds: [''] } }), 'filter.docIds.0'],
      [valid({ filter: { metadata: [] } }), 'filter.metadata'],
      [valid({ filter: { metadata: 'topic=animals' } }), 'filter.metadata'],
      [valid({ filter: { metadata: { topic: null } } }), 'filter.metadata.topic'],
      [valid({ filter: { metadata: { topic: ['animals'] } } }), 'filter.metadata.topic'],
      [valid({ filter: { metadata: { topic: { $regex: '.*' } } } }), 'filter.metadata.topic.$regex'],
      [valid({ filter: { metadata: { year: { $gt: 'soon' } } } }), 'filter.metadata.year.$gt'],
      [valid({ filter: { metadata: { $or: [{ topic: 'x' }, { year: { $in: 3 } }] } } }), 'filter.metadata.$or.1.year.$in'],
    ];
    if (route === '/v1/ask') {
      cases.push([valid({ stream: 'yes' }), 'stream'], [valid({ fusion: 'late' }), 'fusion'], [valid({ numBeams: '2' }), 'numBeams']);
    }
    for (const [body, field] of cases) {
      const reply = await post(route, body);
      expectClientError(reply, 400, field);
      expect(reply.json.error.code, JSON.stringify(body)).toBe('invalid_request');
    }
    await expectHealthy();
  });

  it('negative, huge, fractional and non-finite numbers are refused', async () => {
    const numeric = route === '/v1/search' ? ['k'] : ['k', 'maxNewTokens', 'numBeams'];
    for (const field of numeric) {
      for (const literal of ['-1', '0', '-0', '1.5', '1e308', '1e309', '-1e309', '9007199254740993', '4294967297']) {
        const body = `{"${textField}": "zebra", "${field}": ${literal}}`;
        const reply = await post(route, body);
        expectClientError(reply, 400, field);
      }
    }
    // Numbers as metadata filter values must be finite.
    expectClientError(await post(route, `{"${textField}": "zebra", "filter": {"metadata": {"year": 1e999}}}`), 400, 'filter.metadata.year');
    await expectHealthy();
  });

  it('unknown and prototype-polluting keys are refused and pollute nothing', async () => {
    for (const body of [
      `{"${textField}": "zebra", "__proto__": {"polluted": true}}`,
      `{"${textField}": "zebra", "constructor": {"prototype": {"polluted": true}}}`,
      `{"${textField}": "zebra", "filter": {"__proto__": {"polluted": true}}}`,
      `{"${textField}": "zebra", "filter": {"constructor": {"prototype": {"polluted": true}}}}`,
      `{"${textField}": "zebra", "topN": 3}`,
    ]) {
      const reply = await post(route, body);
      expectClientError(reply, 400);
      expect(reply.json.error.code).toBe('invalid_request');
      expect(reply.json.error.message).toMatch(/__proto__|constructor|topN/);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
    await expectHealthy();
  });

  it('huge strings: over the body limit is 413, over the text limit is 400 naming the field', async () => {
    const tooBig = await post(route, { [textField]: 'zebra '.repeat(20_000) });
    expectClientError(tooBig, 413, '(body)');
    expect(tooBig.json.error.code).toBe('payload_too_large');
    expectClientError(await post(route, { [textField]: 'z'.repeat(2001) }), 400, textField);
    expectClientError(await post(route, valid({ filter: { metadata: { topic: 'x'.repeat(1001) } } })), 400, 'filter.metadata.topic');
    expectClientError(await post(route, valid({ filter: { metadata: { ['k'.repeat(201)]: 1 } } })), 400);
    // Exactly at the limit is fine.
    expect((await post(route, valid({ [textField]: 'zebra '.repeat(333) + 'ze' }))).status).toBe(200);
    await expectHealthy();
  });

  it('deeply nested JSON (10k and 100k levels) is refused quickly without crashing', async () => {
    const bodies = [
      `{"${textField}": "zebra", "filter": ${deep(10_000, '{"a":', '}')}}`,
      `{"${textField}": "zebra", "filter": {"metadata": {"topic": ${deep(10_000, '[', ']')}}}}`,
      `{"${textField}": ${deep(10_000, '[', ']', '"zebra"')}}`,
      `{"${textField}": "zebra", "extra": ${deep(10_000, '{"a":', '}')}}`,
      deep(10_000, '[', ']'),
    ];
    for (const body of bodies) {
      const started = performance.now();
      const reply = await post(route, body);
      expectClientError(reply, 400);
      expect(performance.now() - started).toBeLessThan(5_000);
    }
    // Deeper than V8's JSON.parse can recurse: must still be a clean client error, not a crashed request.
    const deeper = await post(route, `{"${textField}": "zebra", "filter": ${deep(100_000, '[', ']')}}`, {});
    expect([400, 413]).toContain(deeper.status);
    expect(deeper.json?.error?.code).toBeDefined();
    await expectHealthy();
  });

  it('control characters: raw ones break JSON (400), escaped ones are just text (200)', async () => {
    for (const raw of ['\u0001', '\u0008', '\u001f', '\n']) {
      expectClientError(await post(route, `{"${textField}": "zeb${raw}ra"}`), 400, '(body)');
    }
    for (const escaped of ['\\u0000', '\\u0000zebra\\u0000', '\\u0007\\u001b[31mzebra', '\\u202ezebra', '\\ufeffzebra', '\\ud83d\\ude00']) {
      const reply = await post(route, `{"${textField}": "${escaped}", "k": 1${route === '/v1/ask' ? ', "maxNewTokens": 2' : ''}}`);
      expect(reply.status, `${escaped}: ${reply.text.slice(0, 300)}`).toBe(200);
    }
    await expectHealthy();
  });

  it('lone surrogates (not well-formed Unicode) are a 400 naming the field', async () => {
    for (const escaped of ['\\ud800', 'zebra\\udfff\\ud800', '\\ude00\\ud83d']) {
      const reply = await post(route, `{"${textField}": "${escaped}", "k": 1${route === '/v1/ask' ? ', "maxNewTokens": 2' : ''}}`);
      expectClientError(reply, 400, textField);
      expect(reply.json.error.message).toMatch(/well-formed Unicode/);
    }
    const filters: Array<[unknown, string]> = [
      [{ metadata: { 'topic\ud800': 'animals' } }, 'filter.metadata.topic\ud800'],
      [{ metadata: { topic: 'animals\udc00' } }, 'filter.metadata.topic'],
      [{ docIds: ['zebra', 'x\ud800'] }, 'filter.docIds.1'],
    ];
    for (const [filter, field] of filters) expectClientError(await post(route, valid({ filter })), 400, field);
    await expectHealthy();
  });

  it('invalid UTF-8 bytes in the body are a 400, not silently replaced', async () => {
    const prefix = Buffer.from(`{"${textField}": "zebra `);
    const suffix = Buffer.from(`", "k": 1${route === '/v1/ask' ? ', "maxNewTokens": 2' : ''}}`);
    for (const bad of [[0xff], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xc0, 0xaf]]) {
      const reply = await post(route, Buffer.concat([prefix, Buffer.from(bad), suffix]));
      expectClientError(reply, 400, '(body)');
      expect(reply.json.error.code, Buffer.from(bad).toString('hex')).toBe('invalid_utf8');
    }
    // Valid multi-byte UTF-8 is of course fine.
    expect((await post(route, Buffer.concat([prefix, Buffer.from('zèbre 斑马 🦓'), suffix]))).status).toBe(200);
    await expectHealthy();
  });

  it('wrong content types, charsets and encodings are refused with 4xx', async () => {
    const body = JSON.stringify(valid());
    expectClientError(await post(route, body, { 'content-type': 'text/plain' }), 415, '(body)');
    expectClientError(await post(route, body, { 'content-type': 'application/x-www-form-urlencoded' }), 415, '(body)');
    expectClientError(await post(route, body, { 'content-type': 'application/json; charset=latin1' }), 415);
    expectClientError(await post(route, body, { 'content-encoding': 'br-unknown' }), 415);
    expectClientError(await post(route, Buffer.from('not gzip at all'), { 'content-encoding': 'gzip' }), 400);
    // A gzip bomb: a tiny body that inflates past the limit.
    expectClientError(await post(route, gzipSync(Buffer.alloc(5_000_000, 0x20)), { 'content-encoding': 'gzip' }), 413);
    expect((await post(route, gzipSync(body), { 'content-encoding': 'gzip' })).status).toBe(200);
    await expectHealthy();
  });

  it('FTS5 syntax in the text is searched as plain words in every mode', async () => {
    const queries = [
      '"',
      '"zebra',
      'zebra*',
      '*',
      'NEAR(zebra rains)',
      'NEAR',
      'zebra AND',
      'OR',
      'NOT zebra',
      '^zebra',
      'title:zebra',
      ':',
      '(',
      '((zebra)',
      ')',
      '{title}: zebra',
      'zebra -volcano',
      "zebra'; DROP TABLE passages; --",
    ];
    for (const q of queries) {
      for (const mode of ['bm25', 'hybrid']) {
        const reply = await post(route, { ...valid({ mode }), [textField]: q });
        expect(reply.status, `${mode} ${q}: ${reply.text.slice(0, 300)}`).toBe(200);
      }
    }
    // As an operator NOT would exclude the zebra passage; as a (stop)word it leaves "zebra" to find it.
    const reply = await post('/v1/search', { query: 'NOT zebra', mode: 'bm25', k: 3 });
    expect(reply.json.results.map((r: { docId: string }) => r.docId)).toEqual(['zebra']);
    await expectHealthy();
  });
});

describe('filters with injection attempts', () => {
  const search = (filter: unknown, mode = 'hybrid') => post('/v1/search', { query: 'zebra volcano sourdough', mode, k: 10, filter });
  const ids = (reply: Reply) => (reply.json.results as Array<{ docId: string }>).map((r) => r.docId).sort();

  it('SQL in metadata keys and values is data: it matches nothing and breaks nothing', async () => {
    const attempts: Array<Record<string, string | number | boolean>> = [
      { topic: "x') OR 1=1 --" },
      { topic: "animals' OR '1'='1" },
      { "topic') OR 1=1 --": 'animals' },
      { "topic' OR json_type(p.metadata, '$') = 'object' --": 1 },
      { topic: 'animals"; DROP TABLE passages; --' },
      { '1=1) OR (1': true },
      { topic: '%' },
      { topic: '*' },
    ];
    for (const metadata of attempts) {
      for (const mode of ['dense', 'bm25', 'hybrid', 'exact']) {
        const reply = await search({ metadata }, mode);
        expect(reply.status, `${mode} ${JSON.stringify(metadata)}: ${reply.text.slice(0, 300)}`).toBe(200);
        expect(ids(reply), `${mode} ${JSON.stringify(metadata)}`).toEqual([]);
      }
    }
    await expectHealthy();
  });

  it('dotted keys address nested values; an escaped dot is a literal dot; JSON path syntax is never interpreted', async () => {
    // zebra has the nested path a.b; volcano has the literal key "a.b".
    expect(ids(await search({ metadata: { 'a.b': 1 } }))).toEqual(['zebra']);
    expect(ids(await search({ metadata: { 'a\\.b': 1 } }))).toEqual(['volcano']);
    for (const key of ['$', '$.topic', '$..topic', 'a[0]', '$.a.b', '*', '$[*]', '#-1', 'a"."b']) {
      const reply = await search({ metadata: { [key]: key === '$.topic' ? 'animals' : 1 } });
      // A key the language cannot read is refused naming it; any other key is literal and matches nothing here.
      if (reply.status === 200) expect(ids(reply), key).toEqual([]);
      else expectClientError(reply, 400, `filter.metadata.${key}`);
    }
    await expectHealthy();
  });

  it('keys with quotes or control characters are data; empty keys, empty segments and NUL get a 400 naming the key', async () => {
    for (const metadata of [{ 'a"b': 1 }, { 'a\nb': 1 }, { "a'b": 1 }]) {
      const reply = await search({ metadata });
      expect(reply.status, reply.text).toBe(200);
      expect(ids(reply)).toEqual([]);
    }
    for (const key of ['', 'a\u0000b', 'a..b', '.a']) {
      const reply = await search({ metadata: { [key]: 1 } });
      expectClientError(reply, 400, `filter.metadata.${key}`);
    }
    await expectHealthy();
  });

  // Issue 12, defect 2: a key ending in a backslash reached SQLite as a malformed JSON path (500 in every mode and ask).
  it('a key ending in a backslash is a 400 naming it in every search mode and in ask; an escaped backslash matches', async () => {
    for (const mode of ['dense', 'bm25', 'hybrid', 'exact']) {
      const reply = await search({ metadata: { 'a\\': 1 } }, mode);
      expectClientError(reply, 400, 'filter.metadata.a\\');
      expect(reply.json.error.message).toMatch(/backslash/);
    }
    const ask = await post('/v1/ask', { question: 'zebra', k: 2, maxNewTokens: 2, filter: { metadata: { 'a\\': 1 } } });
    expectClientError(ask, 400, 'filter.metadata.a\\');
    const written = await post('/v1/documents', {
      documents: [{ id: 'slash', text: 'A zebra volcano sourdough note.', metadata: { 'w\\': 1, 'p\\q': { r: 'x' } } }],
    });
    expect(written.status, written.text).toBe(200);
    try {
      for (const mode of ['dense', 'bm25', 'hybrid', 'exact']) {
        expect(ids(await search({ metadata: { 'w\\\\': 1 } }, mode)), mode).toEqual(['slash']);
        expect(ids(await search({ metadata: { 'p\\\\q.r': 'x' } }, mode)), mode).toEqual(['slash']);
      }
      const asked = await post('/v1/ask', { question: 'zebra', k: 3, maxNewTokens: 2, filter: { metadata: { 'w\\\\': 1 } } });
      expect(asked.status, asked.text).toBe(200);
      expect(asked.json.passages.map((p: { docId: string }) => p.docId)).toEqual(['slash']);
    } finally {
      expect((await send('DELETE', '/v1/documents/slash')).status).toBe(200);
    }
    await expectHealthy();
  });

  it('operators run inside every search mode: ranges, $in, $or, $not, $exists, nested keys', async () => {
    const cases: Array<[Record<string, unknown>, string[]]> = [
      [{ year: { $gte: 2021 } }, ['bread', 'volcano']],
      [{ year: { $gt: 2020, $lt: 2022 } }, ['volcano']],
      [{ topic: { $in: ['animals', 'food'] } }, ['bread', 'zebra']],
      [{ topic: { $nin: ['animals', 'food'] } }, ['volcano']],
      [{ $or: [{ topic: 'food' }, { 'a.b': 1 }] }, ['bread', 'zebra']],
      [{ $not: { topic: 'food' } }, ['volcano', 'zebra']],
      [{ year: { $not: { $gte: 2021 } } }, ['zebra']],
      [{ a: { $exists: true } }, ['zebra']],
      [{ 'a.b': { $exists: false } }, ['bread', 'volcano']],
      [{ $and: [{ year: { $lte: 2022 } }, { topic: { $ne: 'geology' } }] }, ['bread', 'zebra']],
    ];
    for (const [metadata, expected] of cases) {
      for (const mode of ['dense', 'bm25', 'hybrid', 'exact']) {
        const reply = await search({ metadata }, mode);
        expect(reply.status, reply.text).toBe(200);
        expect(ids(reply), `${mode} ${JSON.stringify(metadata)}`).toEqual(expected);
      }
    }
    await expectHealthy();
  });

  it('prototype keys in a metadata filter are literal keys, not a way to drop the filter', async () => {
    for (const key of ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty']) {
      const reply = await post('/v1/search', `{"query": "zebra volcano sourdough", "k": 10, "filter": {"metadata": {"${key}": "x"}}}`);
      if (reply.status === 200) expect(ids(reply), key).toEqual([]);
      else expectClientError(reply, 400);
    }
    expect(Object.prototype).not.toHaveProperty('x');
    await expectHealthy();
  });

  it('docIds filters with odd ids are data', async () => {
    const odd = ["zebra' OR '1'='1", '%', '*', '../zebra', 'zebra\u0000', '"zebra"', '__proto__'];
    expect(ids(await search({ docIds: odd }))).toEqual([]);
    expect(ids(await search({ docIds: ['zebra', ...odd] }))).toEqual(['zebra']);
    await expectHealthy();
  });
});

describe('/v1/documents', () => {
  const upsert = (body: unknown, headers?: Record<string, string>) => post('/v1/documents', body, headers);
  const doc = (extra: Record<string, unknown> = {}) => ({
    id: 'probe',
    title: 'Probe',
    text: 'A probe document about quartz crystals.',
    ...extra,
  });

  async function expectUnchanged(): Promise<void> {
    // Refused writes leave no trace: the probe id never appears.
    expect((await send('GET', '/v1/documents/probe')).status).toBe(404);
    await expectHealthy();
  }

  it('malformed JSON and non-object bodies are 400s', async () => {
    for (const body of ['{', '{"documents": [}', '{"documents": [{"id": "a", "text": "b",}]}', 'null', '"documents"', '[]']) {
      const reply = await upsert(body);
      expectClientError(reply, 400, '(body)');
    }
    await expectUnchanged();
  });

  it('large bodies, parsed off the event loop, are judged exactly as small ones are', async () => {
    // Insignificant whitespace takes each body past the size parsed in line.
    const pad = ' '.repeat(300_000);
    for (const body of ['{', '{"documents": [}', 'null', '"documents"', '[]', ''])
      expectClientError(await upsert(body + pad), 400, '(body)');
    const invalidUtf8 = Buffer.concat([
      Buffer.from(`{"documents": [{"id": "probe", "text": "${'x'.repeat(300_000)}`),
      Buffer.from([0xc3, 0x28]),
      Buffer.from('"}]}'),
    ]);
    const refused = await upsert(invalidUtf8);
    expectClientError(refused, 400, '(body)');
    expect(refused.json.error.code).toBe('invalid_utf8');
    expectClientError(await upsert(gzipSync(`{"documents": [${pad}`), { 'content-encoding': 'gzip' }), 400, '(body)');
    expectClientError(await upsert(JSON.stringify({ documents: [doc({ id: 7, text: 'x'.repeat(300_000) })] })), 400, 'documents.0.id');
    expectClientError(
      await upsert(`{"documents": [{"id": "probe", "text": "quartz", "metadata": {"deep": ${deep(100_000, '{"a":', '}')}}}]}`),
      400,
      '(body)',
    );
    await expectUnchanged();

    // A valid one, with a byte-order mark and characters outside the BMP, compressed or not, is stored exactly.
    const docs = Array.from({ length: 18 }, (_, i) =>
      doc({ id: `large-${i}`, text: `${'Quartz crystals grow in cavities. '.repeat(450)}Emoji 😀, accents é, CJK 字 ${i}.` }),
    );
    const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ documents: docs }))]);
    expect(body.length).toBeGreaterThan(256 * 1024);
    for (const [encoded, headers] of [
      [body, {}],
      [gzipSync(body), { 'content-encoding': 'gzip' }],
    ] as const) {
      const written = await upsert(encoded, headers);
      expect(written.status, written.text.slice(0, 300)).toBe(200);
      expect(written.json.documents.map((d: { status: string }) => d.status)).toEqual(
        docs.map(() => (encoded === body ? 'added' : 'unchanged')),
      );
    }
    const passages = (await send('GET', '/v1/documents/large-17')).json.passages as Array<{ text: string }>;
    expect(passages.at(-1)!.text.endsWith('Emoji 😀, accents é, CJK 字 17.')).toBe(true);
    for (const d of docs) expect((await send('DELETE', `/v1/documents/${d.id}`)).status).toBe(200);
  });

  it('wrong types, missing fields and bad ids name the field', async () => {
    const cases: Array<[unknown, string]> = [
      [{}, 'documents'],
      [{ documents: {} }, 'documents'],
      [{ documents: 'probe' }, 'documents'],
      [{ documents: [] }, 'documents'],
      [{ documents: [null] }, 'documents.0'],
      [{ documents: ['probe'] }, 'documents.0'],
      [{ documents: [[doc()]] }, 'documents.0'],
      [{ documents: [{ text: 'x' }] }, 'documents.0.id'],
      [{ documents: [{ id: 'probe' }] }, 'documents.0.text'],
      [{ documents: [doc({ id: 42 })] }, 'documents.0.id'],
      [{ documents: [doc({ id: '' })] }, 'documents.0.id'],
      [{ documents: [doc({ id: '   ' })] }, 'documents.0.id'],
      [{ documents: [doc({ id: 'pro\u0000be' })] }, 'documents.0.id'],
      [{ documents: [doc({ id: 'pro\nbe' })] }, 'documents.0.id'],
      [{ documents: [doc({ id: 'x'.repeat(513) })] }, 'documents.0.id'],
      [{ documents: [doc({ text: 42 })] }, 'documents.0.text'],
      [{ documents: [doc({ text: null })] }, 'documents.0.text'],
      [{ documents: [doc({ text: ['a'] })] }, 'documents.0.text'],
      [{ documents: [doc({ title: 7 })] }, 'documents.0.title'],
      [{ documents: [doc({ metadata: [] })] }, 'documents.0.metadata'],
      [{ documents: [doc({ metadata: 'x' })] }, 'documents.0.metadata'],
      [{ documents: [doc({ metadata: null })] }, 'documents.0.metadata'],
      [{ documents: [doc(), doc()] }, 'documents.1.id'],
      [{ documents: [doc({ extra: 1 })] }, 'documents.0'],
      [{ documents: [doc()], upsert: true }, '(body)'],
    ];
    for (const [body, field] of cases) {
      const reply = await upsert(body);
      expectClientError(reply, 400);
      expect(reply.json.error.code).toBe('invalid_request');
      // Unknown keys are reported by name, at the object that holds them.
      if (!(field === 'documents.0' && JSON.stringify(body).includes('extra')) && field !== '(body)')
        expect(reply.json.error.field, JSON.stringify(body)).toBe(field);
      else expect(reply.json.error.message).toMatch(/extra|upsert/);
    }
    await expectUnchanged();
  });

  it('limits: batch size, text length, metadata bytes and depth, body size', async () => {
    const batch = Array.from({ length: 21 }, (_, i) => doc({ id: `probe-${i}` }));
    expectClientError(await upsert({ documents: batch }), 400, 'documents');
    expectClientError(await upsert({ documents: [doc({ text: 'q'.repeat(20_001) })] }), 400, 'documents.0.text');
    expectClientError(await upsert({ documents: [doc({ title: 't'.repeat(1001) })] }), 400, 'documents.0.title');
    expectClientError(await upsert({ documents: [doc({ metadata: { blob: 'm'.repeat(3000) } })] }), 400, 'documents.0.metadata');
    expectClientError(await upsert({ documents: [doc({ metadata: { a: { b: { c: { d: { e: 1 } } } } } })] }), 400, 'documents.0.metadata');
    const tooBig = await upsert({ documents: [doc({ text: 'quartz '.repeat(160_000) })] });
    expectClientError(tooBig, 413, '(body)');
    await expectUnchanged();
  });

  it('deeply nested metadata (10k and 100k levels) is refused without a crash or a 500', async () => {
    for (const nested of [deep(10_000, '{"a":', '}'), deep(10_000, '[', ']'), deep(100_000, '[', ']'), deep(50_000, '{"a":', '}')]) {
      const started = performance.now();
      const body = `{"documents": [{"id": "probe", "text": "quartz", "metadata": {"deep": ${nested}}}]}`;
      const reply = await upsert(body);
      // Over the 1 MiB documents body limit it is a 413 before parsing; within it, a 400 from validation.
      expectClientError(reply, Buffer.byteLength(body) > 1024 * 1024 ? 413 : 400);
      expect(performance.now() - started).toBeLessThan(5_000);
    }
    await expectUnchanged();
  });

  it('prototype keys in metadata are refused or kept as plain data, never pollute', async () => {
    for (const key of ['__proto__', 'constructor', 'prototype']) {
      const reply = await upsert(
        `{"documents": [{"id": "proto-${key}", "text": "quartz crystals", "metadata": {"${key}": {"polluted": true}}}]}`,
      );
      expect([200, 400], reply.text).toContain(reply.status);
      if (reply.status === 200) {
        const stored = await send('GET', `/v1/documents/proto-${key}`);
        expect(stored.status).toBe(200);
        // Stored as written, as an own key, or refused: never silently dropped into the prototype chain.
        expect(Object.keys(stored.json.metadata), key).toContain(key);
      } else {
        expectClientError(reply, 400);
      }
    }
    expect(Object.prototype).not.toHaveProperty('polluted');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    await expectHealthy();
  });

  it('ids, titles, text and metadata that are not well-formed Unicode are a 400 naming the field; nothing is stored', async () => {
    // A lone surrogate survives JSON.parse but not UTF-8 storage: such an id could be written but never read or deleted.
    const cases: Array<[unknown, string]> = [
      [{ documents: [doc({ id: 's\ud800' })] }, 'documents.0.id'],
      [{ documents: [doc(), doc({ id: 'probe-2', title: 'T\udc00' })] }, 'documents.1.title'],
      [{ documents: [doc({ text: 'quartz \ud800 crystals' })] }, 'documents.0.text'],
      [{ documents: [doc({ metadata: { 'k\ud800': 1 } })] }, 'documents.0.metadata.k\ud800'],
      [{ documents: [doc({ metadata: { tags: ['ok', 'bad\udfff'] } })] }, 'documents.0.metadata.tags.1'],
      [{ documents: [doc({ metadata: { a: { b: '\ud800x' } } })] }, 'documents.0.metadata.a.b'],
    ];
    for (const [body, field] of cases) {
      const reply = await upsert(body);
      expectClientError(reply, 400, field);
      expect(reply.json.error.message).toMatch(/well-formed Unicode/);
    }
    expect((await send('GET', `/v1/documents/${encodeURIComponent('s\ufffd')}`)).status).toBe(404);
    const bytes = Buffer.concat([
      Buffer.from('{"documents": [{"id": "probe", "text": "quartzite '),
      Buffer.from([0xff, 0xc3, 0xed, 0xa0, 0x80]),
      Buffer.from(' crystals"}]}'),
    ]);
    const utf8 = await upsert(bytes);
    expectClientError(utf8, 400, '(body)');
    expect(utf8.json.error.code).toBe('invalid_utf8');
    await expectUnchanged();
  });

  it('odd but valid text is stored and searchable: control characters, FTS syntax, SQL', async () => {
    const weird = await upsert({
      documents: [
        { id: 'ctrl-probe', text: 'feldspar\u0000 \u0007 \u001b[31m granite \ud83d\ude00 NEAR(a b) "unbalanced * title:x ^ (' },
        { id: "sql-probe') OR 1=1 --", text: 'basalt obsidian', metadata: { "k') OR 1=1 --": "v' OR '1'='1" } },
      ],
    });
    expect(weird.status, weird.text).toBe(200);
    expect(weird.json.documents.map((d: { status: string }) => d.status)).toEqual(['added', 'added']);
    for (const [query, id] of [
      ['feldspar granite', 'ctrl-probe'],
      ['obsidian', "sql-probe') OR 1=1 --"],
    ] as const) {
      const found = await post('/v1/search', { query, mode: 'bm25', k: 3 });
      expect(found.json.results[0]?.docId, query).toBe(id);
    }
    // Every character round-trips.
    const stored = await send('GET', `/v1/documents/${encodeURIComponent("sql-probe') OR 1=1 --")}`);
    expect(stored.json.metadata).toEqual({ "k') OR 1=1 --": "v' OR '1'='1" });
    const ctrl = await send('GET', '/v1/documents/ctrl-probe');
    expect(ctrl.json.passages.map((p: { text: string }) => p.text).join(' ')).toContain('granite \ud83d\ude00 NEAR');
    for (const id of ['ctrl-probe', "sql-probe') OR 1=1 --"]) {
      expect((await send('DELETE', `/v1/documents/${encodeURIComponent(id)}`)).status).toBe(200);
    }
    await expectHealthy();
  });

  it('empty or whitespace text is a per-document error, other documents of the batch still land', async () => {
    const reply = await upsert({ documents: [doc({ id: 'blank-probe', text: ' \n\t ' }), doc({ id: 'good-probe' })] });
    expect(reply.status).toBe(200);
    expect(reply.json.documents.map((d: { status: string }) => d.status)).toEqual(['error', 'added']);
    expect((await send('GET', '/v1/documents/blank-probe')).status).toBe(404);
    expect((await send('DELETE', '/v1/documents/good-probe')).status).toBe(200);
    await expectUnchanged();
  });

  it('GET and DELETE with hostile ids: 400 naming id, or 404; never 500', async () => {
    for (const [route, expected] of [
      ['/v1/documents/%00', 400],
      ['/v1/documents/a%0Ab', 400],
      ['/v1/documents/%20%20', 400],
      [`/v1/documents/${'x'.repeat(513)}`, 400],
      ['/v1/documents/%E0%A4%A', 400],
      ['/v1/documents/%FF', 400],
      ["/v1/documents/x'%20OR%201=1%20--", 404],
      ['/v1/documents/..%2F..%2Fetc%2Fpasswd', 404],
      ['/v1/documents/__proto__', 404],
      ['/v1/documents/constructor', 404],
    ] as const) {
      for (const method of ['GET', 'DELETE']) {
        const reply = await send(method, route);
        expect(reply.status, `${method} ${route}: ${reply.text}`).toBe(expected);
        expect(reply.json?.error?.code).toBeDefined();
        if (expected === 400) expect(reply.json.error.field).toBe('id');
      }
    }
    await expectUnchanged();
  });

  it('wrong content type, charset, and encoding', async () => {
    const body = JSON.stringify({ documents: [doc()] });
    expectClientError(await upsert(body, { 'content-type': 'text/plain' }), 415, '(body)');
    expectClientError(await upsert(body, { 'content-type': 'application/json; charset=iso-8859-1' }), 415);
    expectClientError(await upsert(gzipSync(Buffer.alloc(20_000_000, 0x20)), { 'content-encoding': 'gzip' }), 413);
    await expectUnchanged();
  });
});

describe('Authorization headers', () => {
  it('missing, malformed, oversized and wrong keys are 401s with a JSON error; a read key cannot write', async () => {
    const body = JSON.stringify({ query: 'zebra' });
    for (const authorization of [
      '',
      'Bearer',
      'Bearer ',
      'Basic dXNlcjpwYXNz',
      `Bearer ${'k'.repeat(10_000)}`,
      'Bearer rag_wrong',
      `Bearer ${WRITER_KEY}x`,
      `bearer\t${WRITER_KEY.slice(0, -1)}`,
      'Bearer a b c',
      `Bearer ${WRITER_KEY} extra`,
    ]) {
      const reply = await send('POST', '/v1/search', body, { 'content-type': 'application/json', authorization });
      expect(reply.status, JSON.stringify(authorization.slice(0, 40))).toBe(401);
      expect(reply.json.error.code).toBe('unauthorized');
      expect(reply.headers.get('www-authenticate')).toMatch(/^Bearer/);
    }
    const readOnly = await send('POST', '/v1/documents', JSON.stringify({ documents: [{ id: 'probe', text: 'x' }] }), {
      'content-type': 'application/json',
      authorization: `Bearer ${READER_KEY}`,
    });
    expect(readOnly.status).toBe(403);
    expect(readOnly.json.error.code).toBe('forbidden');
    // Auth is checked before the body is parsed: an unauthenticated client learns nothing from validation errors.
    const garbage = await send('POST', '/v1/documents', '{not json', { 'content-type': 'application/json', authorization: 'Bearer nope' });
    expect(garbage.status).toBe(401);
    expect((await send('GET', '/v1/documents/probe')).status).toBe(404);
    await expectHealthy();
  });
});

/** A raw request, so a header can be sent twice (fetch would join repeated values into one field). */
function rawRequest(
  method: string,
  route: string,
  headers: Record<string, string | string[]>,
  body = '',
): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${route}`, { method });
    for (const [name, value] of Object.entries(headers)) req.setHeader(name, value);
    req.on('response', (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text || 'null') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('repeated Authorization headers', () => {
  it('two Authorization headers are refused, whichever comes first', async () => {
    const body = JSON.stringify({ query: 'zebra' });
    for (const pair of [
      [`Bearer ${WRITER_KEY}`, `Bearer ${WRITER_KEY}`],
      [`Bearer ${READER_KEY}`, `Bearer ${WRITER_KEY}`],
      [`Bearer ${WRITER_KEY}`, 'Bearer rag_wrong'],
    ]) {
      const reply = await rawRequest('POST', '/v1/search', { 'content-type': 'application/json', authorization: pair }, body);
      expect(reply.status).toBe(400);
      expect(reply.body.error.field).toBe('Authorization');
    }
    const one = await rawRequest('POST', '/v1/search', { 'content-type': 'application/json', authorization: `Bearer ${WRITER_KEY}` }, body);
    expect(one.status).toBe(200);
    await expectHealthy();
  });
});

describe('HTTP-level oddities', () => {
  it('a wrong method on a known route is a JSON 405 with Allow', async () => {
    for (const [method, route, allow] of [
      ['GET', '/v1/search', 'POST'],
      ['PUT', '/v1/ask', 'POST'],
      ['DELETE', '/v1/search', 'POST'],
      ['PUT', '/v1/documents', 'GET, HEAD, POST'],
      ['POST', '/v1/documents/some%2Fid', 'DELETE, GET, HEAD'],
      ['PATCH', '/v1/documents/x', 'DELETE, GET, HEAD'],
      ['POST', '/healthz', 'GET, HEAD'],
      ['DELETE', '/v1/stats', 'GET, HEAD'],
    ] as const) {
      const reply = await send(method, route);
      expect(reply.status, `${method} ${route}`).toBe(405);
      expect(reply.headers.get('allow'), `${method} ${route}`).toBe(allow);
      expect(reply.json?.error?.code).toBe('method_not_allowed');
    }
    await expectHealthy();
  });

  it('unknown and traversal paths are JSON 404s', async () => {
    for (const [method, route] of [
      ['GET', '/v1/searches'],
      ['POST', '/v1/documents/a/b'],
      ['GET', '/v1/%2e%2e/%2e%2e/etc/passwd'],
      ['GET', '/..%2f..%2fpackage.json'],
      ['GET', '/v1/search%00'],
    ] as const) {
      const reply = await send(method, route);
      expect(reply.status, `${method} ${route}`).toBe(404);
      expect(reply.json?.error?.code).toBe('not_found');
    }
    await expectHealthy();
  });

  it('a client that sends half a body and hangs up does not wedge the server', async () => {
    await new Promise<void>((resolve, reject) => {
      const req = http.request(`${base}/v1/search`, {
        method: 'POST',
        headers: { authorization: `Bearer ${WRITER_KEY}`, 'content-type': 'application/json', 'content-length': '1000' },
      });
      req.on('error', () => resolve());
      req.write('{"query": "zeb');
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 200);
      req.on('response', () => reject(new Error('no response expected for an incomplete body')));
    });
    await expectHealthy();
  });

  it('a body shorter than its Content-Length is not parsed as complete', async () => {
    const reply = await new Promise<{ status: number }>((resolve, reject) => {
      const req = http.request(`${base}/v1/search`, {
        method: 'POST',
        headers: { authorization: `Bearer ${WRITER_KEY}`, 'content-type': 'application/json', 'content-length': '5' },
      });
      req.on('response', (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0 });
      });
      req.on('error', reject);
      // More bytes than announced: the server reads 5, which is not a complete JSON value.
      req.end('{"query": "zebra"}');
    }).catch(() => ({ status: 0 }));
    expect([0, 400]).toContain(reply.status);
    await expectHealthy();
  });
});
