/**
 * Cross-attention attribution as in Izacard & Grave, "Distilling Knowledge from Reader to Retriever" (ICLR 2021): a
 * passage's score is the attention mass the decoder puts on its tokens, averaged over layers, heads and generated
 * tokens.
 */
import type { DecoderStep } from './decoder-session.js';
import type { FusedMemory } from './fusion.js';
import type { TokenAttention } from './types.js';

/** One generated token's cross-attention (mean over layers and heads), linked to the tokens before it on its beam. */
export interface AttentionTraceNode {
  readonly prev: AttentionTraceNode | null;
  /** Mean over layers and heads (computed in the graph); length = memory length; sums to 1 like every head's softmax. */
  readonly row: Float32Array;
}

export class CrossAttentionTracer {
  /** Records the attention of `row`'s newest position; the returned node extends `prev`'s history. */
  record(step: DecoderStep, row: number, prev: AttentionTraceNode | null): AttentionTraceNode {
    // A copy, so the trace does not keep every step's whole output buffer alive.
    return { prev, row: step.lastMeanAttention(row).slice() };
  }
}

/** The rows of a trace in generation order. */
export function traceRows(node: AttentionTraceNode | null): Float32Array[] {
  const rows: Float32Array[] = [];
  for (let n = node; n; n = n.prev) rows.push(n.row);
  return rows.reverse();
}

export interface AttributionDetail {
  /** Passages listed per answer token. */
  topPassages: number;
  /** Memory positions listed per listed passage. */
  topTokens: number;
  /** Input tokens never listed (special tokens such as EOS, which draw attention but say nothing). */
  hiddenTokenIds?: ReadonlySet<number>;
}

export interface Attribution {
  passageScores: number[];
  tokenAttention: TokenAttention[];
}

/** Per-passage attention mass of one row; positions outside every passage span (concat prefix) are ignored. */
export function passageMass(row: Float32Array, memory: FusedMemory): Float64Array {
  const mass = new Float64Array(memory.spans.length);
  for (let p = 0; p < mass.length; p++) {
    const { start, end } = memory.spans[p]!;
    let s = 0;
    for (let i = start; i < end; i++) s += row[i]!;
    mass[p] = s;
  }
  return mass;
}

/**
 * Clamps at 0 and scales to sum 1. Without information (all zero) the result is uniform over the `present` entries
 * (default: all), so passages truncated out of the input still get 0.
 */
export function normalizeScores(values: ArrayLike<number>, present?: readonly boolean[]): number[] {
  let total = 0;
  for (let i = 0; i < values.length; i++) total += Math.max(0, values[i]!);
  if (total > 0) return Array.from(values, (v) => Math.max(0, v) / total);
  const count = present ? present.filter(Boolean).length : values.length;
  return Array.from({ length: values.length }, (_, i) => (count > 0 && (present?.[i] ?? true) ? 1 / count : 0));
}

/** Which passages have at least one token in the memory. */
export function presentPassages(memory: FusedMemory): boolean[] {
  return memory.spans.map((s) => s.end > s.start);
}

/**
 * @param rows cross-attention of each answer token (see CrossAttentionTracer), aligned with `answerTokens`
 * @param tokenText turns a token id into display text
 */
export function attributeFromCrossAttention(
  rows: readonly Float32Array[],
  answerTokens: readonly number[],
  memory: FusedMemory,
  tokenText: (id: number) => string,
  detail: AttributionDetail,
): Attribution {
  const passages = memory.spans.length;
  const total = new Float64Array(passages);
  const present = presentPassages(memory);
  const tokenAttention: TokenAttention[] = rows.map((row, t) => {
    const mass = passageMass(row, memory);
    for (let p = 0; p < passages; p++) total[p]! += mass[p]!;
    const shares = normalizeScores(mass, present);
    return {
      token: tokenText(answerTokens[t]!),
      passages: topIndices(shares, detail.topPassages).map((p) => ({
        passageIndex: p,
        weight: shares[p]!,
        topTokens: topPositions(row, memory, p, detail).map((pos) => ({
          token: tokenText(memory.tokenIds[pos]!),
          weight: row[pos]!,
        })),
      })),
    };
  });
  return { passageScores: passages === 0 ? [] : normalizeScores(total, present), tokenAttention };
}

/** Indices of the k largest values, largest first (ties: lower index first). */
export function topIndices(values: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: values.length }, (_, i) => i)
    .sort((a, b) => values[b]! - values[a]! || a - b)
    .slice(0, k);
}

function topPositions(row: Float32Array, memory: FusedMemory, passage: number, detail: AttributionDetail): number[] {
  const span = memory.spans[passage]!;
  const k = detail.topTokens;
  const best: number[] = [];
  if (k <= 0) return best;
  for (let pos = span.start; pos < span.end; pos++) {
    if (detail.hiddenTokenIds?.has(memory.tokenIds[pos]!)) continue;
    if (best.length === k && row[pos]! <= row[best[k - 1]!]!) continue;
    let at = best.length;
    while (at > 0 && row[best[at - 1]!]! < row[pos]!) at--;
    best.splice(at, 0, pos);
    if (best.length > k) best.pop();
  }
  return best;
}
