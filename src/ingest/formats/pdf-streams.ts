import { constants, createInflate, inflateSync } from 'node:zlib';
import { FileLimitError } from './types.js';

/**
 * The compressed streams of a PDF, measured before pdf.js sees the file. pdf.js inflates a FlateDecode stream whole
 * into memory when it reads it (content streams, fonts, object streams), so a stream of spaces compressed a
 * thousandfold is a bomb as much as a DOCX is. Every object is found by its `N G obj` header and its dictionary read
 * with a small PDF lexer (strings, comments, dictionaries, arrays, references); the FlateDecode streams text
 * extraction may read — every one but images, which it never decodes — are inflated with a cap: a declared /DL is
 * checked first, then the bytes zlib actually produces are counted. Where the file is ambiguous (an object defined
 * twice, a /Length that disagrees with `endstream`), the reading that counts more is taken.
 */

type PdfValue = number | string | PdfName | PdfRef | PdfValue[] | PdfDict | null;

class PdfName {
  constructor(readonly name: string) {}
}

class PdfRef {
  constructor(readonly num: number) {}
}

type PdfDict = Map<string, PdfValue>;

const isWhite = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 || c === 0x0c || c === 0x00;
const isDelimiter = (c: number) =>
  c === 0x28 || c === 0x29 || c === 0x3c || c === 0x3e || c === 0x5b || c === 0x5d || c === 0x7b || c === 0x7d || c === 0x2f || c === 0x25;
const FLATE = new Set(['FlateDecode', 'Fl']);
const ENDSTREAM = Buffer.from('endstream', 'latin1');
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)$/;
/** Nesting beyond this is no PDF object anyone writes; the lexer treats it as junk rather than recurse on. */
const MAX_NESTING = 64;

/** A cursor over the file's bytes that reads PDF tokens and objects; malformed input ends a value, never throws. */
class Lexer {
  pos = 0;

  constructor(readonly bytes: Uint8Array) {}

  private skipSpaceAndComments(): void {
    const b = this.bytes;
    while (this.pos < b.length) {
      const c = b[this.pos]!;
      if (isWhite(c)) this.pos++;
      else if (c === 0x25) {
        while (this.pos < b.length && b[this.pos] !== 0x0a && b[this.pos] !== 0x0d) this.pos++;
      } else return;
    }
  }

  private skipLiteralString(): void {
    const b = this.bytes;
    let depth = 1;
    this.pos++;
    while (this.pos < b.length && depth > 0) {
      const c = b[this.pos++]!;
      if (c === 0x5c) this.pos++;
      else if (c === 0x28) depth++;
      else if (c === 0x29) depth--;
    }
  }

  private regularRun(): string {
    const b = this.bytes;
    const start = this.pos;
    let text = '';
    while (this.pos < b.length && !isWhite(b[this.pos]!) && !isDelimiter(b[this.pos]!)) this.pos++;
    // Tokens are short: building them a character at a time is cheaper than a decoder call each.
    if (this.pos - start > 64) return Buffer.from(b.buffer, b.byteOffset + start, this.pos - start).toString('latin1');
    for (let i = start; i < this.pos; i++) text += String.fromCharCode(b[i]!);
    return text;
  }

  /** The next token: '<<', '>>', '[', ']', a name, a number, a keyword; strings come back as ''. Undefined at the end. */
  token(): PdfName | number | string | undefined {
    this.skipSpaceAndComments();
    const b = this.bytes;
    if (this.pos >= b.length) return undefined;
    const c = b[this.pos]!;
    if (c === 0x28) {
      this.skipLiteralString();
      return '()';
    }
    if (c === 0x3c) {
      if (b[this.pos + 1] === 0x3c) {
        this.pos += 2;
        return '<<';
      }
      while (this.pos < b.length && b[this.pos] !== 0x3e) this.pos++;
      this.pos++;
      return '<>';
    }
    if (c === 0x3e) {
      this.pos += b[this.pos + 1] === 0x3e ? 2 : 1;
      return '>>';
    }
    if (c === 0x5b || c === 0x5d || c === 0x7b || c === 0x7d || c === 0x29) {
      this.pos++;
      return String.fromCharCode(c);
    }
    if (c === 0x2f) {
      this.pos++;
      return new PdfName(this.regularRun());
    }
    const word = this.regularRun();
    if (word === '') {
      this.pos++;
      return '';
    }
    return NUMBER.test(word) ? Number(word) : word;
  }

  /** A value whose first token is `first`; `N G R` becomes a reference. */
  value(first: PdfName | number | string, depth = 0): PdfValue {
    if (first instanceof PdfName) return first;
    if (depth > MAX_NESTING) return null;
    if (first === '<<') return this.dict(depth + 1);
    if (first === '[') {
      const items: PdfValue[] = [];
      for (let t = this.token(); t !== undefined && t !== ']' && t !== '>>'; t = this.token()) {
        const [num, gen] = [items[items.length - 2], items[items.length - 1]];
        if (t === 'R' && typeof num === 'number' && typeof gen === 'number') items.splice(-2, 2, new PdfRef(num));
        else items.push(this.value(t, depth + 1));
      }
      return items;
    }
    return typeof first === 'number' ? first : first === '()' || first === '<>' ? '' : null;
  }

  /** The rest of a dictionary after its '<<'. */
  dict(depth = 0): PdfDict {
    const dict: PdfDict = new Map();
    for (;;) {
      const key = this.token();
      if (key === undefined || key === '>>') return dict;
      if (!(key instanceof PdfName)) continue;
      const first = this.token();
      if (first === undefined) return dict;
      if (first === '>>') {
        dict.set(key.name, null);
        return dict;
      }
      let value = this.value(first, depth);
      if (typeof value === 'number') value = this.maybeRef(value);
      dict.set(key.name, value);
    }
  }

  /** After a number: `G R` makes it a reference; otherwise the cursor goes back. */
  private maybeRef(num: number): PdfValue {
    const save = this.pos;
    const gen = this.token();
    if (typeof gen === 'number' && this.token() === 'R') return new PdfRef(num);
    this.pos = save;
    return num;
  }

  /** Where the line after `stream` starts (CRLF, LF or a lone CR ends it, as pdf.js reads it). */
  skipToNextLine(): void {
    const b = this.bytes;
    while (this.pos < b.length) {
      const c = b[this.pos++]!;
      if (c === 0x0a) return;
      if (c === 0x0d) {
        if (b[this.pos] === 0x0a) this.pos++;
        return;
      }
    }
  }
}

/** `N G obj`: where every indirect object starts, wherever pdf.js's cross-reference table says it is. */
const OBJECT_HEADER = /(\d+)\s+\d+\s+obj\b/g;

/**
 * Indirect objects by number, every definition of each (an incremental update redefines objects, and bytes inside a
 * stream may look like a definition): which one pdf.js uses is its cross-reference table's business, so a question
 * about an object is answered for all of them.
 */
class ObjectIndex {
  readonly offsets = new Map<number, number[]>();

  constructor(
    private readonly bytes: Uint8Array,
    text: string,
  ) {
    for (const m of text.matchAll(OBJECT_HEADER)) {
      const num = Number(m[1]);
      const at = m.index + m[0].length;
      const known = this.offsets.get(num);
      if (known) known.push(at);
      else this.offsets.set(num, [at]);
    }
  }

  /** What `value` may be: itself, or for a reference every definition's value (references followed a few hops). */
  candidates(value: PdfValue, hops = 0): PdfValue[] {
    if (!(value instanceof PdfRef)) return [value];
    if (hops > 4) return [];
    return (this.offsets.get(value.num) ?? []).flatMap((at) => {
      const lexer = new Lexer(this.bytes);
      lexer.pos = at;
      const first = lexer.token();
      return first === undefined ? [] : this.candidates(lexer.value(first), hops + 1);
    });
  }

  numbers(value: PdfValue): number[] {
    return this.candidates(value).filter((v): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0);
  }
}

function indexOf(bytes: Uint8Array, needle: Uint8Array, from: number): number {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(needle, from);
}

/**
 * Where a stream's data may end. pdf.js takes /Length when `endstream` follows it and else the first `endstream`;
 * the later of the two (over every definition of an indirect /Length) is measured, since inflating a little past a
 * stream's end counts nothing more, while measuring less than pdf.js reads would miss a bomb.
 */
function streamEnd(bytes: Uint8Array, start: number, lengths: number[]): number {
  const found = indexOf(bytes, ENDSTREAM, start);
  let end = found === -1 ? bytes.length : found;
  for (const length of lengths) end = Math.max(end, Math.min(bytes.length, start + Math.floor(length)));
  return end;
}

const isFlate = (v: PdfValue) => v instanceof PdfName && FLATE.has(v.name);

/** FlateDecode filters at the head of the filter chain: the most any definition of /Filter (and its entries) gives. */
function flateLayers(filter: PdfValue, objects: ObjectIndex): number {
  let most = 0;
  for (const candidate of objects.candidates(filter)) {
    if (isFlate(candidate)) most = Math.max(most, 1);
    if (!Array.isArray(candidate)) continue;
    let layers = 0;
    while (layers < candidate.length && objects.candidates(candidate[layers]!).some(isFlate)) layers++;
    most = Math.max(most, layers);
  }
  return most;
}

/** Image XObjects are never decoded for text; a stream is taken for one only if every definition of /Subtype says so. */
function isImage(subtype: PdfValue, objects: ObjectIndex): boolean {
  const candidates = objects.candidates(subtype);
  return candidates.length > 0 && candidates.every((v) => v instanceof PdfName && v.name === 'Image');
}

/** Streams up to this size once inflated are inflated in one call; larger ones are counted as they stream. */
const ONE_CALL_BYTES = 4 * 1024 * 1024;

/**
 * Bytes a chain of `layers` zlib layers makes of `data` (every layer counted), inflated as a stream and stopped
 * past `budget`, so a bomb costs no more memory than zlib's buffers. A damaged layer counts what came before its
 * first bad block, which is what pdf.js keeps of it, and ends the chain there.
 */
function inflatedAsStream(data: Uint8Array, layers: number, budget: number): Promise<number> {
  return new Promise((resolve) => {
    const stages = Array.from({ length: layers }, () => createInflate({ finishFlush: constants.Z_SYNC_FLUSH }));
    let size = 0;
    let settled = false;
    const settle = () => {
      if (settled) return;
      settled = true;
      for (const stage of stages) stage.destroy();
      resolve(size);
    };
    stages.forEach((stage, i) => {
      const next = stages[i + 1];
      stage.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > budget) settle();
      });
      if (next) stage.pipe(next);
      // Piping ends the next stage when this one ends, but not when it fails.
      stage.on('error', () => (next ? next.end() : settle()));
      if (!next) stage.on('end', settle);
    });
    stages[0]!.end(data);
  });
}

/** Bytes a chain of `layers` zlib layers makes of `data`, at most a little past `budget`. */
async function inflatedSize(data: Uint8Array, layers: number, budget: number): Promise<number> {
  let layer = data;
  let size = 0;
  for (let i = 0; i < layers; i++) {
    try {
      // A truncated stream is read as far as it goes, as pdf.js reads it.
      const out = inflateSync(layer, { maxOutputLength: Math.min(budget - size, ONE_CALL_BYTES) + 1, finishFlush: constants.Z_SYNC_FLUSH });
      size += out.length;
      if (size > budget) return size;
      layer = out;
    } catch {
      // Larger than one call takes (a RangeError), or damaged: counted as a stream from this layer on.
      return size + (await inflatedAsStream(layer, layers - i, budget - size));
    }
  }
  return size;
}

/**
 * Throws FileLimitError when the FlateDecode streams of the PDF that text extraction may read would inflate to more
 * than `maxInflatedBytes` in all. A chain of FlateDecode filters counts every layer (pdf.js keeps each one).
 */
export async function checkPdfStreams(bytes: Uint8Array, maxInflatedBytes: number): Promise<void> {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  const objects = new ObjectIndex(bytes, text);
  const tooLarge = () =>
    new FileLimitError(
      `the PDF's compressed streams inflate to more than ${maxInflatedBytes} bytes (documents.upload.maxPdfInflatedBytes): a decompression bomb or too large to read`,
      413,
    );
  let inflated = 0;
  // Each object is read from its own header, not by walking the file: nothing inside one stream's bytes can make
  // the walk lose step and skip the next object.
  const lexer = new Lexer(bytes);
  for (const starts of objects.offsets.values()) {
    for (const at of starts) {
      lexer.pos = at;
      if (lexer.token() !== '<<') continue;
      const dict = lexer.dict();
      if (lexer.token() !== 'stream') continue;
      lexer.skipToNextLine();
      const layers = flateLayers(dict.get('Filter') ?? null, objects);
      if (layers === 0 || isImage(dict.get('Subtype') ?? null, objects)) continue;
      const declared = Math.max(0, ...objects.numbers(dict.get('DL') ?? null));
      if (inflated + declared > maxInflatedBytes) throw tooLarge();
      const start = lexer.pos;
      const end = streamEnd(bytes, start, objects.numbers(dict.get('Length') ?? null));
      inflated += await inflatedSize(bytes.subarray(start, end), layers, maxInflatedBytes - inflated);
      if (inflated > maxInflatedBytes) throw tooLarge();
    }
  }
}
