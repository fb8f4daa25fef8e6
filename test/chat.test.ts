/**
 * The OpenAI-compatible endpoints driven by the official `openai` client against the running server (tiny fixtures):
 * models, non-streamed and streamed completions, citations from the extension field, usage, and errors mapped to the
 * SDK's error classes.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey, hashApiKey } from '../src/api/index.js';
import { startServer } from '../src/main.js';
import type { RagService } from '../src/service/index.js';
import { fixtureConfig } from './helpers/config.js';
import { CROSS_ENCODER_TINY } from './helpers/fixtures.js';
import { request } from './helpers/http.js';

const DOCS: Record<string, string> = {
  'zebras.md':
    '# Zebra migration\n\nEvery year zebras migrate across the Serengeti following the rains. The zebra herds travel with wildebeest.',
  'volcanoes.md': '# Volcanoes\n\nA volcano erupts when magma rises through the crust. Basalt lava flows are runny; andesite is sticky.',
  'bread.md': '# Sourdough bread\n\nSourdough is leavened by a starter of wild yeast and lactobacilli. The dough ferments overnight.',
};

const KEY = generateApiKey();
const NOTES_KEY = generateApiKey();
let server: Awaited<ReturnType<typeof startServer>>;
let service: RagService;
let base = '';
let client: OpenAI;
const MODEL = 'fid-rag/default';

/** Typed access to the documented extension fields. */
type Citation = { index: number; passageId: string; docId: string; title: string; text: string; score: number; attention: number };
const citationsOf = (value: unknown) => (value as { citations: Citation[] }).citations;

beforeAll(async () => {
  const corpus = mkdtempSync(path.join(os.tmpdir(), 'chat-corpus-'));
  for (const [name, text] of Object.entries(DOCS)) writeFileSync(path.join(corpus, name), text);
  const config = fixtureConfig({
    corpusDir: corpus,
    rerankModel: CROSS_ENCODER_TINY,
    auth: {
      keys: [
        { name: 'chat', sha256: hashApiKey(KEY), scopes: ['read'] },
        { name: 'notes-only', sha256: hashApiKey(NOTES_KEY), scopes: ['read'], collections: ['notes'] },
      ],
    },
    server: { rateLimit: { windowMs: 60_000, max: 200 } },
  });
  server = await startServer(config, pino({ level: 'silent' }));
  service = await server.ready;
  base = `http://127.0.0.1:${server.port}`;
  client = new OpenAI({ apiKey: KEY, baseURL: `${base}/v1`, maxRetries: 0, timeout: 30_000 });
});

afterAll(async () => {
  await server?.close();
});

describe('GET /v1/models', () => {
  it('lists the index as a model id, and retrieves it', async () => {
    const models = [];
    for await (const m of client.models.list()) models.push(m);
    expect(models.map((m) => m.id)).toEqual([MODEL]);
    expect((models[0] as unknown as { collection: string }).collection).toBe('default');
    expect((await client.models.retrieve(MODEL)).id).toBe(MODEL);
  });
});

describe('POST /v1/chat/completions with the openai client', () => {
  const question = 'Where do zebras migrate?';

  it('answers non-streamed, with usage and citations in the extension field', async () => {
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: question }],
      max_tokens: 6,
    });
    expect(completion.object).toBe('chat.completion');
    expect(completion.model).toBe(MODEL);
    expect(completion.choices).toHaveLength(1);
    const choice = completion.choices[0]!;
    expect(choice.message.role).toBe('assistant');
    expect(['stop', 'length']).toContain(choice.finish_reason);

    // The same request through /v1/ask gives the same answer and the same citations.
    const ask = await request(base, 'POST', '/v1/ask', { key: KEY, body: { question, maxNewTokens: 6 } });
    expect(choice.message.content).toBe(ask.json.answer);
    const citations = citationsOf(completion);
    expect(citations.map((c) => c.passageId)).toEqual(ask.json.citations.map((c: { passageId: string }) => c.passageId));
    expect(citations.map((c) => c.index)).toEqual(citations.map((_, i) => i + 1));
    expect(citations.reduce((sum, c) => sum + c.score, 0)).toBeCloseTo(1, 5);
    for (const c of citations) expect(Object.values(DOCS).some((d) => d.includes(c.text.slice(0, 20)))).toBe(true);

    const usage = completion.usage!;
    expect(usage.completion_tokens).toBeGreaterThan(0);
    expect(usage.completion_tokens).toBeLessThanOrEqual(6);
    expect(choice.finish_reason).toBe(usage.completion_tokens === 6 ? 'length' : 'stop');
    expect(usage.prompt_tokens).toBeGreaterThan(question.split(' ').length * ask.json.passages.length);
    expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);
  });

  it('streams deltas that join up to the non-streamed answer; the last chunk carries citations, then usage', async () => {
    const params = { model: MODEL, messages: [{ role: 'user' as const, content: question }], max_tokens: 6 };
    const whole = await client.chat.completions.create(params);
    const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(whole.choices[0]!.message.content);
    const finished = chunks.filter((c) => c.choices[0]?.finish_reason);
    expect(finished).toHaveLength(1);
    expect(finished[0]!.choices[0]!.finish_reason).toBe(whole.choices[0]!.finish_reason);
    expect(citationsOf(finished[0])).toEqual(citationsOf(whole));
    const last = chunks[chunks.length - 1]!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual(whole.usage);
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
  });

  it('adds [n] markers when asked, and samples reproducibly with a seed', async () => {
    const body = {
      model: MODEL,
      messages: [{ role: 'user' as const, content: question }],
      max_tokens: 5,
      temperature: 1,
      seed: 42,
      rag: { citationMarkers: true },
    };
    const a = await client.chat.completions.create(body as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const b = await client.chat.completions.create(body as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(a.choices[0]!.message.content).toBe(b.choices[0]!.message.content);
    const markers = citationsOf(a)
      .map((c) => `[${c.index}]`)
      .join('');
    expect(a.choices[0]!.message.content!.endsWith(markers)).toBe(true);
  });

  it('folds the previous user turn into the retrieval query but reads the last question alone', async () => {
    const messages = [
      { role: 'system' as const, content: 'Answer briefly.' },
      { role: 'user' as const, content: 'Tell me about sourdough bread.' },
      { role: 'assistant' as const, content: 'It uses a starter.' },
      { role: 'user' as const, content: 'How long does it ferment?' },
    ];
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages,
      max_tokens: 4,
      rag: { k: 1, mode: 'bm25' },
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    // With k = 1 and bm25, the only passage must come from the folded query's subject.
    expect(citationsOf(completion)[0]!.docId).toBe('bread.md');
    const direct = await service.ask({
      question: 'How long does it ferment?',
      retrievalQuery: 'Tell me about sourdough bread.\nHow long does it ferment?',
      k: 1,
      mode: 'bm25',
      maxNewTokens: 4,
    });
    expect(completion.choices[0]!.message.content).toBe(direct.answer);
  });

  it('reranks when asked through the rag extension', async () => {
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: question }],
      max_tokens: 3,
      rag: { k: 2, rerank: { topN: 3 } },
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(citationsOf(completion).length).toBeGreaterThan(0);
  });
});

describe('one model per collection', () => {
  it('lists every collection as fid-rag/<name> and answers from the chosen one', async () => {
    await service.createCollection('notes');
    await service.ingestDocuments(
      [{ id: 'tea.md', title: 'Tea', text: 'Green tea is steamed or pan-fired soon after picking to stop oxidation.', metadata: {} }],
      {
        collection: 'notes',
        progress: false,
      },
    );
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids.sort()).toEqual([MODEL, 'fid-rag/notes']);
    for (const model of ['fid-rag/notes', 'notes']) {
      const completion = await client.chat.completions.create({
        model,
        messages: [{ role: 'user', content: 'Where do zebras migrate?' }],
        max_tokens: 2,
      });
      expect(citationsOf(completion).map((c) => c.docId)).toEqual(['tea.md']);
      expect(completion.model).toBe('fid-rag/notes');
    }
    expect((await client.models.retrieve('fid-rag/notes')).id).toBe('fid-rag/notes');
    // `fid-rag` alone is the default collection, whatever it is called.
    const byAlias = await client.chat.completions.create({
      model: 'fid-rag',
      messages: [{ role: 'user', content: 'Where do zebras migrate?' }],
      max_tokens: 2,
    });
    expect(byAlias.model).toBe(MODEL);
    expect(citationsOf(byAlias).map((c) => c.docId)).not.toContain('tea.md');
  });

  it('a key limited to some collections sees only their models and gets a PermissionDeniedError for others', async () => {
    const limited = new OpenAI({ apiKey: NOTES_KEY, baseURL: `${base}/v1`, maxRetries: 0 });
    const ids: string[] = [];
    for await (const m of limited.models.list()) ids.push(m.id);
    expect(ids).toEqual(['fid-rag/notes']);
    const err = await limited.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((err as InstanceType<typeof OpenAI.PermissionDeniedError>).param).toBe('model');
    const ok = await limited.chat.completions.create({
      model: 'fid-rag/notes',
      messages: [{ role: 'user', content: 'tea?' }],
      max_tokens: 2,
    });
    expect(citationsOf(ok)[0]!.docId).toBe('tea.md');
  });
});

describe('errors in OpenAI shape, as the SDK error classes', () => {
  it('n > 1 is a BadRequestError naming the parameter', async () => {
    const err = await client.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], n: 2 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const e = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(e.status).toBe(400);
    expect(e.param).toBe('n');
    expect(e.type).toBe('invalid_request_error');
  });

  it('tools and images are refused with the parameter named', async () => {
    const tools = await client.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function', function: { name: 'f' } }] })
      .catch((e: unknown) => e as InstanceType<typeof OpenAI.BadRequestError>);
    expect(tools).toBeInstanceOf(OpenAI.BadRequestError);
    expect((tools as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('tools');
    const image = await client.chat.completions
      .create({
        model: MODEL,
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'what is this?' },
              { type: 'image_url', image_url: { url: 'data:image/png;base64,AA==' } },
            ],
          },
        ],
      })
      .catch((e: unknown) => e as InstanceType<typeof OpenAI.BadRequestError>);
    expect(image).toBeInstanceOf(OpenAI.BadRequestError);
    expect((image as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('messages[0].content[1]');
  });

  it('a wrong key is an AuthenticationError; an unknown model a NotFoundError', async () => {
    const stranger = new OpenAI({ apiKey: 'rag_wrong', baseURL: `${base}/v1`, maxRetries: 0 });
    const auth = await stranger.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e);
    expect(auth).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((auth as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe('invalid_api_key');
    const missing = await client.chat.completions
      .create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect((missing as InstanceType<typeof OpenAI.NotFoundError>).param).toBe('model');
  });

  it('the raw error body has exactly the OpenAI fields', async () => {
    const res = await request(base, 'POST', '/v1/chat/completions', { key: KEY, body: { model: MODEL, messages: [] } });
    expect(res.status).toBe(400);
    expect(Object.keys(res.json.error).sort()).toEqual(['code', 'message', 'param', 'type']);
    expect(res.json.error.param).toBe('messages');
    const long = await request(base, 'POST', '/v1/chat/completions', {
      key: KEY,
      body: { model: MODEL, messages: [{ role: 'user', content: 'z'.repeat(2001) }] },
    });
    expect(long.status).toBe(400);
    expect(long.json.error.param).toBe('messages[0].content');
    const last = await request(base, 'POST', '/v1/chat/completions', {
      key: KEY,
      body: { model: MODEL, messages: [{ role: 'assistant', content: 'x' }] },
    });
    expect(last.status).toBe(400);
    expect(last.json.error.param).toBe('messages[0].role');
  });
});

describe('rate limits on the chat routes', () => {
  it('a 429 is a RateLimitError with Retry-After', async () => {
    const limited = await startServer(
      fixtureConfig({
        corpusDir: mkdtempSync(path.join(os.tmpdir(), 'chat-empty-')),
        auth: { disabled: true },
        server: { rateLimit: { windowMs: 60_000, max: 1 } },
      }),
      pino({ level: 'silent' }),
    );
    try {
      await limited.ready;
      const c = new OpenAI({ apiKey: 'unused', baseURL: `http://127.0.0.1:${limited.port}/v1`, maxRetries: 0 });
      await c.models.list();
      const err = await c.models.list().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.RateLimitError);
      const e = err as InstanceType<typeof OpenAI.RateLimitError>;
      expect(e.code).toBe('rate_limit_exceeded');
      expect(Number(e.headers?.get('retry-after'))).toBeGreaterThan(0);
    } finally {
      await limited.close();
    }
  });
});
