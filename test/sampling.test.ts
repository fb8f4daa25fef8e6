/**
 * Sampling in the decoding loop on the tiny T5 fixture: the first token's draws follow the model's probabilities
 * (chi-square), top-k and top-p keep exactly the tokens they should, seeds reproduce, temperature 0 is greedy.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { loadSeq2SeqModel, type Seq2SeqModel } from '../src/models/index.js';
import { FidReader, fidDecoderRewrite, type GenerateOptions, type ReaderPassage } from '../src/reader/index.js';
import { generate, type GenerationOptions } from '../src/reader/generation.js';
import { CachedStepRunner, UncachedStepRunner } from '../src/reader/step-runners.js';
import type { FusedMemory } from '../src/reader/fusion.js';
import { OnnxClock } from '../src/reader/onnx-run.js';
import { drawIndex, samplingDistribution, SeededRandom } from '../src/reader/sampling.js';
import type { Candidate, SamplingOptions } from '../src/reader/types.js';
import { FIXTURES_DIR, T5_TINY } from './helpers/fixtures.js';

const QUESTION = 'Which river flows through the old town of Heidelberg?';
const PASSAGES: ReaderPassage[] = [
  {
    passageId: 'p0',
    docId: 'd0',
    title: 'Heidelberg',
    text: 'Heidelberg is a city on the river Neckar in south-west Germany.',
    retrievalScore: 0.9,
  },
  {
    passageId: 'p1',
    docId: 'd1',
    title: 'Old Bridge',
    text: 'The Old Bridge crosses the Neckar and connects the old town with the other bank.',
    retrievalScore: 0.5,
  },
];
const GREEDY: GenerateOptions = { maxNewTokens: 8, numBeams: 1, lengthPenalty: 1, noRepeatNgramSize: 0, fusion: 'fid' };

let model: Seq2SeqModel;
let reader: FidReader;
let memory: FusedMemory;
/** The model's logits for the first answer token, from an uncached run that returns the whole vocabulary. */
let firstLogits: Float32Array;

beforeAll(async () => {
  model = await loadSeq2SeqModel(T5_TINY, {
    modelsDir: FIXTURES_DIR,
    allowRemote: false,
    quantized: false,
    decoderRewrite: fidDecoderRewrite(),
  });
  reader = await FidReader.create(model, { encoding: 'per-passage', crossCache: 'per-passage' });
  memory = await reader.encode(QUESTION, PASSAGES, 'fid');
  const step = await new UncachedStepRunner(reader.decoder, memory, new OnnxClock(), 'logits').step(
    [[model.config.decoder_start_token_id]],
    1,
  );
  firstLogits = step.lastLogits(0).slice();
});

/** Tokens by logit, largest first (ties: lower id), computed here independently of the decoder's top-k. */
function ranked(logits: Float32Array): Candidate[] {
  return Array.from(logits, (logit, token) => ({ token, logit })).sort((a, b) => b.logit - a.logit || a.token - b.token);
}

/** softmax(logits / T) over the given tokens, in float64. */
function softmax(cands: readonly Candidate[], temperature: number): number[] {
  const max = Math.max(...cands.map((c) => c.logit / temperature));
  const w = cands.map((c) => Math.exp(c.logit / temperature - max));
  const z = w.reduce((a, b) => a + b, 0);
  return w.map((x) => x / z);
}

/** The nucleus by the textbook definition: the smallest prefix of the sorted tokens whose probability reaches p. */
function nucleus(cands: readonly Candidate[], temperature: number, p: number): number[] {
  const probs = softmax(cands, temperature);
  const kept: number[] = [];
  let cumulative = 0;
  for (let i = 0; i < cands.length && cumulative < p; i++) {
    kept.push(cands[i]!.token);
    cumulative += probs[i]!;
  }
  return kept;
}

function generationOptions(sampling: SamplingOptions, maxNewTokens = 1): GenerationOptions {
  return {
    maxNewTokens,
    minNewTokens: 0,
    numBeams: 1,
    lengthPenalty: 1,
    noRepeatNgramSize: 0,
    decoderStartTokenId: model.config.decoder_start_token_id,
    eosTokenId: model.config.eos_token_id,
    sampling,
    vocabSize: model.config.vocab_size,
  };
}

/** First tokens of `draws` sampled decodings, seeds 0..draws-1, through the real cached decoding loop. */
async function firstTokens(sampling: Omit<SamplingOptions, 'seed'>, draws: number): Promise<number[]> {
  const tokens: number[] = [];
  for (let seed = 0; seed < draws; seed++) {
    const runner = new CachedStepRunner(reader.decoder, memory, new OnnxClock(), { broadcastMemory: reader.broadcastMemory });
    const result = await generate(runner, generationOptions({ ...sampling, seed }));
    tokens.push(result.tokenIds[0]!);
  }
  return tokens;
}

/** Pearson's chi-square statistic; bins expecting fewer than 5 draws are pooled. Returns the statistic and its df. */
function chiSquare(observed: Map<number, number>, expected: Map<number, number>, draws: number): { stat: number; df: number } {
  let stat = 0;
  let bins = 0;
  let pooledObserved = 0;
  let pooledExpected = 0;
  for (const [token, p] of expected) {
    const e = p * draws;
    const o = observed.get(token) ?? 0;
    if (e < 5) {
      pooledObserved += o;
      pooledExpected += e;
      continue;
    }
    stat += (o - e) ** 2 / e;
    bins++;
  }
  if (pooledExpected > 0) {
    stat += (pooledObserved - pooledExpected) ** 2 / pooledExpected;
    bins++;
  }
  return { stat, df: bins - 1 };
}

/** Upper 0.1% point of chi-square (Wilson–Hilferty): a correct sampler fails this 1 time in 1000 per seed set. */
function chiSquareCritical(df: number): number {
  const z = 3.0902;
  const a = 2 / (9 * df);
  return df * (1 - a + z * Math.sqrt(a)) ** 3;
}

describe('top-k and top-p keep exactly the right tokens', () => {
  it('top-k keeps the k largest logits, renormalised', () => {
    const all = ranked(firstLogits);
    const { tokens, probs } = samplingDistribution(all, { temperature: 0.5, topK: 10, topP: 1 });
    expect(tokens).toEqual(all.slice(0, 10).map((c) => c.token));
    const reference = softmax(all.slice(0, 10), 0.5);
    probs.forEach((p, i) => expect(p).toBeCloseTo(reference[i]!, 12));
  });

  it('top-p keeps the smallest set of most likely tokens reaching p, over the whole vocabulary', () => {
    const all = ranked(firstLogits);
    for (const [temperature, p] of [
      [0.5, 0.3],
      [0.5, 0.9],
      [1, 0.5],
      [0.2, 0.3],
    ] as const) {
      const kept = samplingDistribution(all, { temperature, topK: 0, topP: p }).tokens;
      expect(kept).toEqual(nucleus(all, temperature, p));
      expect(kept.length).toBeGreaterThan(1);
      expect(kept.length).toBeLessThan(all.length);
    }
  });

  it('top-k then top-p: the nucleus is taken within the renormalised top k', () => {
    const all = ranked(firstLogits);
    const kept = samplingDistribution(all, { temperature: 0.5, topK: 10, topP: 0.5 }).tokens;
    expect(kept).toEqual(nucleus(all.slice(0, 10), 0.5, 0.5));
    expect(kept.length).toBeLessThan(10);
  });

  it('a tiny top-p keeps the single most likely token (greedy)', () => {
    const all = ranked(firstLogits);
    expect(samplingDistribution(all, { temperature: 1, topK: 0, topP: 1e-9 }).tokens).toEqual([all[0]!.token]);
  });

  it('draws through the decoding loop never leave the nucleus (whole-vocabulary path)', async () => {
    const allowed = new Set(nucleus(ranked(firstLogits), 0.5, 0.3));
    const drawn = await firstTokens({ temperature: 0.5, topK: 0, topP: 0.3 }, 60);
    for (const token of drawn) expect(allowed.has(token)).toBe(true);
    expect(new Set(drawn).size).toBeGreaterThan(10);
  });
});

describe('sampled first tokens follow the model', () => {
  it('chi-square of 2000 seeded draws against softmax(logits / T) over the top k', async () => {
    const draws = 2000;
    const top = ranked(firstLogits).slice(0, 10);
    const probs = softmax(top, 0.5);
    const expected = new Map(top.map((c, i) => [c.token, probs[i]!]));
    const observed = new Map<number, number>();
    for (const token of await firstTokens({ temperature: 0.5, topK: 10, topP: 1 }, draws)) {
      observed.set(token, (observed.get(token) ?? 0) + 1);
    }
    for (const token of observed.keys()) expect(expected.has(token)).toBe(true);

    const fit = chiSquare(observed, expected, draws);
    expect(fit.df).toBe(9);
    expect(fit.stat).toBeLessThan(chiSquareCritical(fit.df));
    // The test has power: the same draws are far from a uniform choice among the k tokens.
    const uniform = new Map(top.map((c) => [c.token, 1 / top.length]));
    expect(chiSquare(observed, uniform, draws).stat).toBeGreaterThan(chiSquareCritical(9));
  });
});

describe('seeds and temperature 0', () => {
  it('the same seed gives the same answer, different seeds differ', async () => {
    const sampled = (seed: number) =>
      reader.answer(QUESTION, PASSAGES, { ...GREEDY, sampling: { temperature: 1, topK: 0, topP: 1, seed } });
    const a = await sampled(7);
    const b = await sampled(7);
    expect(b.tokenIds).toEqual(a.tokenIds);
    expect(b.answer).toBe(a.answer);
    const others = await Promise.all([1, 2, 3].map((seed) => sampled(seed)));
    expect(new Set([a, ...others].map((r) => r.tokenIds.join(','))).size).toBeGreaterThan(1);
    // Log-probabilities are the model's own (untempered), like greedy's.
    expect(Number.isFinite(a.logProb)).toBe(true);
  });

  it('temperature 0 is greedy whatever top-k, top-p and seed say', async () => {
    const greedy = await reader.answer(QUESTION, PASSAGES, GREEDY);
    const zero = await reader.answer(QUESTION, PASSAGES, { ...GREEDY, sampling: { temperature: 0, topK: 3, topP: 0.2, seed: 5 } });
    expect(zero.tokenIds).toEqual(greedy.tokenIds);
  });

  it('sampling with beams is refused', async () => {
    await expect(
      reader.answer(QUESTION, PASSAGES, { ...GREEDY, numBeams: 2, sampling: { temperature: 1, topK: 0, topP: 1 } }),
    ).rejects.toThrow(/numBeams/);
  });

  it('the seeded generator is uniform on [0, 1) and decorrelated across neighbouring seeds', () => {
    const values = Array.from({ length: 20000 }, (_, i) => new SeededRandom(i).next());
    expect(Math.min(...values)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...values)).toBeLessThan(1);
    const counts = new Array<number>(10).fill(0);
    for (const v of values) counts[Math.floor(v * 10)]!++;
    const stat = counts.reduce((s, o) => s + (o - 2000) ** 2 / 2000, 0);
    expect(stat).toBeLessThan(chiSquareCritical(9));
    expect(drawIndex(Float64Array.of(0.25, 0.75), 0.2)).toBe(0);
    expect(drawIndex(Float64Array.of(0.25, 0.75), 0.25)).toBe(1);
  });
});
