import { TimeSlice } from '../common/time-slice.js';
import type { Metadata } from '../store/index.js';
import type { ChunkOptions, Passage, SourceDocument } from './types.js';

/** Number of tokens the embedding model's tokenizer makes of a text, special tokens excluded. */
export type CountTokens = (text: string) => number;

/** The slice of a transformers.js tokenizer the chunker needs. */
export interface TokenizerLike {
  encode(text: string, textPair?: string | null, options?: { add_special_tokens?: boolean }): number[];
}

export function tokenCounter(tokenizer: TokenizerLike): CountTokens {
  return (text) => tokenizer.encode(text, null, { add_special_tokens: false }).length;
}

export interface TextChunk {
  start: number;
  end: number;
  text: string;
  tokens: number;
}

/** A contiguous span of the text with its token count; sentences, or word runs of over-long sentences. */
interface Unit {
  start: number;
  end: number;
  tokens: number;
}

const sentenceSegmenter = new Intl.Segmenter('en', { granularity: 'sentence' });

/**
 * Characters handed to Intl.Segmenter at a time. V8's segment iterator costs time proportional to the whole string at
 * every step, so segmenting a long text in one go is quadratic (a 490k-character document took 41 s); over bounded
 * windows it is linear. UAX #29 decides a boundary from the text around it, and only the last boundary of a window can
 * be decided on text the window cut off (SB8's look-ahead stops at the next sentence terminator), so each window's last
 * segment is segmented again as the start of the next window: the result is what segmenting the whole text gives,
 * except inside a sentence longer than a window, which is cut at its last whitespace (such a sentence is split between
 * words anyway whenever it is over the token budget).
 */
const SEGMENT_WINDOW = 2048;

/** Trims whitespace off a span; returns undefined for an all-whitespace span. */
function trimSpan(text: string, start: number, end: number): [number, number] | undefined {
  while (start < end && /\s/.test(text[start]!)) start++;
  while (end > start && /\s/.test(text[end - 1]!)) end--;
  return start < end ? [start, end] : undefined;
}

/** Where to cut a window that holds no sentence boundary: after its last whitespace, else at its end. */
function forcedCut(text: string, start: number, end: number): number {
  for (let i = end - 1; i > start + (end - start) / 2; i--) if (/\s/.test(text[i]!)) return i + 1;
  return codePointBoundary(text, end);
}

/** Sentence spans in text order, trimmed, with no blank ones; linear in the length of the text. */
function* sentenceSpans(text: string): Generator<[number, number]> {
  let pos = 0;
  while (pos < text.length) {
    const windowEnd = Math.min(text.length, pos + SEGMENT_WINDOW);
    const starts: number[] = [];
    for (const { index } of sentenceSegmenter.segment(text.slice(pos, windowEnd))) starts.push(pos + index);
    let next: number;
    if (windowEnd === text.length) next = windowEnd;
    else if (starts.length > 1) next = starts.pop()!;
    else next = forcedCut(text, pos, windowEnd);
    starts.push(next);
    for (let i = 0; i + 1 < starts.length; i++) {
      const span = trimSpan(text, starts[i]!, Math.min(starts[i + 1]!, next));
      if (span) yield span;
    }
    pos = next;
  }
}

/** Word spans inside [start, end); the search never reads past `end` (a word there may run on for megabytes). */
function wordSpans(text: string, start: number, end: number): Array<[number, number]> {
  const spans: Array<[number, number]> = [];
  for (const m of text.slice(start, end).matchAll(/\S+/g)) spans.push([start + m.index, start + m.index + m[0].length]);
  return spans;
}

/** Moves a cut off the low half of a surrogate pair so no passage starts or ends inside a code point. */
function codePointBoundary(text: string, pos: number): number {
  const code = text.charCodeAt(pos);
  return pos > 0 && code >= 0xdc00 && code <= 0xdfff ? pos - 1 : pos;
}

/**
 * A single "word" over the budget (a URL, a run of CJK characters, base64): cut where the token count reaches the
 * budget, so each piece's tokens map back to a character span. The piece grows by doubling from `budget` characters
 * until it is over the budget, then the cut is searched inside the last doubling: each cut costs about
 * (piece length × log of it), never the length of the rest of the word. A piece is never less than one code point, so
 * one whose tokens alone exceed the budget (a Hangul syllable is three jamo after NFD) is a piece over it.
 */
function splitWord(text: string, start: number, end: number, count: CountTokens, budget: number): Unit[] {
  const units: Unit[] = [];
  let pos = start;
  while (pos < end) {
    let fitting = pos;
    let fittingTokens = 0;
    let probe = Math.min(end, pos + budget);
    let probeTokens = count(text.slice(pos, probe));
    while (probeTokens <= budget && probe < end) {
      fitting = probe;
      fittingTokens = probeTokens;
      probe = Math.min(end, pos + 2 * (probe - pos));
      probeTokens = count(text.slice(pos, probe));
    }
    if (probeTokens <= budget) {
      units.push({ start: pos, end, tokens: probeTokens });
      break;
    }
    // The last end known to fit (or pos) and the first known not to; their token counts steer the next guess.
    let lo = fitting;
    let loTokens = fittingTokens;
    let hi = probe;
    let hiTokens = probeTokens;
    for (let step = 0; hi - lo > 1; step++) {
      // Interpolating on token counts finds the cut in a step or two in evenly tokenized text (CJK, base64);
      // every other step bisects, so uneven text still costs only logarithmically many counts.
      const guess = step % 2 === 0 ? lo + Math.floor(((hi - lo) * (budget - loTokens)) / (hiTokens - loTokens)) : (lo + hi) >> 1;
      const mid = Math.min(hi - 1, Math.max(lo + 1, guess));
      const tokens = count(text.slice(pos, mid));
      if (tokens <= budget) {
        lo = mid;
        loTokens = tokens;
      } else {
        hi = mid;
        hiTokens = tokens;
      }
    }
    let cut = codePointBoundary(text, Math.max(lo, pos + 1));
    if (cut <= pos) cut = Math.min(end, pos + (text.codePointAt(pos)! > 0xffff ? 2 : 1));
    units.push({ start: pos, end: cut, tokens: cut === lo ? loTokens : count(text.slice(pos, cut)) });
    pos = cut;
  }
  return units;
}

/** Packs the words of an over-long sentence into runs within the budget. */
function splitSentence(text: string, start: number, end: number, count: CountTokens, budget: number): Unit[] {
  const units: Unit[] = [];
  let run: Unit | undefined;
  for (const [ws, we] of wordSpans(text, start, end)) {
    const tokens = count(text.slice(ws, we));
    if (tokens > budget) {
      if (run) units.push(run);
      run = undefined;
      units.push(...splitWord(text, ws, we, count, budget));
      continue;
    }
    if (run && run.tokens + tokens <= budget) {
      run = { start: run.start, end: we, tokens: run.tokens + tokens };
    } else {
      if (run) units.push(run);
      run = { start: ws, end: we, tokens };
    }
  }
  if (run) units.push(run);
  return units;
}

/** Sentences within the budget, and the word runs of those over it, in text order; each costs bounded work. */
function* units(text: string, count: CountTokens, budget: number): Generator<Unit> {
  for (const [start, end] of sentenceSpans(text)) {
    const tokens = count(text.slice(start, end));
    if (tokens <= budget) yield { start, end, tokens };
    else yield* splitSentence(text, start, end, count, budget);
  }
}

/**
 * The end of a finished passage to repeat at the start of the next: whole trailing units if they fit the overlap
 * budget, otherwise the trailing words of the last unit.
 */
function overlapTail(passage: Unit[], text: string, count: CountTokens, overlap: number): Unit[] {
  if (overlap <= 0) return [];
  const tail: Unit[] = [];
  let tokens = 0;
  for (let i = passage.length - 1; i >= 0; i--) {
    const unit = passage[i]!;
    if (tokens + unit.tokens > overlap) break;
    tail.unshift(unit);
    tokens += unit.tokens;
  }
  if (tail.length > 0) return tail;
  const last = passage[passage.length - 1]!;
  let start = last.end;
  tokens = 0;
  const words = wordSpans(text, last.start, last.end);
  for (let i = words.length - 1; i >= 0; i--) {
    const [ws, we] = words[i]!;
    const wordTokens = count(text.slice(ws, we));
    if (tokens + wordTokens > overlap) break;
    tokens += wordTokens;
    start = ws;
  }
  return tokens > 0 ? [{ start, end: last.end, tokens }] : [];
}

export function validateChunkOptions(options: ChunkOptions): void {
  const { maxTokens, overlapTokens } = options;
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new RangeError(`chunk maxTokens must be a positive integer, got ${maxTokens}`);
  if (!Number.isInteger(overlapTokens) || overlapTokens < 0 || overlapTokens >= maxTokens) {
    throw new RangeError(`chunk overlapTokens must be an integer in [0, maxTokens), got ${overlapTokens} (maxTokens ${maxTokens})`);
  }
}

/**
 * The chunking work as steps of bounded cost: the generator pauses after every unit and every passage, so a caller
 * can run it to the end at once or hand the event loop back between steps.
 */
function* chunkSteps(text: string, count: CountTokens, options: ChunkOptions): Generator<void, TextChunk[]> {
  validateChunkOptions(options);
  const budget = options.maxTokens;
  const passages: Unit[][] = [];
  let current: Unit[] = [];
  let currentTokens = 0;
  for (const unit of units(text, count, budget)) {
    if (current.length > 0 && currentTokens + unit.tokens > budget) {
      passages.push(current);
      current = overlapTail(current, text, count, options.overlapTokens);
      currentTokens = current.reduce((sum, u) => sum + u.tokens, 0);
      // The overlap yields to new content: every passage must add at least one unit.
      while (current.length > 0 && currentTokens + unit.tokens > budget) currentTokens -= current.shift()!.tokens;
    }
    current.push(unit);
    currentTokens += unit.tokens;
    yield;
  }
  if (current.length > 0) passages.push(current);
  const chunks: TextChunk[] = [];
  for (const p of passages) {
    const start = p[0]!.start;
    const end = p[p.length - 1]!.end;
    const slice = text.slice(start, end);
    chunks.push({ start, end, text: slice, tokens: count(slice) });
    yield;
  }
  return chunks;
}

export interface ChunkAsyncOptions {
  /** Stops chunking at the next step with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Cuts text into passages of at most `maxTokens` tokens, preferring sentence boundaries: sentences are packed whole;
 * a sentence over the budget is cut between words (or inside a word over the budget). Consecutive passages share up
 * to `overlapTokens` tokens. Every passage is an exact span of the input. Time is linear in the length of the text.
 */
export function chunkText(text: string, count: CountTokens, options: ChunkOptions): TextChunk[] {
  const steps = chunkSteps(text, count, options);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/** `chunkText` that returns to the event loop every few milliseconds, for servers chunking documents of any size. */
export async function chunkTextAsync(
  text: string,
  count: CountTokens,
  options: ChunkOptions,
  run: ChunkAsyncOptions = {},
): Promise<TextChunk[]> {
  const steps = chunkSteps(text, count, options);
  // One step (a sentence of at most a segmenter window, or one passage) stays well below the slice.
  const slice = new TimeSlice();
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    if (slice.due) {
      await slice.next();
      run.signal?.throwIfAborted();
    }
  }
}

export function passageId(docId: string, chunkNo: number): string {
  return `${docId}#${chunkNo}`;
}

function toPassages(doc: SourceDocument, chunks: TextChunk[]): Passage[] {
  return chunks.map((chunk, chunkNo) => ({
    id: passageId(doc.id, chunkNo),
    docId: doc.id,
    chunkNo,
    title: doc.title,
    text: chunk.text,
    metadata: doc.metadata as Metadata,
    charStart: chunk.start,
    charEnd: chunk.end,
    tokens: chunk.tokens,
  }));
}

export function chunkDocument(doc: SourceDocument, count: CountTokens, options: ChunkOptions): Passage[] {
  return toPassages(doc, chunkText(doc.text, count, options));
}

/** `chunkDocument` that returns to the event loop every few milliseconds (see `chunkTextAsync`). */
export async function chunkDocumentAsync(
  doc: SourceDocument,
  count: CountTokens,
  options: ChunkOptions,
  run: ChunkAsyncOptions = {},
): Promise<Passage[]> {
  return toPassages(doc, await chunkTextAsync(doc.text, count, options, run));
}
