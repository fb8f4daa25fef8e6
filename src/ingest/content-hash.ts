import { createHash } from 'node:crypto';
import { TimeSlice } from '../common/time-slice.js';
import type { SourceDocument } from './types.js';

type Hashed = Pick<SourceDocument, 'title' | 'text' | 'metadata' | 'layout'>;

/** Characters of text escaped and hashed per step: a few milliseconds of work. */
const TEXT_PIECE_CHARS = 1 << 17;

/** JSON with object keys sorted, so metadata that differs only in key order hashes the same. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** JSON.stringify(text), produced piece by piece so a multi-megabyte text is never escaped in one go. */
function* jsonStringPieces(text: string): Generator<string> {
  yield '"';
  for (let start = 0; start < text.length;) {
    let end = Math.min(text.length, start + TEXT_PIECE_CHARS);
    // Never between the halves of a surrogate pair: JSON.stringify escapes a lone half, so the pieces would differ.
    const last = text.charCodeAt(end - 1);
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--;
    yield JSON.stringify(text.slice(start, end)).slice(1, -1);
    start = end;
  }
  yield '"';
}

/**
 * canonicalJson(value), with arrays and objects down to `depth` levels produced member by member: a layout holds a
 * span per page and per heading (tens of thousands for a long document), and one canonicalJson of all of them held
 * the event loop for 150 ms.
 */
function* canonicalJsonPieces(value: unknown, depth: number): Generator<string> {
  if (depth === 0 || value === null || typeof value !== 'object') {
    yield canonicalJson(value);
    return;
  }
  if (Array.isArray(value)) {
    yield '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) yield ',';
      yield* canonicalJsonPieces(value[i], depth - 1);
    }
    yield ']';
    return;
  }
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  yield '{';
  for (let i = 0; i < entries.length; i++) {
    const [k, v] = entries[i]!;
    yield `${i > 0 ? ',' : ''}${JSON.stringify(k)}:`;
    yield* canonicalJsonPieces(v, depth - 1);
  }
  yield '}';
}

/** Levels of a layout produced piece by piece: the layout, its span lists, then one span at a time. */
const LAYOUT_PIECE_DEPTH = 2;

/** The canonical JSON of [title, text, metadata(, layout)], in pieces whose concatenation is exactly that JSON. */
function* canonicalPieces(doc: Hashed): Generator<string> {
  yield `[${JSON.stringify(doc.title)},`;
  yield* jsonStringPieces(doc.text);
  yield `,${canonicalJson(doc.metadata)}`;
  // Layout (pages, headings) counts when present; documents without one hash as they always did.
  if (doc.layout) {
    yield ',';
    yield* canonicalJsonPieces(doc.layout, LAYOUT_PIECE_DEPTH);
  }
  yield ']';
}

/**
 * SHA-256 of the document's canonical JSON, the change detector of ingest. Returns to the event loop every few
 * milliseconds, so a server hashing a multi-megabyte document keeps answering.
 */
export async function contentHash(doc: Hashed): Promise<string> {
  const hash = createHash('sha256');
  const slice = new TimeSlice();
  // Layout pieces are tiny: they are gathered into pieces of about the text's size before hashing.
  let pending = '';
  for (const piece of canonicalPieces(doc)) {
    pending += piece;
    if (pending.length < TEXT_PIECE_CHARS) continue;
    // Hashing a Buffer is several times faster than handing the hash a long string.
    hash.update(Buffer.from(pending, 'utf8'));
    pending = '';
    if (slice.due) await slice.next();
  }
  hash.update(Buffer.from(pending, 'utf8'));
  return hash.digest('hex');
}
