/**
 * Step runners: what the decoding loops call to get one decoder step for a set of hypotheses (rows). CachedStepRunner
 * keeps the decoder's self- and cross-attention caches between steps (and reorders them by beam origin);
 * UncachedStepRunner recomputes every prefix from scratch, the reference the cache is tested against.
 */
import ort from 'onnxruntime-node';
import { BEAM_ORIGINS_INPUT } from './attention-patch.js';
import { identityOrigins, type DecoderStep, type MergedDecoder } from './decoder-session.js';
import type { FusedMemory } from './fusion.js';
import {
  boolTensor,
  float32Data,
  float32Tensor,
  int64Tensor,
  onesInt64Tensor,
  OnnxClock,
  type OrtFeeds,
  type OrtTensor,
} from './onnx-run.js';

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

/** Produces one decoder step for a set of hypotheses (rows); the decoding loops do not know whether a cache is used. */
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

  /** The cross-attention cache fed to every step after the first (null before the first step). */
  get crossAttentionCache(): Readonly<OrtFeeds> | null {
    return this.encoderPast;
  }

  /**
   * The cross-attention cache [1, heads, memoryLength, d_kv] per layer, each span's keys/values from a no-past run over
   * that span alone (positions outside every span, if any, come from a run over them alone too).
   */
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
