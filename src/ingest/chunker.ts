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

/** Trims whitespace off a span; returns undefined for an all-whitespace span. */
function trimSpan(text: string, start: number, end: number): [number, number] | undefined {
  while (start < end && /\s/.test(text[start]!)) start++;
  while (end > start && /\s/.test(text[end - 1]!)) end--;
  return start < end ? [start, end] : undefined;
}

function sentenceSpans(text: string): Array<[number, number]> {
  const spans: Array<[number, number]> = [];
  for (const { index, segment } of sentenceSegmenter.segment(text)) {
    const span = trimSpan(text, index, index + segment.length);
    if (span) spans.push(span);
  }
  return spans;
}

function wordSpans(text: string, start: number, end: number): Array<[number, number]> {
  const spans: Array<[number, number]> = [];
  const re = /\S+/g;
  re.lastIndex = start;
  for (let m = re.exec(text); m !== null && m.index < end; m = re.exec(text)) {
    spans.push([m.index, Math.min(m.index + m[0].length, end)]);
  }
  return spans;
}

/** Moves a cut off the low half of a surrogate pair so no passage starts or ends inside a code point. */
function codePointBoundary(text: string, pos: number): number {
  const code = text.charCodeAt(pos);
  return pos > 0 && code >= 0xdc00 && code <= 0xdfff ? pos - 1 : pos;
}

/**
 * A single "word" over the budget (a URL, a run of CJK characters, base64): cut where the token count reaches the
 * budget, found by binary search over character prefixes, so each piece's tokens map back to a character span.
 */
function splitWord(text: string, start: number, end: number, count: CountTokens, budget: number): Unit[] {
  const units: Unit[] = [];
  let pos = start;
  while (pos < end) {
    const rest = count(text.slice(pos, end));
    if (rest <= budget) {
      units.push({ start: pos, end, tokens: rest });
      break;
    }
    let lo = pos + 1;
    let hi = end;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (count(text.slice(pos, mid)) <= budget) lo = mid;
      else hi = mid - 1;
    }
    let cut = codePointBoundary(text, lo);
    if (cut <= pos) cut = Math.min(end, pos + (text.codePointAt(pos)! > 0xffff ? 2 : 1));
    units.push({ start: pos, end: cut, tokens: count(text.slice(pos, cut)) });
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

function units(text: string, count: CountTokens, budget: number): Unit[] {
  const out: Unit[] = [];
  for (const [start, end] of sentenceSpans(text)) {
    const tokens = count(text.slice(start, end));
    if (tokens <= budget) out.push({ start, end, tokens });
    else out.push(...splitSentence(text, start, end, count, budget));
  }
  return out;
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
 * Cuts text into passages of at most `maxTokens` tokens, preferring sentence boundaries: sentences are packed whole;
 * a sentence over the budget is cut between words (or inside a word over the budget). Consecutive passages share up
 * to `overlapTokens` tokens. Every passage is an exact span of the input.
 */
export function chunkText(text: string, count: CountTokens, options: ChunkOptions): TextChunk[] {
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
  }
  if (current.length > 0) passages.push(current);
  return passages.map((p) => {
    const start = p[0]!.start;
    const end = p[p.length - 1]!.end;
    const slice = text.slice(start, end);
    return { start, end, text: slice, tokens: count(slice) };
  });
}

export function passageId(docId: string, chunkNo: number): string {
  return `${docId}#${chunkNo}`;
}

export function chunkDocument(doc: SourceDocument, count: CountTokens, options: ChunkOptions): Passage[] {
  return chunkText(doc.text, count, options).map((chunk, chunkNo) => ({
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
