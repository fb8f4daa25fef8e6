/**
 * The REST document API on an in-process server over the tiny fixture models: per-document statuses, reads, deletes,
 * limits, serialised writes, atomic visibility of a batch to concurrent searches, and the deferred HNSW checkpoint.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../src/main.js';
import { WriteCancelledError, type RagService } from '../src/service/index.js';
import type { ConfigInput } from '../src/config/index.js';
import { fixtureConfig } from './helpers/config.js';
import { BERT_TINY, T5_TINY } from './helpers/fixtures.js';
import { request, type HttpReply } from './helpers/http.js';

type Server = Awaited<ReturnType<typeof startServer>>;

const call = (base: string, method: string, route: string, body?: unknown): Promise<HttpReply> => request(base, method, route, { body });

async function start(overrides: ConfigInput = {}): Promise<{ server: Server; base: string; service: RagService }> {
  const corpus = mkdtempSync(path.join(os.tmpdir(), 'docs-api-corpus-'));
  writeFileSync(path.join(corpus, 'seed.md'), '# Seed\n\nThe seed document keeps the index from being empty.');
  const config = fixtureConfig({ corpusDir: corpus, auth: { disabled: true }, ...overrides });
  const server = await startServer(config, pino({ level: 'silent' }));
  const service = await server.ready;
  return { server, base: `http://127.0.0.1:${server.port}`, service };
}

const WORDS = 'river stone lantern harbor meadow copper violin glacier orchard falcon pepper canyon'.split(' ');

/** Deterministic filler prose of about `words` words. */
function prose(seed: number, words: number): string {
  const out: string[] = [];
  let x = seed * 2654435761;
  for (let i = 0; i < words; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out.push(WORDS[x % WORDS.length]!);
    if (i % 12 === 11) out.push('.');
  }
  return out.join(' ');
}

describe('document API', () => {
  let server: Server;
  let base = '';
  let service: RagService;

  beforeAll(async () => {
    ({ server, base, service } = await start({
      retrieval: { maxK: 1000 },
      documents: { maxBatch: 200, maxTextChars: 100_000, maxMetadataBytes: 200, maxMetadataDepth: 2, checkpointIdleMs: 300 },
    }));
  });

  afterAll(async () => {
    await server?.close();
  });

  it('adds, leaves unchanged, updates and reports per-document status in request order', async () => {
    const first = await call(base, 'POST', '/v1/documents', {
      documents: [
        { id: 'alpha', title: 'Alpha', text: 'Platypus facts: the platypus lays eggs.', metadata: { team: 'bio' } },
        { id: 'beta', text: 'Quasar notes. A quasar is very bright.' },
      ],
    });
    expect(first.status, first.text).toBe(200);
    expect(first.json.documents).toEqual([
      { id: 'alpha', status: 'added', passages: 1 },
      { id: 'beta', status: 'added', passages: 1 },
    ]);

    const second = await call(base, 'POST', '/v1/documents', {
      documents: [
        { id: 'beta', text: 'Quasar notes. A quasar is very bright.' },
        { id: 'alpha', title: 'Alpha', text: 'Platypus facts: the platypus lays eggs and hunts underwater.', metadata: { team: 'bio' } },
        { id: 'gamma', text: '   \n ' },
      ],
    });
    expect(second.status, second.text).toBe(200);
    expect(second.json.documents).toEqual([
      { id: 'beta', status: 'unchanged', passages: 1 },
      { id: 'alpha', status: 'updated', passages: 1 },
      { id: 'gamma', status: 'error', error: expect.stringMatching(/empty/) },
    ]);

    const doc = await call(base, 'GET', '/v1/documents/alpha');
    expect(doc.status).toBe(200);
    expect(doc.json).toEqual({
      id: 'alpha',
      title: 'Alpha',
      metadata: { team: 'bio' },
      passages: [{ passageId: 'alpha#0', text: 'Platypus facts: the platypus lays eggs and hunts underwater.' }],
    });
    expect((await call(base, 'GET', '/v1/documents/gamma')).status).toBe(404);

    const search = await call(base, 'POST', '/v1/search', { query: 'platypus underwater', mode: 'bm25', k: 3 });
    expect(search.json.results[0].docId).toBe('alpha');
    const filtered = await call(base, 'POST', '/v1/search', {
      query: 'platypus',
      mode: 'hybrid',
      k: 3,
      filter: { metadata: { team: 'bio' } },
    });
    expect(filtered.json.results.map((r: { docId: string }) => r.docId)).toEqual(['alpha']);
  });

  it('deletes a document from every store, and 404s an unknown one', async () => {
    await call(base, 'POST', '/v1/documents', { documents: [{ id: 'doomed', text: 'Axolotl regeneration is remarkable.' }] });
    const before = (await call(base, 'GET', '/v1/stats')).json;

    const del = await call(base, 'DELETE', '/v1/documents/doomed');
    expect(del.status, del.text).toBe(200);
    expect(del.json).toEqual({ id: 'doomed', deleted: true, passagesRemoved: 1 });
    expect((await call(base, 'GET', '/v1/documents/doomed')).status).toBe(404);
    const again = await call(base, 'DELETE', '/v1/documents/doomed');
    expect(again.status).toBe(404);
    expect(again.json.error.code).toBe('document_not_found');

    const search = await call(base, 'POST', '/v1/search', { query: 'axolotl regeneration', mode: 'bm25', k: 5 });
    expect(search.json.results).toEqual([]);
    const dense = await call(base, 'POST', '/v1/search', { query: 'axolotl regeneration', mode: 'dense', k: 1000 });
    expect(dense.json.results.some((r: { docId: string }) => r.docId === 'doomed')).toBe(false);
    const after = (await call(base, 'GET', '/v1/stats')).json;
    expect(after.documents).toBe(before.documents - 1);
    expect(after.passages).toBe(before.passages - 1);
  });

  it('addresses ids with slashes and spaces when URL-encoded', async () => {
    const id = 'notes/2024 plan.md';
    expect((await call(base, 'POST', '/v1/documents', { documents: [{ id, text: 'Kestrel hovering.' }] })).status).toBe(200);
    const got = await call(base, 'GET', `/v1/documents/${encodeURIComponent(id)}`);
    expect(got.status).toBe(200);
    expect(got.json.id).toBe(id);
    expect((await call(base, 'DELETE', `/v1/documents/${encodeURIComponent(id)}`)).status).toBe(200);
  });

  it('reports collection statistics', async () => {
    const stats = await call(base, 'GET', '/v1/stats');
    expect(stats.status).toBe(200);
    expect(stats.json).not.toHaveProperty('index');
    expect(stats.json).toMatchObject({
      collection: 'default',
      models: { embed: BERT_TINY, reader: T5_TINY },
      writable: true,
    });
    expect(stats.json.documents).toBe((await service.stats()).documents);
    expect(stats.json.passages).toBe((await service.stats()).passages);
    expect(stats.json.indexBytes).toBeGreaterThan(10_000);
    expect(stats.json.hnsw.live).toBe(stats.json.passages);
  });

  it('saves the HNSW graph once writes pause, not on every request', async () => {
    await call(base, 'POST', '/v1/documents', { documents: [{ id: 'lazy', text: 'Narwhal tusks are teeth.' }] });
    // Committed and searchable at once, but not yet in the saved graph file.
    expect((await service.stats()).hnsw.pending).toBeGreaterThan(0);
    await expect.poll(async () => (await service.stats()).hnsw.pending, { timeout: 5000, interval: 50 }).toBe(0);
    expect((await service.verify()).ok).toBe(true);
  });

  it.each([
    [{ documents: [] }, 'documents'],
    [{ documents: Array.from({ length: 201 }, (_, i) => ({ id: `d${i}`, text: 'x' })) }, 'documents'],
    [{ documents: [{ id: 'a', text: 'x'.repeat(100_001) }] }, 'documents.0.text'],
    [{ documents: [{ id: 'a', text: 'x', metadata: { blob: 'y'.repeat(300) } }] }, 'documents.0.metadata'],
    [{ documents: [{ id: 'a', text: 'x', metadata: { a: { b: { c: 1 } } } }] }, 'documents.0.metadata'],
    [{ documents: [{ id: 'a', text: 'x', metadata: ['not', 'an', 'object'] }] }, 'documents.0.metadata'],
    [
      {
        documents: [
          { id: 'a', text: 'x' },
          { id: 'a', text: 'y' },
        ],
      },
      'documents.1.id',
    ],
    [{ documents: [{ id: '  ', text: 'x' }] }, 'documents.0.id'],
    [{ documents: [{ id: 'a\u0000b', text: 'x' }] }, 'documents.0.id'],
    [{ documents: [{ id: 'a', text: 42 }] }, 'documents.0.text'],
    [{ documents: [{ id: 'a', text: 'x', body: 'y' }] }, 'documents.0'],
    [{ docs: [] }, 'documents'],
  ])('rejects %j with a 400 naming %s and changes nothing', async (body, field) => {
    const before = (await service.stats()).documents;
    const res = await call(base, 'POST', '/v1/documents', body);
    expect(res.status, res.text.slice(0, 300)).toBe(400);
    expect(res.json.error.code).toBe('invalid_request');
    expect(res.json.error.field.startsWith(field), res.json.error.field).toBe(true);
    expect((await service.stats()).documents).toBe(before);
  });

  it('writes are applied one at a time, in the order they were accepted', async () => {
    const first = service.upsertDocuments([{ id: 'order', text: 'Version one of the ordering document.' }]);
    const second = service.upsertDocuments([{ id: 'order', text: 'Version two of the ordering document.' }]);
    const third = service.upsertDocuments([{ id: 'order', text: 'Version two of the ordering document.' }]);
    expect((await first)[0]!.status).toBe('added');
    expect((await second)[0]!.status).toBe('updated');
    expect((await third)[0]!.status).toBe('unchanged');
    expect((await service.getDocument('order'))!.passages[0]!.text).toBe('Version two of the ordering document.');
  });

  it('searches keep running during a long batch and see all of it or none of it', async () => {
    const n = 60;
    const marker = 'zyxwvmarker';
    const docs = Array.from({ length: n }, (_, i) => ({ id: `batch-${i}`, title: `Batch ${i}`, text: `${marker} ${prose(i, 900)}` }));
    const documentsBefore = (await service.stats()).documents;

    let writing = true;
    const write = call(base, 'POST', '/v1/documents', { documents: docs }).finally(() => (writing = false));
    const counts: number[] = [];
    const documentCounts: number[] = [];
    const latencies: number[] = [];
    const started = performance.now();
    while (writing) {
      const t = performance.now();
      const res = await call(base, 'POST', '/v1/search', { query: marker, mode: 'bm25', k: 1000 });
      latencies.push(performance.now() - t);
      expect(res.status).toBe(200);
      counts.push(new Set(res.json.results.map((r: { docId: string }) => r.docId)).size);
      documentCounts.push((await call(base, 'GET', '/v1/stats')).json.documents);
    }
    const writeMs = performance.now() - started;
    const reply = await write;
    expect(reply.status, reply.text.slice(0, 300)).toBe(200);
    expect(reply.json.documents.every((d: { status: string }) => d.status === 'added')).toBe(true);
    const passages = reply.json.documents.reduce((s: number, d: { passages: number }) => s + d.passages, 0);

    latencies.sort((a, b) => a - b);
    console.log(
      `[documents-api] batch of ${n} docs / ${passages} passages took ${writeMs.toFixed(0)} ms; ${counts.length} searches ran meanwhile, ` +
        `p50 ${latencies[Math.floor(latencies.length / 2)]?.toFixed(1)} ms, max ${latencies.at(-1)?.toFixed(1)} ms`,
    );
    expect(passages).toBeGreaterThan(n);
    expect(counts.length).toBeGreaterThanOrEqual(5);
    for (const c of counts) expect([0, n]).toContain(c);
    for (const d of documentCounts) expect([documentsBefore, documentsBefore + n]).toContain(d);
    const final = await call(base, 'POST', '/v1/search', { query: marker, mode: 'bm25', k: 1000 });
    expect(new Set(final.json.results.map((r: { docId: string }) => r.docId)).size).toBe(n);
  });

  it('a write cancelled before its commit changes nothing', async () => {
    const before = await service.stats();
    const controller = new AbortController();
    const docs = Array.from({ length: 40 }, (_, i) => ({ id: `cancelled-${i}`, text: prose(100 + i, 900) }));
    const pending = service.upsertDocuments(docs, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('test cancels')), 30);
    await expect(pending).rejects.toBeInstanceOf(WriteCancelledError);
    const after = await service.stats();
    expect(after.documents).toBe(before.documents);
    expect(after.passages).toBe(before.passages);
    expect(await service.getDocument('cancelled-0')).toBeUndefined();
  });
});

describe('document API limits on a small server', () => {
  let server: Server;
  let base = '';

  beforeAll(async () => {
    ({ server, base } = await start({ documents: { bodyLimit: '64kb', maxQueuedWrites: 0 } }));
  });

  afterAll(async () => {
    await server?.close();
  });

  it('413s a body over documents.bodyLimit', async () => {
    const res = await call(base, 'POST', '/v1/documents', { documents: [{ id: 'big', text: 'x'.repeat(70_000) }] });
    expect(res.status).toBe(413);
    expect(res.json.error.code).toBe('payload_too_large');
  });

  it('415s a body that is not JSON', async () => {
    const res = await fetch(`${base}/v1/documents`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'id=a' });
    expect(res.status).toBe(415);
  });

  it('refuses a write with 503 and Retry-After when the write queue is full', async () => {
    // Big enough that the first write is still embedding when the others arrive.
    const docs = Array.from({ length: 10 }, (_, i) => ({ id: `q${i}`, text: prose(i, 300) }));
    const replies = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        call(base, 'POST', '/v1/documents', { documents: docs.map((d) => ({ ...d, text: `${d.text} ${i}` })) }),
      ),
    );
    const refused = replies.filter((r) => r.status === 503);
    expect(replies.some((r) => r.status === 200)).toBe(true);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) {
      expect(r.json.error.code).toBe('write_queue_full');
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }
  });
});

describe('read-only server', () => {
  it('serves reads and refuses writes with 409', async () => {
    const { server, base } = await start({ server: { readOnly: true } });
    try {
      const write = await call(base, 'POST', '/v1/documents', { documents: [{ id: 'x', text: 'y' }] });
      expect(write.status).toBe(409);
      expect(write.json.error.code).toBe('read_only');
      expect((await call(base, 'DELETE', '/v1/documents/seed.md')).status).toBe(409);
      expect((await call(base, 'GET', '/v1/documents/seed.md')).status).toBe(200);
      expect((await call(base, 'GET', '/v1/stats')).json.writable).toBe(false);
    } finally {
      await server.close();
    }
  });
});
