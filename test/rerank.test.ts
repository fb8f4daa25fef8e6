/**
 * Cross-encoder reranking on the tiny fixture: the fixture's export layout, the pair encoding, the Reranker contract,
 * and `rerank` on /v1/search and /v1/ask.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeModel } from '../src/fixtures/onnx-builder.js';
import { startServer } from '../src/main.js';
import { CrossEncoder } from '../src/models/index.js';
import { CrossEncoderReranker, rerankHits, type Reranker } from '../src/retrieval/index.js';
import type { RagService } from '../src/service/index.js';
import { fixtureConfig } from './helpers/config.js';
import { CROSS_ENCODER_TINY, FIXTURES_DIR } from './helpers/fixtures.js';
import { request } from './helpers/http.js';

const QUERY = 'how do zebras migrate';
const TEXTS = [
  'Every year zebras migrate across the Serengeti following the rains.',
  'A volcano erupts when magma rises through the crust.',
  'Sourdough is leavened by a starter of wild yeast and lactobacilli, and the dough ferments overnight before baking.',
  'Zebra herds travel with wildebeest.',
  'The Sicilian Defence answers 1.e4 with c5.',
];

let encoder: CrossEncoder;

beforeAll(async () => {
  encoder = await CrossEncoder.load(CROSS_ENCODER_TINY, { modelsDir: FIXTURES_DIR, allowRemote: false, quantized: false });
});

describe('fixture cross-encoder', () => {
  it('has the input and output names of the ms-marco-MiniLM-L-6-v2 export and a one-label config', () => {
    const dir = path.join(FIXTURES_DIR, CROSS_ENCODER_TINY);
    const graph = decodeModel(readFileSync(path.join(dir, 'onnx', 'model.onnx'))).graph!;
    expect(graph.input!.map((i) => i.name)).toEqual(['input_ids', 'attention_mask', 'token_type_ids']);
    expect(graph.output!.map((o) => o.name)).toEqual(['logits']);
    const dims = graph.output![0]!.type!.tensorType!.shape!.dim!.map((d) => d.dimParam || Number(d.dimValue));
    expect(dims).toEqual(['batch_size', 1]);
    const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(config.architectures).toEqual(['BertForSequenceClassification']);
    expect(Object.keys(config.id2label)).toHaveLength(1);
    expect(JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')).do_lower_case).toBe(true);
  });

  it('encodes a pair as [CLS] query [SEP] passage [SEP] with segment ids 0 then 1', () => {
    const q = encoder.tokenize('Zebras?');
    const p = encoder.tokenize('They migrate.');
    const pair = encoder.pair(q, p);
    const reference = encoder.tokenizer.encode('Zebras?', 'They migrate.');
    expect(pair.ids).toEqual(reference);
    expect(pair.ids[0]).toBe(101);
    expect(pair.firstSegment).toBe(q.length + 2);
    expect(encoder.maxTokens).toBe(512);
  });

  it('truncates longest first, one token at a time, down to maxTokens', () => {
    const stepwise = (q: number, p: number, budget: number) => {
      while (q + p > budget) {
        if (q > p) q--;
        else p--;
      }
      return [q, p];
    };
    const limited = Object.create(encoder, { maxTokens: { value: 16 } }) as CrossEncoder;
    for (const [q, p] of [
      [10, 30],
      [30, 10],
      [7, 7],
      [2, 40],
      [5, 6],
      [13, 0],
    ] as const) {
      const pair = limited.pair(new Array(q).fill(1000), new Array(p).fill(2000));
      const [eq, ep] = stepwise(q, p, 13);
      expect(pair.ids.length).toBe(eq! + ep! + 3);
      expect(pair.ids.filter((id) => id === 1000)).toHaveLength(eq!);
      expect(pair.ids.filter((id) => id === 2000)).toHaveLength(ep!);
    }
  });

  it('scores a pair the same alone and inside a padded batch', async () => {
    const q = encoder.tokenize(QUERY);
    const pairs = TEXTS.map((t) => encoder.pair(q, encoder.tokenize(t)));
    const batch = await encoder.scoreBatch(pairs);
    for (let i = 0; i < pairs.length; i++) expect((await encoder.scoreBatch([pairs[i]!]))[0]).toBeCloseTo(batch[i]!, 4);
  });
});

/** What every Reranker must do, whatever its model or batching. */
function rerankerContract(name: string, make: () => Reranker) {
  describe(`Reranker contract: ${name}`, () => {
    it('gives one finite score per passage, aligned with the input and independent of the other passages', async () => {
      const reranker = make();
      const scores = await reranker.score(QUERY, TEXTS);
      expect(scores).toHaveLength(TEXTS.length);
      for (const s of scores) expect(Number.isFinite(s)).toBe(true);
      const reversed = await reranker.score(QUERY, [...TEXTS].reverse());
      [...reversed].reverse().forEach((s, i) => expect(s).toBeCloseTo(scores[i]!, 4));
      expect((await reranker.score(QUERY, [TEXTS[2]!]))[0]).toBeCloseTo(scores[2]!, 4);
      expect(new Set(scores).size).toBeGreaterThan(1);
    });

    it('scores nothing for no passages, and stops when aborted', async () => {
      const reranker = make();
      expect(await reranker.score(QUERY, [])).toHaveLength(0);
      await expect(reranker.score(QUERY, TEXTS, AbortSignal.abort(new Error('gone')))).rejects.toThrow('gone');
    });

    it('rerankHits keeps the best k by score, each with its score', async () => {
      const reranker = make();
      const scores = await reranker.score(QUERY, TEXTS);
      const hits = TEXTS.map((text, i) => ({ id: i, text }));
      const { hits: kept, rerankMs } = await rerankHits(reranker, QUERY, hits, 3);
      const expected = [...scores.keys()].sort((a, b) => scores[b]! - scores[a]! || a - b).slice(0, 3);
      expect(kept.map((h) => h.id)).toEqual(expected);
      kept.forEach((h) => expect(h.rerankScore).toBeCloseTo(scores[h.id]!, 4));
      expect(rerankMs).toBeGreaterThan(0);
    });
  });
}

rerankerContract('cross-encoder, one pair per run', () => new CrossEncoderReranker(encoder, { batchSize: 1, batchTokens: 512 }));
rerankerContract('cross-encoder, batches of 4', () => new CrossEncoderReranker(encoder, { batchSize: 4, batchTokens: 100_000 }));
rerankerContract(
  'cross-encoder, batches of at most 40 tokens',
  () => new CrossEncoderReranker(encoder, { batchSize: 16, batchTokens: 40 }),
);

describe('cross-encoder batching', () => {
  it('runs length-sorted batches within batchSize pairs and batchTokens padded tokens (a longer pair alone)', async () => {
    const runs: number[][] = [];
    const spy = {
      modelId: encoder.modelId,
      tokenize: (t: string) => encoder.tokenize(t),
      pair: (q: readonly number[], p: readonly number[]) => encoder.pair(q, p),
      scoreBatch: (pairs: ReadonlyArray<{ ids: number[]; firstSegment: number }>) => {
        runs.push(pairs.map((p) => p.ids.length));
        return encoder.scoreBatch(pairs);
      },
    };
    await new CrossEncoderReranker(spy, { batchSize: 3, batchTokens: 60 }).score(QUERY, [...TEXTS, ...TEXTS]);
    expect(runs.flat()).toHaveLength(2 * TEXTS.length);
    expect(runs.flat()).toEqual([...runs.flat()].sort((a, b) => a - b));
    for (const run of runs) {
      expect(run.length).toBeLessThanOrEqual(3);
      if (run.length > 1) expect(run.length * Math.max(...run)).toBeLessThanOrEqual(60);
    }
    expect(runs.some((run) => run.length > 1)).toBe(true);
    expect(runs.some((run) => run.length === 1)).toBe(true);
  });
});

describe('rerank on the API', () => {
  const DOCS: Record<string, string> = {
    'zebras.md':
      '# Zebra migration\n\nEvery year zebras migrate across the Serengeti following the rains. The zebra herds travel with wildebeest.',
    'volcanoes.md': '# Volcanoes\n\nA volcano erupts when magma rises through the crust. Basalt lava flows are runny; andesite is sticky.',
    'bread.md': '# Sourdough bread\n\nSourdough is leavened by a starter of wild yeast and lactobacilli. The dough ferments overnight.',
    'chess.md': "# Chess openings\n\nThe Sicilian Defence answers 1.e4 with c5. The Queen's Gambit offers a pawn for central control.",
  };
  let server: Awaited<ReturnType<typeof startServer>>;
  let service: RagService;
  let base = '';
  const post = (route: string, body: unknown) => request(base, 'POST', route, { body });

  beforeAll(async () => {
    const corpus = mkdtempSync(path.join(os.tmpdir(), 'rerank-corpus-'));
    for (const [name, text] of Object.entries(DOCS)) writeFileSync(path.join(corpus, name), text);
    server = await startServer(
      fixtureConfig({ corpusDir: corpus, rerankModel: CROSS_ENCODER_TINY, auth: { disabled: true } }),
      pino({ level: 'silent' }),
    );
    service = await server.ready;
    base = `http://127.0.0.1:${server.port}`;
  });

  afterAll(async () => {
    await server?.close();
  });

  it('search keeps the k best of topN candidates by cross-encoder score', async () => {
    const candidates = await post('/v1/search', { query: QUERY, k: 4, mode: 'hybrid' });
    const reranked = await post('/v1/search', { query: QUERY, k: 2, mode: 'hybrid', rerank: { topN: 4 } });
    expect(reranked.status).toBe(200);
    const results = reranked.json.results as Array<{ passageId: string; text: string; score: number; rerankScore: number }>;
    expect(results).toHaveLength(2);
    expect(reranked.json.timings.rerankMs).toBeGreaterThan(0);
    const reranker = await service.reranker.get();
    const all = candidates.json.results as Array<{ passageId: string; text: string; score: number }>;
    const scores = await reranker.score(
      QUERY,
      all.map((c) => c.text),
    );
    const best = [...scores.keys()].sort((a, b) => scores[b]! - scores[a]! || a - b).slice(0, 2);
    expect(results.map((r) => r.passageId)).toEqual(best.map((i) => all[i]!.passageId));
    results.forEach((r, i) => {
      expect(r.rerankScore).toBeCloseTo(scores[best[i]!]!, 4);
      expect(r.score).toBe(all[best[i]!]!.score);
    });
  });

  it('ask reads the reranked passages and reports rerank time', async () => {
    const res = await post('/v1/ask', { question: QUERY, k: 2, rerank: { topN: 4 }, maxNewTokens: 3 });
    expect(res.status).toBe(200);
    expect(res.json.passages).toHaveLength(2);
    for (const p of res.json.passages) expect(typeof p.rerankScore).toBe('number');
    expect(res.json.passages[0].rerankScore).toBeGreaterThanOrEqual(res.json.passages[1].rerankScore);
    expect(res.json.timings.rerankMs).toBeGreaterThan(0);
    expect(res.json.timings.retrieveMs).toBeGreaterThanOrEqual(res.json.timings.rerankMs);
  });

  it('topN below k, or above the limit, is a 400 naming rerank.topN', async () => {
    const below = await post('/v1/search', { query: QUERY, k: 3, rerank: { topN: 2 } });
    expect(below.status).toBe(400);
    expect(below.json.error.field).toBe('rerank.topN');
    const implicit = await post('/v1/ask', { question: QUERY, rerank: { topN: 2 } });
    expect(implicit.status).toBe(400);
    expect(implicit.json.error.field).toBe('rerank.topN');
    const above = await post('/v1/search', { query: QUERY, rerank: { topN: 101 } });
    expect(above.status).toBe(400);
    expect(above.json.error.field).toBe('rerank.topN');
  });

  it('/v1/ask samples reproducibly with a seed and refuses sampling with beams', async () => {
    const body = { question: QUERY, k: 2, maxNewTokens: 4, temperature: 1.2, topP: 0.95, seed: 3 };
    const a = await post('/v1/ask', body);
    const b = await post('/v1/ask', body);
    expect(a.status).toBe(200);
    expect(b.json.answer).toBe(a.json.answer);
    const beams = await post('/v1/ask', { ...body, numBeams: 2 });
    expect(beams.status).toBe(400);
    expect(beams.json.error.field).toBe('numBeams');
  });
});

describe('a missing rerank model', () => {
  it('is a 503 for rerank requests only; everything else keeps working', async () => {
    const corpus = mkdtempSync(path.join(os.tmpdir(), 'rerank-missing-'));
    writeFileSync(path.join(corpus, 'a.md'), '# A\n\nZebras migrate.');
    const server = await startServer(
      fixtureConfig({ corpusDir: corpus, rerankModel: 'no-such-cross-encoder', auth: { disabled: true } }),
      pino({ level: 'silent' }),
    );
    try {
      await server.ready;
      const base = `http://127.0.0.1:${server.port}`;
      const plain = await request(base, 'POST', '/v1/search', { body: { query: 'zebras', k: 1 } });
      expect(plain.status).toBe(200);
      const reranked = await request(base, 'POST', '/v1/search', { body: { query: 'zebras', k: 1, rerank: { topN: 5 } } });
      expect(reranked.status).toBe(503);
      expect(reranked.json.error.code).toBe('rerank_unavailable');
      expect(reranked.json.error.message).toContain('no-such-cross-encoder');
    } finally {
      await server.close();
    }
  });
});
