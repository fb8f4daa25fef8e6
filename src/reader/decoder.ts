/**
 * Drives an Optimum/transformers.js merged T5 decoder (`decoder_model_merged.onnx`): one graph whose `If` node runs
 * the no-past decoder when `use_cache_branch` is false and the with-past decoder when it is true.
 */
import ort from 'onnxruntime-node';
import { BEAM_ORIGINS_INPUT, TOP_K_INPUT, type DecoderGraphOutputs } from './attention-patch.js';
import type { FusedMemory } from './fusion.js';
import {
  boolTensor,
  float32Data,
  float32Tensor,
  int64Tensor,
  onesInt64Tensor,
  OnnxClock,
  runDecoderSession,
  type OrtFeeds,
  type OrtSession,
  type OrtTensor,
} from './onnx-run.js';

const PAST_DECODER_KEY = /^past_key_values\.(\d+)\.decoder\.key$/;

/**
 * What a run copies out of onnxruntime: `step` what a decoding step needs (top logits, normaliser, mean attention,
 * self-attention cache), `first-step` also the cross-attention cache, `logits` also the full logits (re-scoring),
 * `all` everything, per-layer attention included (checks).
 */
export type FetchMode = 'step' | 'first-step' | 'logits' | 'all';

export class MergedDecoder {
  readonly layers: number;
  /** Whether the graph reorders the self-attention cache itself (BEAM_ORIGINS_INPUT); otherwise JS copies it. */
  readonly reordersCache: boolean;
  /** Whether the graph lists the largest logits itself (TOP_K_INPUT); otherwise JS scans the full logits. */
  readonly computesTopK: boolean;
  private readonly fetchLists = new Map<FetchMode, string[] | undefined>();

  /** @param outputs the outputs prepareDecoderGraph added (none for an unmodified graph) */
  constructor(
    readonly session: OrtSession,
    readonly heads: number,
    readonly dKv: number,
    readonly outputs: DecoderGraphOutputs = { crossAttentionLayers: [] },
  ) {
    const required = ['input_ids', 'encoder_hidden_states', 'encoder_attention_mask', 'use_cache_branch'];
    const missing = required.filter((n) => !session.inputNames.includes(n));
    if (missing.length > 0) {
      throw new Error(`not a merged seq2seq decoder: inputs ${missing.join(', ')} are missing`);
    }
    this.layers = session.inputNames.filter((n) => PAST_DECODER_KEY.test(n)).length;
    if (this.layers === 0) throw new Error('merged decoder has no past_key_values inputs');
    this.reordersCache = session.inputNames.includes(BEAM_ORIGINS_INPUT);
    this.computesTopK = session.inputNames.includes(TOP_K_INPUT) && outputs.topValues !== undefined;
    const added = [outputs.logSumExp, outputs.topValues, outputs.topIndices, outputs.crossAttentionMean, ...outputs.crossAttentionLayers];
    const absent = added.filter((n) => n !== undefined && !session.outputNames.includes(n));
    if (absent.length > 0) throw new Error(`decoder session lacks outputs ${absent.join(', ')}`);
    for (const mode of ['step', 'first-step', 'logits', 'all'] as const) this.fetchLists.set(mode, this.fetches(mode));
  }

  get hasCrossAttention(): boolean {
    return this.outputs.crossAttentionMean !== undefined;
  }

  /** The feeds of an empty cache for `batch` rows (first step, or every step without cache). */
  emptyPast(batch: number): OrtFeeds {
    const feeds: OrtFeeds = this.reordersCache ? { [BEAM_ORIGINS_INPUT]: identityOrigins(batch) } : {};
    const dims = [batch, this.heads, 0, this.dKv];
    for (let i = 0; i < this.layers; i++) {
      for (const part of ['decoder', 'encoder']) {
        feeds[`past_key_values.${i}.${part}.key`] = float32Tensor(new Float32Array(0), dims);
        feeds[`past_key_values.${i}.${part}.value`] = float32Tensor(new Float32Array(0), dims);
      }
    }
    return feeds;
  }

  /** The feed asking the graph for the `k` largest logits per position (k must not exceed the vocabulary). */
  topKFeed(k: number): OrtFeeds {
    return this.computesTopK ? { [TOP_K_INPUT]: int64Tensor([k], [1]) } : {};
  }

  /**
   * Output names to fetch, or undefined to fetch all. onnxruntime-node 1.14 mislabels the outputs of a run whose fetch
   * list is not a prefix of the session's output order, so a subset is only requested when it is such a prefix
   * (prepareDecoderGraph orders the outputs to make the useful subsets prefixes).
   */
  private fetches(mode: FetchMode): string[] | undefined {
    if (mode === 'all') return undefined;
    const { logSumExp, topValues, topIndices, crossAttentionMean } = this.outputs;
    const wanted = new Set<string>();
    for (const name of [logSumExp, topValues, topIndices, crossAttentionMean]) if (name) wanted.add(name);
    if (mode === 'logits' || !this.computesTopK) wanted.add('logits');
    for (let i = 0; i < this.layers; i++) {
      wanted.add(`present.${i}.decoder.key`).add(`present.${i}.decoder.value`);
      if (mode !== 'step') wanted.add(`present.${i}.encoder.key`).add(`present.${i}.encoder.value`);
    }
    const prefix = this.session.outputNames.slice(0, wanted.size);
    return prefix.length < this.session.outputNames.length && prefix.every((n) => wanted.has(n)) ? prefix : undefined;
  }

  async run(feeds: OrtFeeds, mode: FetchMode, clock: OnnxClock): Promise<DecoderStep> {
    const out = await runDecoderSession(this.session, feeds, this.fetchLists.get(mode), clock);
    return new DecoderStep(out, this.outputs);
  }
}

export interface Candidate {
  token: number;
  logit: number;
}

/** One decoder run's outputs, with per-row views of the last position's top logits, normaliser and attention. */
export class DecoderStep {
  readonly batch: number;
  readonly positions: number;
  /** [batch, positions, vocab]; null when not fetched (decoding steps of a graph that lists top logits itself). */
  readonly logits: Float32Array | null;
  private readonly logSumExps: Float32Array | null;
  private readonly topValues: Float32Array | null;
  private readonly topIndices: BigInt64Array | null;
  private readonly topK: number;
  /** [batch, positions, memoryLength]: cross-attention averaged over layers and heads; null when not exposed. */
  readonly meanCrossAttention: Float32Array | null;
  readonly memoryLength: number;

  constructor(
    readonly outputs: Record<string, OrtTensor>,
    names: DecoderGraphOutputs,
  ) {
    const shaped = outputs.logits ?? (names.logSumExp ? outputs[names.logSumExp] : undefined);
    const [batch, positions] = shaped?.dims ?? [];
    if (batch === undefined || positions === undefined) throw new Error('decoder run returned neither logits nor their normaliser');
    this.batch = batch;
    this.positions = positions;
    this.logits = outputs.logits ? float32Data(outputs.logits, 'logits') : null;
    this.logSumExps = names.logSumExp ? float32Data(outputs[names.logSumExp], names.logSumExp) : null;
    const top = names.topIndices ? outputs[names.topIndices] : undefined;
    this.topValues = top && names.topValues ? float32Data(outputs[names.topValues], names.topValues) : null;
    this.topIndices = top?.data instanceof BigInt64Array ? top.data : null;
    this.topK = top?.dims[2] ?? 0;
    const mean = names.crossAttentionMean;
    this.meanCrossAttention = mean ? float32Data(outputs[mean], mean) : null;
    this.memoryLength = mean ? (outputs[mean]!.dims[2] ?? 0) : 0;
  }

  /** Logits of (row, position); a view into the output. Needs a run that fetched logits. */
  logitsAt(row: number, position: number): Float32Array {
    if (!this.logits) throw new Error('this decoder run did not fetch the logits');
    const vocab = this.logits.length / (this.batch * this.positions);
    const start = (row * this.positions + position) * vocab;
    return this.logits.subarray(start, start + vocab);
  }

  lastLogits(row: number): Float32Array {
    return this.logitsAt(row, this.positions - 1);
  }

  /** log Σ exp(logits) of (row, position), from the graph when it computes it. */
  logSumExpAt(row: number, position: number): number {
    return this.logSumExps ? this.logSumExps[row * this.positions + position]! : logSumExp(this.logitsAt(row, position));
  }

  lastLogSumExp(row: number): number {
    return this.logSumExpAt(row, this.positions - 1);
  }

  /**
   * The `count` largest logits of the row's last position that are not banned, largest first (ties: lower token id
   * first). From the graph's TopK when it ran with k >= count + banned.length, else by scanning the logits.
   */
  topCandidates(row: number, count: number, banned: readonly number[] = []): Candidate[] {
    const result: Candidate[] = [];
    if (this.topValues && this.topIndices && this.topK >= count + banned.length) {
      const start = (row * this.positions + this.positions - 1) * this.topK;
      for (let i = 0; i < this.topK && result.length < count; i++) {
        const token = Number(this.topIndices[start + i]!);
        if (!banned.includes(token)) result.push({ token, logit: this.topValues[start + i]! });
      }
      return result;
    }
    return largestLogits(this.lastLogits(row), count, banned);
  }

  /** Mean cross-attention of (row, position) over the memory; a view into the output. */
  meanAttentionAt(row: number, position: number): Float32Array {
    if (!this.meanCrossAttention) throw new Error('this decoder does not expose cross-attention');
    const start = (row * this.positions + position) * this.memoryLength;
    return this.meanCrossAttention.subarray(start, start + this.memoryLength);
  }

  lastMeanAttention(row: number): Float32Array {
    return this.meanAttentionAt(row, this.positions - 1);
  }
}

/** The `count` largest values of `logits` outside `banned`, largest first, ties by lower index. */
function largestLogits(logits: Float32Array, count: number, banned: readonly number[]): Candidate[] {
  const skip = new Set(banned);
  const best: Candidate[] = [];
  let threshold = -Infinity;
  for (let token = 0; token < logits.length; token++) {
    const logit = logits[token]!;
    if (logit <= threshold && best.length === count) continue;
    if (skip.has(token)) continue;
    let at = best.length;
    while (at > 0 && best[at - 1]!.logit < logit) at--;
    best.splice(at, 0, { token, logit });
    if (best.length > count) best.pop();
    if (best.length === count) threshold = best[count - 1]!.logit;
  }
  return best;
}

/** The memory as decoder inputs for a given batch size, built once per size. */
class MemoryFeeds {
  private readonly byBatch = new Map<number, { hidden: OrtTensor; mask: OrtTensor }>();

  constructor(private readonly memory: FusedMemory) {}

  get(batch: number): { hidden: OrtTensor; mask: OrtTensor } {
    let feeds = this.byBatch.get(batch);
    if (!feeds) {
      const { states, length, dModel } = this.memory;
      let data = states;
      if (batch > 1) {
        data = new Float32Array(batch * states.length);
        for (let b = 0; b < batch; b++) data.set(states, b * states.length);
      }
      feeds = { hidden: float32Tensor(data, [batch, length, dModel]), mask: onesInt64Tensor([batch, length]) };
      this.byBatch.set(batch, feeds);
    }
    return feeds;
  }
}

/** Produces one decoder step for a set of hypotheses (rows); search code does not know whether a cache is used. */
export interface StepRunner {
  /**
   * @param prefixes `prefixes[row]` is the row's full decoder input so far, starting with the decoder start token
   * @param topK how many of the largest logits per row the step should list (see DecoderStep.topCandidates)
   */
  step(prefixes: ReadonlyArray<readonly number[]>, topK: number): Promise<DecoderStep>;
  /** Row i of the next step continues row origins[i] of the last step (beam search reordering). */
  reorder(origins: readonly number[]): void;
}

export interface CachedStepRunnerOptions {
  /** Fetch more than decoding needs, e.g. 'logits' or 'all' for checks. */
  fetch?: 'logits' | 'all';
  /**
   * Keep the memory and the cross-attention cache at one row however many beams run, relying on the graph to
   * broadcast them (see supportsMemoryBroadcast). Saves copying them once per beam, and the graph copying them per step.
   */
  broadcastMemory?: boolean;
  /**
   * Compute the cross-attention cache one memory span (one FiD passage) at a time instead of over the whole memory, and
   * run the first step on the with-past branch with it. In float arithmetic both are the same; an int8 decoder
   * quantizes the keys/values projection with one scale per run, so only this keeps a passage's keys/values
   * independent of the other passages (reader.crossCache).
   */
  crossCachePerSpan?: boolean;
  }

/**
 * The normal path: the first run (use_cache_branch=false) computes cross-attention keys/values once; later runs feed
 * only the newest token plus the cache (use_cache_branch=true), and the self-attention cache grows by one per step.
 */
export class CachedStepRunner implements StepRunner {
  private readonly memoryFeeds: MemoryFeeds;
  private decoderPast: OrtFeeds | null = null;
  private encoderPast: OrtFeeds | null = null;
  private rows = 0;
  private encoderPastRows = 0;
  /** Cache reordering the graph applies on the next step (when it reorders the cache itself). */
  private pendingOrigins: readonly number[] | null = null;
  private readonly cacheFlag = boolTensor(true);
  private readonly broadcast: boolean;
  private readonly fetch: 'logits' | 'all' | undefined;
  private readonly perSpan: boolean;
  private readonly memory: FusedMemory;

  constructor(
    private readonly decoder: MergedDecoder,
    memory: FusedMemory,
    private readonly clock: OnnxClock,
    opts: CachedStepRunnerOptions = {},
  ) {
    this.memoryFeeds = new MemoryFeeds(memory);
    this.broadcast = opts.broadcastMemory ?? false;
    this.fetch = opts.fetch;
    this.perSpan = (opts.crossCachePerSpan ?? false) && memory.spans.filter((s) => s.end > s.start).length > 1;
    this.memory = memory;
    }

    /**
    * The cross-attention cache [1, heads, memoryLength, d_kv] per layer, each span's keys/values from a no-past run over
    * that span alone (positions outside every span, if any, come from a run over them alone too).
    */
    /** The cross-attention cache fed to every step after the first (null before the first step). */
    get crossAttentionCache(): Readonly<OrtFeeds> | null {
      return this.encoderPast;
    }

    private async crossCacheBySpan(startToken: number): Promise<OrtFeeds> {
    const { states, length, dModel, spans } = this.memory;
    const pieces = spans.filter((s) => s.end > s.start).sort((a, b) => a.start - b.start);
    const cover: Array<{ start: number; end: number }> = [];
    let at = 0;
    for (const s of pieces) {
      if (s.start > at) cover.push({ start: at, end: s.start });
      cover.push(s);
      at = Math.max(at, s.end);
    }
    if (at < length) cover.push({ start: at, end: length });
    const { heads, dKv } = this.decoder;
    const merged: OrtFeeds = {};
    const buffers = new Map<string, Float32Array>();
    for (const span of cover) {
      const n = span.end - span.start;
      const feeds: OrtFeeds = {
        encoder_attention_mask: onesInt64Tensor([1, n]),
        encoder_hidden_states: float32Tensor(states.slice(span.start * dModel, span.end * dModel), [1, n, dModel]),
        input_ids: int64Tensor([startToken], [1, 1]),
        use_cache_branch: boolTensor(false),
        ...this.decoder.emptyPast(1),
        ...this.decoder.topKFeed(1),
      };
      const step = await this.decoder.run(feeds, 'first-step', this.clock);
      this.clock.crossCacheRuns++;
      for (let i = 0; i < this.decoder.layers; i++) {
        for (const kv of ['key', 'value']) {
          const name = `past_key_values.${i}.encoder.${kv}`;
          let buffer = buffers.get(name);
          if (!buffer) buffers.set(name, (buffer = new Float32Array(heads * length * dKv)));
          const part = float32Data(step.outputs[`present.${i}.encoder.${kv}`], `present.${i}.encoder.${kv}`);
          for (let h = 0; h < heads; h++) buffer.set(part.subarray(h * n * dKv, (h + 1) * n * dKv), (h * length + span.start) * dKv);
        }
      }
    }
    for (const [name, buffer] of buffers) merged[name] = float32Tensor(buffer, [1, heads, length, dKv]);
    return merged;
    }

  async step(prefixes: ReadonlyArray<readonly number[]>, topK: number): Promise<DecoderStep> {
    const batch = prefixes.length;
    const first = this.decoderPast === null;
    if (!first && batch !== this.rows) throw new Error(`expected ${this.rows} rows after reorder, got ${batch}`);
    const { hidden, mask } = this.memoryFeeds.get(first || !this.broadcast ? batch : this.encoderPastRows);
    let past: OrtFeeds;
    if (first && this.perSpan) {
      // The first step runs on the with-past branch: an empty self-attention cache and the per-span cross cache.
      const cross = await this.crossCacheBySpan(prefixes[0]![0]!);
      this.encoderPast = batch === 1 ? cross : mapFeeds(cross, (t) => gatherRows(t, new Array<number>(batch).fill(0)));
      this.encoderPastRows = batch;
      past = { ...this.decoder.emptyPast(batch), ...this.encoderPast };
    } else {
      past = first ? this.decoder.emptyPast(batch) : { ...this.decoderPast, ...this.encoderPast };
    }
    const viaCache = !first || this.perSpan;
    const feeds: OrtFeeds = {
      encoder_attention_mask: mask,
      encoder_hidden_states: hidden,
      input_ids: viaCache && !first ? lastTokenIds(prefixes) : prefixIds(prefixes),
      use_cache_branch: viaCache ? this.cacheFlag : boolTensor(false),
      ...past,
      ...this.decoder.topKFeed(topK),
    };
    if (!first && this.decoder.reordersCache) {
      feeds[BEAM_ORIGINS_INPUT] = this.pendingOrigins ? int64Tensor(this.pendingOrigins, [batch]) : identityOrigins(batch);
      this.pendingOrigins = null;
    }
    const step = await this.decoder.run(feeds, this.fetch ?? (first ? 'first-step' : 'step'), this.clock);
    this.decoderPast = this.presentsAsPast(step, 'decoder');
    if (first && !this.perSpan) {
      this.encoderPast = this.presentsAsPast(step, 'encoder');
      this.encoderPastRows = batch;
    }
    this.rows = batch;
    return step;
  }

  private presentsAsPast(step: DecoderStep, part: 'decoder' | 'encoder'): OrtFeeds {
    const past: OrtFeeds = {};
    for (let i = 0; i < this.decoder.layers; i++) {
      for (const kv of ['key', 'value']) {
        const present = step.outputs[`present.${i}.${part}.${kv}`];
        if (!present) throw new Error(`decoder output present.${i}.${part}.${kv} is missing`);
        past[`past_key_values.${i}.${part}.${kv}`] = present;
      }
    }
    return past;
  }

  reorder(origins: readonly number[]): void {
    if (!this.decoderPast || !this.encoderPast) throw new Error('reorder before the first step');
    const identity = origins.length === this.rows && origins.every((o, i) => o === i);
    if (!identity && this.decoder.reordersCache) {
      this.pendingOrigins = origins;
    } else if (!identity) {
      for (const name of Object.keys(this.decoderPast)) {
        this.decoderPast[name] = gatherRows(this.decoderPast[name]!, origins);
      }
    }
    // Every row attends to the same memory, so all rows of the cross-attention cache are equal: reordering them is a
    // no-op, and only a change of row count needs work (none when the graph broadcasts one row).
    if (!this.broadcast && origins.length !== this.encoderPastRows) {
      const tile = new Array<number>(origins.length).fill(0);
      for (const name of Object.keys(this.encoderPast)) {
        this.encoderPast[name] = gatherRows(this.encoderPast[name]!, tile);
      }
      this.encoderPastRows = origins.length;
    }
    this.rows = origins.length;
  }
}

/** Recomputes every prefix from scratch each step (use_cache_branch=false); the reference the cache is tested against. */
export class UncachedStepRunner implements StepRunner {
  private readonly memoryFeeds: MemoryFeeds;

  constructor(
    private readonly decoder: MergedDecoder,
    memory: FusedMemory,
    private readonly clock: OnnxClock,
    private readonly fetch: 'step' | 'logits' | 'all' = 'step',
  ) {
    this.memoryFeeds = new MemoryFeeds(memory);
  }

  step(prefixes: ReadonlyArray<readonly number[]>, topK = 1): Promise<DecoderStep> {
    const batch = prefixes.length;
    const { hidden, mask } = this.memoryFeeds.get(batch);
    const feeds: OrtFeeds = {
      encoder_attention_mask: mask,
      encoder_hidden_states: hidden,
      input_ids: prefixIds(prefixes),
      use_cache_branch: boolTensor(false),
      ...this.decoder.emptyPast(batch),
      ...this.decoder.topKFeed(topK),
    };
    return this.decoder.run(feeds, this.fetch, this.clock);
  }

  reorder(): void {
    // The prefixes passed to step() carry all the state.
  }
}

function identityOrigins(rows: number): OrtTensor {
  return int64Tensor(
    Array.from({ length: rows }, (_, i) => i),
    [rows],
  );
}

function prefixIds(prefixes: ReadonlyArray<readonly number[]>): OrtTensor {
  const length = prefixes[0]?.length ?? 0;
  if (prefixes.some((p) => p.length !== length)) throw new Error('all rows must have the same length');
  return int64Tensor(prefixes.flat(), [prefixes.length, length]);
}

function lastTokenIds(prefixes: ReadonlyArray<readonly number[]>): OrtTensor {
  return int64Tensor(
    prefixes.map((p) => p[p.length - 1]!),
    [prefixes.length, 1],
  );
}

function mapFeeds(feeds: OrtFeeds, f: (t: OrtTensor) => OrtTensor): OrtFeeds {
  return Object.fromEntries(Object.entries(feeds).map(([name, t]) => [name, f(t)]));
}

/** Builds a tensor whose row i is row origins[i] of `tensor` (first dimension). */
function gatherRows(tensor: OrtTensor, origins: readonly number[]): OrtTensor {
  const src = tensor.data as Float32Array;
  const rows = tensor.dims[0]!;
  const rowSize = rows === 0 ? 0 : src.length / rows;
  const dst = new Float32Array(origins.length * rowSize);
  for (let i = 0; i < origins.length; i++) dst.set(src.subarray(origins[i]! * rowSize, (origins[i]! + 1) * rowSize), i * rowSize);
  return new ort.Tensor('float32', dst, [origins.length, ...tensor.dims.slice(1)]);
}

/**
 * Whether the with-past graph accepts a one-row memory and cross-attention cache for several decoder rows
 * (numpy broadcasting in its MatMul/Add nodes, as torch-exported T5 attention has). Checked once at load by decoding two
 * different rows both ways on a small synthetic memory; any error or difference means no.
 */
export async function supportsMemoryBroadcast(decoder: MergedDecoder, dModel: number): Promise<boolean> {
  const length = 3;
  const memory: FusedMemory = {
    states: Float32Array.from({ length: length * dModel }, (_, i) => Math.sin(i)),
    length,
    dModel,
    tokenIds: new Int32Array(length),
    spans: [],
  };
  const rows = [
    [0, 5],
    [0, 7],
  ];
  const run = async (broadcastMemory: boolean) => {
    const runner = new CachedStepRunner(decoder, memory, new OnnxClock(), { broadcastMemory, fetch: 'logits' });
    await runner.step([[0]], 1);
    runner.reorder([0, 0]);
    return (await runner.step(rows, 1)).logits!.slice();
  };
  try {
    const [tiled, broadcast] = [await run(false), await run(true)];
    return tiled.length === broadcast.length && tiled.every((v, i) => Math.abs(v - broadcast[i]!) <= 1e-4);
  } catch {
    return false;
  }
}

/**
 * Teacher-forced log-probability of each of `tokens` given the memory: one no-past run over
 * [start, tokens[0..n-2]]. Used to re-score answers (leave-one-out attribution, tests).
 */
export async function teacherForcedLogProbs(
  decoder: MergedDecoder,
  memory: FusedMemory,
  decoderStartTokenId: number,
  tokens: readonly number[],
  clock: OnnxClock,
): Promise<Float64Array> {
  const result = new Float64Array(tokens.length);
  if (tokens.length === 0) return result;
  const runner = new UncachedStepRunner(decoder, memory, clock, 'logits');
  const step = await runner.step([[decoderStartTokenId, ...tokens.slice(0, -1)]]);
  for (let t = 0; t < tokens.length; t++) result[t] = step.logitsAt(0, t)[tokens[t]!]! - step.logSumExpAt(0, t);
  return result;
}

export function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  return max + Math.log(sum);
}
