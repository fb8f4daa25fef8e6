/**
 * Answer generation, the decoding loop: greedy search, beam search and sampling (sampling.ts) over a StepRunner (which
 * hides the decoder cache). Scoring and stopping follow Hugging Face transformers so results are comparable: token
 * scores are log-softmax of the raw logits, and the processors (min new tokens, no-repeat n-grams) only exclude tokens,
 * without renormalising. Each step only looks at the few largest logits per row (listed by the graph), never the whole
 * vocabulary.
 */
import type { AttentionTraceNode, CrossAttentionTracer } from './attribution.js';
import type { DecoderStep } from './decoder-session.js';
import { throwIfAborted, yieldToEventLoop } from './onnx-run.js';
import { drawIndex, isSampling, samplingDistribution, SeededRandom, validateSampling } from './sampling.js';
import type { StepRunner } from './step-runners.js';
import type { Candidate, SamplingOptions } from './types.js';

/** The decoding loop's options, in token ids (FidReader.answer builds them from its `GenerateOptions`, types.ts). */
export interface GenerationOptions {
  maxNewTokens: number;
  minNewTokens: number;
  numBeams: number;
  lengthPenalty: number;
  noRepeatNgramSize: number;
  decoderStartTokenId: number;
  eosTokenId: number;
  signal?: AbortSignal;
  /** Called with each token of the result as soon as it is final (greedy: every step; beam: at the end). */
  onToken?: (id: number, index: number) => void;
  /** When given, the cross-attention of every generated token is recorded (the decoder graph must be patched). */
  tracer?: CrossAttentionTracer;
  /** Temperature > 0 samples instead of searching (one sequence; numBeams must be 1). */
  sampling?: SamplingOptions;
  /** Size of the decoder's output vocabulary: sampling without topK looks at all of it. */
  vocabSize?: number;
}

export interface GenerationResult {
  /** Without the decoder start token; ends with EOS if the model produced it. */
  tokenIds: number[];
  /** Sum of the model's log-probabilities of tokenIds. */
  logProb: number;
  /** logProb / length^lengthPenalty (beam search's ranking score). */
  score: number;
  /** The trace of the returned sequence (one node per token), or null without a tracer. */
  trace: AttentionTraceNode | null;
  /** Decoder runs made. */
  steps: number;
  /** Beam search: all finished hypotheses (at most numBeams), best first; greedy: just the result. */
  hypotheses: Array<{ tokenIds: number[]; logProb: number; score: number; trace: AttentionTraceNode | null }>;
}

/** Samples when `opts.sampling` has temperature > 0, else runs beam search (numBeams > 1) or greedy search. */
export function generate(runner: StepRunner, opts: GenerationOptions): Promise<GenerationResult> {
  if (isSampling(opts.sampling)) {
    validateSampling(opts.sampling);
    if (opts.numBeams > 1) throw new RangeError('sampling (temperature > 0) cannot be combined with numBeams > 1');
    return sampleSearch(runner, opts, opts.sampling);
  }
  return opts.numBeams > 1 ? beamSearch(runner, opts) : greedySearch(runner, opts);
}

/** Picks the next token of a single sequence from a decoder step; `topK` is how many logits the step must list. */
interface TokenChooser {
  topK(banned: readonly number[]): number;
  choose(out: DecoderStep, banned: readonly number[]): Candidate | undefined;
}

export function greedySearch(runner: StepRunner, opts: GenerationOptions): Promise<GenerationResult> {
  return singleSequenceSearch(runner, opts, {
    topK: (banned) => 1 + banned.length,
    choose: (out, banned) => out.topCandidates(0, 1, banned)[0],
  });
}

/**
 * Ancestral sampling: each token is drawn from the model's distribution after temperature, top-k and top-p (see
 * sampling.ts). The step lists only the topK + banned largest logits when topK is set, else the whole vocabulary.
 */
export function sampleSearch(runner: StepRunner, opts: GenerationOptions, sampling: SamplingOptions): Promise<GenerationResult> {
  const random = new SeededRandom(sampling.seed ?? randomSeed());
  const vocab = opts.vocabSize;
  if (sampling.topK === 0 && vocab === undefined) throw new Error('sampling without topK needs the vocabulary size');
  const wanted = (banned: readonly number[]) => (sampling.topK > 0 ? sampling.topK + banned.length : vocab!);
  return singleSequenceSearch(runner, opts, {
    topK: (banned) => (vocab === undefined ? wanted(banned) : Math.min(wanted(banned), vocab)),
    choose: (out, banned) => {
      const candidates = allowedCandidates(out, wanted(banned) - banned.length, banned);
      const { tokens, probs } = samplingDistribution(candidates, sampling);
      const index = drawIndex(probs, random.next());
      return candidates.find((c) => c.token === tokens[index]);
    },
  });
}

/**
 * The `count` best allowed tokens, largest logit first. When that is the whole vocabulary and the step has the full
 * logits (a graph without in-graph top-k), they are sorted here instead of by the step's insertion selection.
 */
function allowedCandidates(out: DecoderStep, count: number, banned: readonly number[]): Candidate[] {
  if (out.logits && count >= out.lastLogits(0).length - banned.length) {
    const logits = out.lastLogits(0);
    const skip = new Set(banned);
    const all: Candidate[] = [];
    for (let token = 0; token < logits.length; token++) if (!skip.has(token)) all.push({ token, logit: logits[token]! });
    return all.sort((a, b) => b.logit - a.logit || a.token - b.token);
  }
  return out.topCandidates(0, count, banned);
}

function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 52);
}

async function singleSequenceSearch(runner: StepRunner, opts: GenerationOptions, chooser: TokenChooser): Promise<GenerationResult> {
  const prefix = [opts.decoderStartTokenId];
  const tokenIds: number[] = [];
  let logProb = 0;
  let trace: AttentionTraceNode | null = null;
  let steps = 0;
  while (tokenIds.length < opts.maxNewTokens) {
    if (steps > 0) await yieldToEventLoop();
    throwIfAborted(opts.signal);
    const banned = bannedTokens(prefix, opts);
    const out = await runner.step([prefix], chooser.topK(banned));
    steps++;
    const best = chooser.choose(out, banned);
    if (!best) throw new Error('every token is banned');
    const token = best.token;
    logProb += best.logit - out.lastLogSumExp(0);
    if (opts.tracer) trace = opts.tracer.record(out, 0, trace);
    prefix.push(token);
    tokenIds.push(token);
    opts.onToken?.(token, tokenIds.length - 1);
    if (token === opts.eosTokenId) break;
  }
  throwIfAborted(opts.signal);
  const score = lengthNormalized(logProb, tokenIds.length, opts.lengthPenalty);
  return { tokenIds, logProb, score, trace, steps, hypotheses: [{ tokenIds, logProb, score, trace }] };
}

interface Beam {
  /** Decoder input so far: start token + generated tokens. */
  prefix: number[];
  sumLogProbs: number;
  trace: AttentionTraceNode | null;
}

/**
 * Beam search with the semantics of transformers' BeamSearchScorer (early_stopping=False): 2·numBeams candidates per
 * step, EOS candidates ranked within the top numBeams become finished hypotheses scored
 * sum_logprobs / generated_len^length_penalty (EOS counted), and the search stops once numBeams hypotheses are finished
 * and none can still be beaten by the best running beam. The first step runs a single row (all beams would be equal);
 * the runner then expands the cache to numBeams rows and reorders it by beam origin every step.
 */
export async function beamSearch(runner: StepRunner, opts: GenerationOptions): Promise<GenerationResult> {
  const numBeams = opts.numBeams;
  const finished = new FinishedHypotheses(numBeams, opts.lengthPenalty);
  let running: Beam[] = [{ prefix: [opts.decoderStartTokenId], sumLogProbs: 0, trace: null }];
  const topK = new TopK(2 * numBeams);
  let steps = 0;
  let done = false;
  for (let generated = 1; generated <= opts.maxNewTokens; generated++) {
    if (steps > 0) await yieldToEventLoop();
    throwIfAborted(opts.signal);
    const banned = running.map((beam) => bannedTokens(beam.prefix, opts));
    const perRow = 2 * numBeams;
    const out = await runner.step(
      running.map((b) => b.prefix),
      perRow + Math.max(...banned.map((b) => b.length)),
    );
    steps++;
    const traces = running.map((beam, row) => (opts.tracer ? opts.tracer.record(out, row, beam.trace) : null));
    collectCandidates(out, running, banned, perRow, topK);
    const candidates = topK.sortedDescending();
    const next: Array<{ row: number; token: number; score: number }> = [];
    for (let rank = 0; rank < candidates.length && next.length < numBeams; rank++) {
      const c = candidates[rank]!;
      if (c.token === opts.eosTokenId) {
        if (rank >= numBeams) continue;
        const origin = running[c.row]!;
        finished.add([...origin.prefix.slice(1), c.token], c.score, traces[c.row]!, generated);
      } else {
        next.push(c);
      }
    }
    if (finished.isDone(candidates[0]?.score ?? -Infinity, generated) || next.length === 0) {
      done = true;
      break;
    }
    if (generated < opts.maxNewTokens) runner.reorder(next.map((c) => c.row));
    running = next.map((c) => {
      const origin = running[c.row]!;
      return { prefix: [...origin.prefix, c.token], sumLogProbs: c.score, trace: traces[c.row]! };
    });
  }
  if (!done) {
    for (const beam of running) finished.add(beam.prefix.slice(1), beam.sumLogProbs, beam.trace, beam.prefix.length - 1);
  }
  throwIfAborted(opts.signal);
  const ranked = finished.ranked();
  const best = ranked[0];
  if (!best) throw new Error('beam search produced no hypothesis');
  best.tokenIds.forEach((id, i) => opts.onToken?.(id, i));
  return {
    tokenIds: best.tokenIds,
    logProb: best.sumLogProbs,
    score: best.score,
    trace: best.trace,
    steps,
    hypotheses: ranked.map((h) => ({ tokenIds: h.tokenIds, logProb: h.sumLogProbs, score: h.score, trace: h.trace })),
  };
}

/**
 * Fills `topK` with the best (row, token) continuations by cumulative log-probability. The global best `perRow` are
 * among each row's best `perRow`, so only those are looked at.
 */
function collectCandidates(
  out: DecoderStep,
  running: readonly Beam[],
  banned: ReadonlyArray<readonly number[]>,
  perRow: number,
  topK: TopK,
): void {
  topK.clear();
  running.forEach((beam, row) => {
    const offset = beam.sumLogProbs - out.lastLogSumExp(row);
    for (const c of out.topCandidates(row, perRow, banned[row])) topK.push(c.logit + offset, row, c.token);
  });
}

/** Bounded min-heap of the k best scores seen; ties keep the earlier (row, token). */
class TopK {
  private readonly scores: Float64Array;
  private readonly rows: Int32Array;
  private readonly tokens: Int32Array;
  private size = 0;

  constructor(private readonly k: number) {
    this.scores = new Float64Array(k);
    this.rows = new Int32Array(k);
    this.tokens = new Int32Array(k);
  }

  clear(): void {
    this.size = 0;
  }

  /** Scores must exceed this to enter. */
  get threshold(): number {
    return this.size < this.k ? -Infinity : this.scores[0]!;
  }

  push(score: number, row: number, token: number): void {
    if (this.size < this.k) {
      this.set(this.size, score, row, token);
      this.siftUp(this.size++);
    } else if (score > this.scores[0]!) {
      this.set(0, score, row, token);
      this.siftDown(0);
    }
  }

  sortedDescending(): Array<{ score: number; row: number; token: number }> {
    const items = [];
    for (let i = 0; i < this.size; i++) items.push({ score: this.scores[i]!, row: this.rows[i]!, token: this.tokens[i]! });
    return items.sort((a, b) => b.score - a.score || a.row - b.row || a.token - b.token);
  }

  private set(i: number, score: number, row: number, token: number): void {
    this.scores[i] = score;
    this.rows[i] = row;
    this.tokens[i] = token;
  }

  private swap(i: number, j: number): void {
    const s = this.scores[i]!,
      r = this.rows[i]!,
      t = this.tokens[i]!;
    this.set(i, this.scores[j]!, this.rows[j]!, this.tokens[j]!);
    this.set(j, s, r, t);
  }

  private siftUp(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.scores[parent]! <= this.scores[i]!) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private siftDown(i: number): void {
    for (;;) {
      const l = 2 * i + 1,
        r = l + 1;
      let min = i;
      if (l < this.size && this.scores[l]! < this.scores[min]!) min = l;
      if (r < this.size && this.scores[r]! < this.scores[min]!) min = r;
      if (min === i) return;
      this.swap(i, min);
      i = min;
    }
  }
}

interface Hypothesis {
  tokenIds: number[];
  sumLogProbs: number;
  score: number;
  trace: AttentionTraceNode | null;
}

/** transformers' BeamHypotheses: the numBeams best finished sequences by length-normalised score. */
class FinishedHypotheses {
  private readonly items: Hypothesis[] = [];
  private worstScore = 1e9;

  constructor(
    private readonly numBeams: number,
    private readonly lengthPenalty: number,
  ) {}

  add(tokenIds: number[], sumLogProbs: number, trace: AttentionTraceNode | null, generatedLength: number): void {
    const score = lengthNormalized(sumLogProbs, generatedLength, this.lengthPenalty);
    if (this.items.length < this.numBeams || score > this.worstScore) {
      this.items.push({ tokenIds, sumLogProbs, score, trace });
      if (this.items.length > this.numBeams) {
        const order = this.items.map((h, i) => ({ score: h.score, i })).sort((a, b) => a.score - b.score);
        this.items.splice(order[0]!.i, 1);
        this.worstScore = order[1]!.score;
      } else {
        this.worstScore = Math.min(score, this.worstScore);
      }
    }
  }

  isDone(bestRunningSumLogProbs: number, generatedLength: number): boolean {
    if (this.items.length < this.numBeams) return false;
    return this.worstScore >= lengthNormalized(bestRunningSumLogProbs, generatedLength, this.lengthPenalty);
  }

  /** Best first; among equal scores the later-added one first, as transformers picks the last of a stable sort. */
  ranked(): Hypothesis[] {
    return this.items
      .map((h, i) => ({ h, i }))
      .sort((a, b) => b.h.score - a.h.score || b.i - a.i)
      .map((x) => x.h);
  }
}

function lengthNormalized(sumLogProbs: number, length: number, lengthPenalty: number): number {
  return sumLogProbs / Math.max(length, 1) ** lengthPenalty;
}

/** Tokens the logits processors forbid after `prefix` (min new tokens, no-repeat n-grams). */
function bannedTokens(prefix: readonly number[], opts: GenerationOptions): number[] {
  const banned = repeatedNgramTokens(prefix, opts.noRepeatNgramSize);
  if (prefix.length - 1 < opts.minNewTokens) banned.push(opts.eosTokenId);
  return [...new Set(banned)];
}

/** Tokens that would repeat an n-gram of `prefix` (HF no_repeat_ngram_size; the start token counts as in HF). */
export function repeatedNgramTokens(prefix: readonly number[], n: number): number[] {
  const len = prefix.length;
  if (n <= 0 || len + 1 < n) return [];
  const banned: number[] = [];
  const keyStart = len - n + 1;
  for (let i = 0; i + n <= len; i++) {
    let same = true;
    for (let j = 0; j < n - 1 && same; j++) same = prefix[i + j] === prefix[keyStart + j];
    if (same) banned.push(prefix[i + n - 1]!);
  }
  return banned;
}
