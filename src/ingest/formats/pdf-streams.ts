import { constants, createInflate, inflateSync } from 'node:zlib';
import { FileLimitError } from './types.js';

/**
 * The compressed streams of a PDF, measured before pdf.js sees the file. pdf.js inflates a FlateDecode stream whole
 * into memory when it reads it (content streams, fonts, object streams), so a stream of spaces compressed a
 * thousandfold is a bomb as much as a DOCX is. The file is walked with a small PDF lexer (strings, comments,
 * dictionaries, arrays), each stream found where pdf.js finds it (its /Length when that lands on `endstream`, else
 * the next `endstream`), and the FlateDecode streams text extraction may read — every one but images, which it
 * never decodes — are inflated with a cap: the declared /DL first, then the bytes zlib actually produces.
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
const isDelimiter = (c: number) => c === 0x28 || c === 0x29 || c === 0x3c || c === 0x3e || c === 0x5b || c === 0x5d || c === 0x7b || c === 0x7d || c === 0x2f || c === 0x25;
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

/** Indirect objects by number, found on first use by a scan for `N G obj` (the last definition wins, as updates do). */
class ObjectIndex {
  private offsets: Map<number, number> | undefined;

  constructor(private readonly bytes: Uint8Array) {}

  resolve(value: PdfValue, hops = 0): PdfValue {
    if (!(value instanceof PdfRef) || hops > 8) return value;
    this.offsets ??= this.scan();
    const at = this.offsets.get(value.num);
    if (at === undefined) return null;
    const lexer = new Lexer(this.bytes);
    lexer.pos = at;
    const first = lexer.token();
    if (first === undefined) return null;
    return this.resolve(lexer.value(first), hops + 1);
  }

  private scan(): Map<number, number> {
    const text = Buffer.from(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength).toString('latin1');
    const offsets = new Map<number, number>();
    for (const m of text.matchAll(/(\d+)\s+\d+\s+obj\b/g)) offsets.set(Number(m[1]), m.index + m[0].length);
    return offsets;
  }
}

function indexOf(bytes: Uint8Array, needle: Uint8Array, from: number): number {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(needle, from);
}

/** Where a stream's data ends: at /Length when `endstream` follows it, else just before the next `endstream`. */
function streamEnd(bytes: Uint8Array, start: number, length: PdfValue): number {
  if (typeof length === 'number' && Number.isInteger(length) && length >= 0 && start + length <= bytes.length) {
    let at = start + length;
    while (at < bytes.length && isWhite(bytes[at]!)) at++;
    if (indexOf(bytes, ENDSTREAM, at) === at) return start + length;
  }
  const found = indexOf(bytes, ENDSTREAM, start);
  if (found === -1) return bytes.length;
  let end = found;
  if (end > start && bytes[end - 1] === 0x0a) end--;
  if (end > start && bytes[end - 1] === 0x0d) end--;
  return end;
}

function names(value: PdfValue, objects: ObjectIndex): string[] {
  const resolved = objects.resolve(value);
  if (resolved instanceof PdfName) return [resolved.name];
  if (Array.isArray(resolved)) return resolved.map((v) => objects.resolve(v)).map((v) => (v instanceof PdfName ? v.name : ''));
  return [];
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
  const lexer = new Lexer(bytes);
  const objects = new ObjectIndex(bytes);
  const tooLarge = () =>
    new FileLimitError(
      `the PDF's compressed streams inflate to more than ${maxInflatedBytes} bytes (documents.upload.maxPdfInflatedBytes): a decompression bomb or too large to read`,
      413,
    );
  let inflated = 0;
  let lastDict: PdfDict | undefined;
  for (let t = lexer.token(); t !== undefined; t = lexer.token()) {
    if (t === '<<') {
      lastDict = lexer.dict();
      continue;
    }
    if (t !== 'stream' || !lastDict) {
      lastDict = undefined;
      continue;
    }
    const dict = lastDict;
    lastDict = undefined;
    lexer.skipToNextLine();
    const start = lexer.pos;
    const end = streamEnd(bytes, start, objects.resolve(dict.get('Length') ?? null));
    lexer.pos = end;
    const filters = names(dict.get('Filter') ?? null, objects);
    const subtype = objects.resolve(dict.get('Subtype') ?? null);
    if (!FLATE.has(filters[0] ?? '') || (subtype instanceof PdfName && subtype.name === 'Image')) continue;
    const declared = objects.resolve(dict.get('DL') ?? null);
    if (typeof declared === 'number' && inflated + declared > maxInflatedBytes) throw tooLarge();
    let layers = 0;
    while (layers < filters.length && FLATE.has(filters[layers]!)) layers++;
    inflated += await inflatedSize(bytes.subarray(start, end), layers, maxInflatedBytes - inflated);
    if (inflated > maxInflatedBytes) throw tooLarge();
  }
}
