/**
 * The session driver of an Optimum/transformers.js merged T5 decoder (`decoder_model_merged.onnx`): one graph whose `If`
 * node runs the no-past decoder when `use_cache_branch` is false and the with-past decoder when it is true.
 * MergedDecoder checks the session, builds the feeds every run shares and fetches what a run needs; DecoderStep reads
 * one run's outputs. Which rows and cache a run gets is the step runners' business (step-runners.ts).
 */
import { BEAM_ORIGINS_INPUT, TOP_K_INPUT, type DecoderGraphOutputs } from './attention-patch.js';
import {
  float32Data,
  float32Tensor,
  int64Tensor,
  runDecoderSession,
  type OnnxClock,
  type OrtFeeds,
  type OrtSession,
  type OrtTensor,
} from './onnx-run.js';
import type { Candidate } from './types.js';

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

/** The beam-origins feed that keeps every row where it is. */
export function identityOrigins(rows: number): OrtTensor {
  return int64Tensor(
    Array.from({ length: rows }, (_, i) => i),
    [rows],
  );
}

/** log Σ exp(row), computed stably. */
export function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  return max + Math.log(sum);
}
