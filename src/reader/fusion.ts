/**
 * Fusion-in-decoder inputs (Izacard & Grave, EACL 2021): every passage is encoded on its own together with the
 * question, and the decoder reads the concatenation of all encoder states as one memory. The `concat` baseline
 * instead packs question and all passages into a single encoder input.
 */
import type { PreTrainedTokenizer } from '@xenova/transformers';
import { float32Data, int64Tensor, runEncoderSession, type OnnxClock, type OrtSession } from './onnx-run.js';
import type { ReaderEncoding } from '../models/index.js';
import type { FusionMode, ReaderPassage } from './types.js';

/** Memory positions [start, end) holding a passage's tokens; start === end when none survived truncation. */
export interface PassageSpan {
  start: number;
  end: number;
}

/** What to feed the encoder: the memory is the concatenation of the encoded sequences, in order. */
export interface EncoderPlan {
  sequences: number[][];
  /** One per passage, in memory coordinates. */
  spans: PassageSpan[];
}

/** The decoder's memory: valid (non-padding) encoder states of all sequences, concatenated. */
export interface FusedMemory {
  /** [length, dModel], row-major. */
  states: Float32Array;
  length: number;
  dModel: number;
  /** Input token at each memory position. */
  tokenIds: Int32Array;
  spans: PassageSpan[];
}

export interface EncoderInputLimits {
  maxInputTokens: number;
  eosTokenId: number;
}

const collapseWhitespace = (s: string) => s.replace(/\s+/g, ' ').trim();

export function fidEncoderText(question: string, passage: Pick<ReaderPassage, 'title' | 'text'>): string {
  return `${questionPiece(question)} ${fidPassagePiece(passage)}`;
}

const questionPiece = (question: string) => `question: ${collapseWhitespace(question)}`;

const fidPassagePiece = (passage: Pick<ReaderPassage, 'title' | 'text'>) =>
  `title: ${collapseWhitespace(passage.title)} context: ${collapseWhitespace(passage.text)}`;

function concatPassagePiece(passage: Pick<ReaderPassage, 'title' | 'text'>): string {
  const title = collapseWhitespace(passage.title);
  const text = collapseWhitespace(passage.text);
  return title ? `${title}: ${text}` : text;
}

/** The single `concat` encoder input, as one string (what `buildConcatPlan` tokenises piece by piece). */
export function concatEncoderText(question: string, passages: ReadonlyArray<Pick<ReaderPassage, 'title' | 'text'>>): string {
  return [`${questionPiece(question)} context:`, ...passages.map(concatPassagePiece)].join(' ');
}

/** Tokenises with special tokens; if too long, cuts the body but keeps the closing EOS, as T5 tokenisation does. */
export function tokenizeTruncated(tokenizer: PreTrainedTokenizer, text: string, limits: EncoderInputLimits): number[] {
  const ids = tokenizer.encode(text);
  if (ids.length <= limits.maxInputTokens) return ids;
  const endsWithEos = ids[ids.length - 1] === limits.eosTokenId;
  const body = ids.slice(0, limits.maxInputTokens - (endsWithEos ? 1 : 0));
  return endsWithEos ? [...body, limits.eosTokenId] : body;
}

/**
 * Tokenises pieces of encoder inputs (no special tokens) and remembers the most recent ones, because retrieval
 * returns the same passages again and again while the question changes. Inputs are built by joining pieces at spaces:
 * T5-family tokenisers split on whitespace before the subword model, so this tokenises exactly as the whole string
 * would (the reader tests check it), and an input is its pieces' tokens followed by EOS.
 */
export class PieceTokenizer {
  private readonly cache = new Map<string, readonly number[]>();

  constructor(
    readonly tokenizer: PreTrainedTokenizer,
    private readonly capacity = 4096,
  ) {}

  encode(piece: string): readonly number[] {
    let ids = this.cache.get(piece);
    if (ids) {
      // Re-insert so Map order is least-recently-used first.
      this.cache.delete(piece);
    } else {
      ids = this.tokenizer.encode(piece, null, { add_special_tokens: false });
      if (this.cache.size >= this.capacity) this.cache.delete(this.cache.keys().next().value!);
    }
    this.cache.set(piece, ids);
    return ids;
  }
}

/** Appends `piece` to `ids` while ids has fewer than `limit` tokens. */
function appendUpTo(ids: number[], piece: readonly number[], limit: number): void {
  for (let i = 0; i < piece.length && ids.length < limit; i++) ids.push(piece[i]!);
}

/** One encoder input per passage: `question: {q} title: {title} context: {text}`, truncated, ending with EOS. */
export function buildFidPlan(
  pieces: PieceTokenizer,
  question: string,
  passages: readonly ReaderPassage[],
  limits: EncoderInputLimits,
): EncoderPlan {
  const bodyLimit = limits.maxInputTokens - 1;
  const questionIds = pieces.encode(questionPiece(question));
  const withEos = (...parts: Array<readonly number[]>) => {
    const ids: number[] = [];
    for (const part of parts) appendUpTo(ids, part, bodyLimit);
    ids.push(limits.eosTokenId);
    return ids;
  };
  if (passages.length === 0) return { sequences: [withEos(questionIds)], spans: [] };
  const sequences = passages.map((p) => withEos(questionIds, pieces.encode(fidPassagePiece(p))));
  const spans: PassageSpan[] = [];
  let offset = 0;
  for (const seq of sequences) {
    spans.push({ start: offset, end: offset + seq.length });
    offset += seq.length;
  }
  return { sequences, spans };
}

/** The single `concat` input, with the exact token span of every passage that survived truncation. */
export function buildConcatPlan(
  pieces: PieceTokenizer,
  question: string,
  passages: readonly ReaderPassage[],
  limits: EncoderInputLimits,
): EncoderPlan {
  const bodyLimit = limits.maxInputTokens - 1;
  const ids: number[] = [];
  appendUpTo(ids, pieces.encode(`${questionPiece(question)} context:`), bodyLimit);
  const spans: PassageSpan[] = [];
  for (const passage of passages) {
    const start = ids.length;
    if (start < bodyLimit) appendUpTo(ids, pieces.encode(concatPassagePiece(passage)), bodyLimit);
    spans.push({ start, end: ids.length });
  }
  ids.push(limits.eosTokenId);
  return { sequences: [ids], spans };
}

export function buildEncoderPlan(
  mode: FusionMode,
  pieces: PieceTokenizer,
  question: string,
  passages: readonly ReaderPassage[],
  limits: EncoderInputLimits,
): EncoderPlan {
  return mode === 'fid' ? buildFidPlan(pieces, question, passages, limits) : buildConcatPlan(pieces, question, passages, limits);
}

/**
 * How the sequences go through the encoder. An int8 encoder quantizes each activation tensor with one scale
 * (DynamicQuantizeLinear), so a sequence's states depend on what else is in its run: only `per-passage` (each sequence
 * alone) and a float encoder (`float-encoder`, a model choice: here it runs like `batch`) make them independent of
 * the other passages, the padding and the batch size.
 * - `batch`: padded batches of `batchSize` sequences (all at once by default);
 * - `by-length`: one run per group of equally long sequences (no padding, still shared scales);
 * - `per-passage`: one run per sequence.
 */
export type EncodingStrategy = ReaderEncoding; // one list of strategies, the config's (models/reader-encoding.ts)

export interface EncodeOptions {
  padTokenId: number;
  strategy: EncodingStrategy;
  /** Pad every batch to at least this length (only useful to check that padding does not change the memory). */
  padToLength?: number;
  /** Sequences per encoder run for `batch` and `float-encoder`; default: all of them in one padded batch. */
  batchSize?: number;
}

/** The runs `encodeToMemory` makes: lists of sequence indices. */
export function encoderRuns(lengths: readonly number[], opts: Pick<EncodeOptions, 'strategy' | 'batchSize'>): number[][] {
  const all = lengths.map((_, i) => i);
  if (opts.strategy === 'per-passage') return all.map((i) => [i]);
  if (opts.strategy === 'by-length') {
    const groups = new Map<number, number[]>();
    for (const i of all) groups.set(lengths[i]!, [...(groups.get(lengths[i]!) ?? []), i]);
    return [...groups.values()];
  }
  const size = Math.max(1, opts.batchSize ?? lengths.length);
  const runs: number[][] = [];
  for (let first = 0; first < all.length; first += size) runs.push(all.slice(first, first + size));
  return runs;
}

/** Runs the encoder on the plan's sequences as padded batches and concatenates the valid states into one memory. */
export async function encodeToMemory(encoder: OrtSession, plan: EncoderPlan, opts: EncodeOptions, clock: OnnxClock): Promise<FusedMemory> {
  const lengths = plan.sequences.map((s) => s.length);
  const length = lengths.reduce((a, b) => a + b, 0);
  const offsets: number[] = [];
  lengths.reduce((at, n) => (offsets.push(at), at + n), 0);
  const tokenIds = new Int32Array(length);
  let states: Float32Array | undefined;
  let dModel = 0;
  for (const run of encoderRuns(lengths, opts)) {
    const batch = run.map((i) => plan.sequences[i]!);
    const { hidden, paddedLength, hiddenSize } = await runEncoderBatch(encoder, batch, opts, clock);
    if (!states) {
      dModel = hiddenSize;
      states = new Float32Array(length * dModel);
    }
    run.forEach((i, b) => {
      const seq = plan.sequences[i]!;
      const rowStart = b * paddedLength * dModel;
      states!.set(hidden.subarray(rowStart, rowStart + seq.length * dModel), offsets[i]! * dModel);
      tokenIds.set(seq, offsets[i]!);
    });
  }
  if (!states) throw new Error('nothing to encode');
  return { states, length, dModel, tokenIds, spans: plan.spans };
}

async function runEncoderBatch(
  encoder: OrtSession,
  sequences: number[][],
  opts: EncodeOptions,
  clock: OnnxClock,
): Promise<{ hidden: Float32Array; paddedLength: number; hiddenSize: number }> {
  const paddedLength = Math.max(opts.padToLength ?? 0, ...sequences.map((s) => s.length));
  const ids = new Array<number>(sequences.length * paddedLength).fill(opts.padTokenId);
  const mask = new Array<number>(sequences.length * paddedLength).fill(0);
  sequences.forEach((seq, b) => {
    for (let i = 0; i < seq.length; i++) {
      ids[b * paddedLength + i] = seq[i]!;
      mask[b * paddedLength + i] = 1;
    }
  });
  const dims = [sequences.length, paddedLength];
  const feeds: Record<string, ReturnType<typeof int64Tensor>> = {};
  for (const name of encoder.inputNames) {
    if (name === 'input_ids') feeds[name] = int64Tensor(ids, dims);
    else if (name === 'attention_mask') feeds[name] = int64Tensor(mask, dims);
    else throw new Error(`encoder input "${name}" is not supported`);
  }
  const outName = encoder.outputNames.includes('last_hidden_state') ? 'last_hidden_state' : encoder.outputNames[0]!;
  const out = await runEncoderSession(encoder, feeds, clock);
  const tensor = out[outName];
  const hidden = float32Data(tensor, outName);
  const hiddenSize = tensor!.dims[2];
  if (hiddenSize === undefined) throw new Error(`encoder output "${outName}" has dims [${tensor!.dims.join(', ')}]`);
  return { hidden, paddedLength, hiddenSize };
}

/**
 * The memory FiD would have built without one passage: its span is cut out. Valid because FiD encodes every passage
 * independently, so the other passages' states do not depend on it.
 */
export function memoryWithoutPassage(memory: FusedMemory, passageIndex: number): FusedMemory {
  const cut = memory.spans[passageIndex];
  if (!cut) throw new RangeError(`no passage ${passageIndex}`);
  const removed = cut.end - cut.start;
  const length = memory.length - removed;
  const d = memory.dModel;
  const states = new Float32Array(length * d);
  states.set(memory.states.subarray(0, cut.start * d), 0);
  states.set(memory.states.subarray(cut.end * d), cut.start * d);
  const tokenIds = new Int32Array(length);
  tokenIds.set(memory.tokenIds.subarray(0, cut.start), 0);
  tokenIds.set(memory.tokenIds.subarray(cut.end), cut.start);
  const shift = (pos: number) => (pos >= cut.end ? pos - removed : Math.min(pos, cut.start));
  const spans = memory.spans.map((s, i) =>
    i === passageIndex ? { start: cut.start, end: cut.start } : { start: shift(s.start), end: shift(s.end) },
  );
  return { states, length, dModel: d, tokenIds, spans };
}
