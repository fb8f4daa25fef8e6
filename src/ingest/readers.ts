import { createReadStream, existsSync } from 'node:fs';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { isPlainObject } from '../common/plain-object.js';
import type { Metadata } from '../store/index.js';
import {
  extensionOf,
  fileFormat,
  fileToDocument,
  mayNeedOcr,
  ParserThread,
  UnreadableFileError,
  type FileFormat,
  type OcrOptions,
  type OcrPageEvent,
  type ParseFile,
} from './formats/index.js';
import type { IngestError, SourceDocument, SourceItem } from './types.js';

/** How files are read: with OCR as configured (`ingest.ocr`), each OCR'd page reported with its file. */
export interface ReadOptions {
  ocr: OcrOptions;
  onOcrPage?: (file: string, event: OcrPageEvent) => void;
}

/**
 * The parser thread of one reading run, for the files that need OCR. Rendering a page for OCR decodes its images
 * synchronously in pdf.js (a 300 dpi scan holds the event loop for 300–500 ms), so a server syncing a folder or
 * ingesting its corpus would stop answering. It starts with the run's first such file (the tesseract worker inside it
 * then serves every later one) and stops when the run ends.
 */
class FileReader {
  private thread: ParserThread | undefined;

  constructor(readonly read: ReadOptions | undefined) {}

  /** How `file` is parsed: on the thread when its format may need OCR and OCR is on, else here. */
  parserFor(file: string, format: FileFormat): ParseFile | undefined {
    const read = this.read;
    if (!read || read.ocr.mode === 'off' || !mayNeedOcr(format)) return undefined;
    const onOcrPage = read.onOcrPage && ((event: OcrPageEvent) => read.onOcrPage!(file, event));
    const thread = (this.thread ??= new ParserThread());
    return (bytes, name, f) => thread.parse(bytes, name, f, undefined, undefined, { ocr: read.ocr, onOcrPage });
  }

  async close(): Promise<void> {
    await this.thread?.close();
  }
}

export const BEIR_CORPUS_FILE = 'corpus.jsonl';

const JSONL_EXTENSIONS = new Set(['.jsonl', '.ndjson']);

export function isSupportedFile(file: string): boolean {
  return fileFormat(file) !== undefined || JSONL_EXTENSIONS.has(path.extname(file).toLowerCase());
}

export function isBeirFolder(dir: string): boolean {
  return existsSync(path.join(dir, BEIR_CORPUS_FILE));
}

const toPosix = (p: string) => p.split(path.sep).join('/');
const errorItem = (error: IngestError): SourceItem => ({ kind: 'error', error });

// ---------------------------------------------------------------------------------------------- single text files

const SNIFF_BYTES = 8192;

/** NUL bytes never occur in text; checking the head is enough to reject images, archives and the like early. */
async function looksBinary(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(SNIFF_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, SNIFF_BYTES, 0);
    return buffer.subarray(0, bytesRead).includes(0);
  } finally {
    await handle.close();
  }
}

/**
 * One document file (text, Markdown, HTML, PDF, DOCX, image); an unreadable one is reported with the reason and
 * skipped. Without `read`, nothing is OCR'd (image-only PDFs and images are refused).
 */
export async function readDocumentFile(file: string, id: string, read?: ReadOptions): Promise<SourceItem> {
  const reader = new FileReader(read);
  try {
    return await readWith(reader, file, id);
  } finally {
    await reader.close();
  }
}

async function readWith(reader: FileReader, file: string, id: string): Promise<SourceItem> {
  const format = fileFormat(file);
  if (!format) return { kind: 'unsupported', path: file, extension: extensionOf(file) };
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    return errorItem({ path: file, message: `cannot read: ${(err as Error).message}` });
  }
  try {
    const document = await fileToDocument(bytes, file, format, id, {}, reader.parserFor(file, format));
    return { kind: 'document', document };
  } catch (err) {
    if (err instanceof UnreadableFileError) return errorItem({ path: file, message: err.message });
    return errorItem({ path: file, message: `cannot read ${format}: ${(err as Error).message}` });
  }
}

// ---------------------------------------------------------------------------------------------- JSONL records

/** One JSONL record → document; `id` or BEIR's `_id` (numbers accepted), `text` required, `title`/`metadata` optional. */
export function recordToDocument(value: unknown): SourceDocument | string {
  if (!isPlainObject(value)) return 'expected a JSON object';
  const rawId = value.id ?? value._id;
  const id = typeof rawId === 'number' && Number.isFinite(rawId) ? String(rawId) : rawId;
  if (typeof id !== 'string' || id.trim() === '') return 'missing or empty "id" (or "_id")';
  if (typeof value.text !== 'string') return '"text" must be a string';
  const title = value.title ?? '';
  if (typeof title !== 'string') return '"title" must be a string';
  const metadata = value.metadata ?? {};
  if (!isPlainObject(metadata)) return '"metadata" must be a JSON object';
  return { id, title, text: value.text, metadata: metadata as Metadata };
}

/** Streams records line by line so corpora larger than memory can be ingested; bad lines are reported and skipped. */
export async function* readJsonl(file: string): AsyncGenerator<SourceItem> {
  try {
    if (await looksBinary(file)) {
      yield errorItem({ path: file, message: 'binary file (contains NUL bytes)' });
      return;
    }
  } catch (err) {
    yield errorItem({ path: file, message: `cannot read: ${(err as Error).message}` });
    return;
  }
  const stream = createReadStream(file, { encoding: 'utf8' });
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let lineNo = 0;
  const seenIds = new Map<string, number>();
  try {
    for await (const rawLine of lines) {
      lineNo++;
      const line = lineNo === 1 ? rawLine.replace(/^\uFEFF/, '') : rawLine;
      if (line.trim() === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (err) {
        yield errorItem({ path: file, line: lineNo, message: `invalid JSON: ${(err as Error).message}` });
        continue;
      }
      const doc = recordToDocument(value);
      if (typeof doc === 'string') {
        yield errorItem({ path: file, line: lineNo, message: doc });
        continue;
      }
      // A second record with the same id would silently replace the first: the file is ambiguous, so keep the first.
      const firstLine = seenIds.get(doc.id);
      if (firstLine !== undefined) {
        yield errorItem({
          path: file,
          line: lineNo,
          message: `duplicate id "${doc.id}" (first at line ${firstLine}); this record is skipped`,
        });
        continue;
      }
      seenIds.set(doc.id, lineNo);
      yield { kind: 'document', document: { ...doc, origin: { path: file, line: lineNo } } };
    }
  } catch (err) {
    yield errorItem({ path: file, line: lineNo > 0 ? lineNo : undefined, message: `read failed: ${(err as Error).message}` });
  } finally {
    lines.close();
    stream.destroy();
  }
}

// ---------------------------------------------------------------------------------------------- trees

/** Sorted, hidden entries skipped, symlinked folders not followed (no cycles). */
async function* walk(dir: string, root: string, reader: FileReader): AsyncGenerator<SourceItem> {
  if (dir !== root && isBeirFolder(dir)) {
    yield* readJsonl(path.join(dir, BEIR_CORPUS_FILE));
    return;
  }
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    yield errorItem({ path: dir, message: `cannot list folder: ${(err as Error).message}` });
    return;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      yield* walk(full, root, reader);
    } else if (entry.isFile() || entry.isSymbolicLink()) {
      if (!isSupportedFile(full)) yield { kind: 'unsupported', path: full, extension: extensionOf(full) };
      else yield* readFileItems(full, toPosix(path.relative(root, full)), reader);
    }
  }
}

async function* readFileItems(file: string, id: string, reader: FileReader): AsyncGenerator<SourceItem> {
  if (JSONL_EXTENSIONS.has(path.extname(file).toLowerCase())) yield* readJsonl(file);
  else yield await readWith(reader, file, id);
}

/**
 * Documents from files and folders. A folder holding `corpus.jsonl` is a BEIR dataset (only the corpus is read);
 * other folders are walked for .txt/.md/.html/.pdf/.docx/.jsonl and image files; files of other types are yielded as
 * `unsupported` (counted in the summary by extension). File documents are
 * identified by their path relative to the folder given (or their file name when a file is given directly); JSONL
 * records by their own id. `read` says how files are read (OCR); without it nothing is OCR'd.
 */
export async function* readSources(paths: string[], read?: ReadOptions): AsyncGenerator<SourceItem> {
  const reader = new FileReader(read);
  try {
    yield* readPaths(paths, reader);
  } finally {
    await reader.close();
  }
}

async function* readPaths(paths: string[], reader: FileReader): AsyncGenerator<SourceItem> {
  for (const input of paths) {
    let info;
    try {
      info = await stat(input);
    } catch (err) {
      yield errorItem({ path: input, message: `cannot access: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
      continue;
    }
    if (info.isDirectory()) {
      if (isBeirFolder(input)) yield* readJsonl(path.join(input, BEIR_CORPUS_FILE));
      else yield* walk(input, input, reader);
    } else if (!isSupportedFile(input)) {
      yield errorItem({ path: input, message: `unsupported file type "${path.extname(input) || '(none)'}"` });
    } else {
      yield* readFileItems(input, path.basename(input), reader);
    }
  }
}

/** Fast upper bound of the documents `readSources` will yield, for a progress bar's total and ETA. */
export async function countSourceDocuments(paths: string[]): Promise<number> {
  let total = 0;
  const countLines = async (file: string) =>
    new Promise<number>((resolve) => {
      let n = 0;
      let last = 10;
      createReadStream(file)
        .on('data', (chunk: Buffer | string) => {
          const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
          for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) n++;
          if (buf.length > 0) last = buf[buf.length - 1]!;
        })
        .on('end', () => resolve(n + (last === 10 ? 0 : 1)))
        .on('error', () => resolve(0));
    });
  const countPath = async (p: string): Promise<void> => {
    let info;
    try {
      info = await stat(p);
    } catch {
      return;
    }
    if (info.isDirectory()) {
      if (isBeirFolder(p)) {
        total += await countLines(path.join(p, BEIR_CORPUS_FILE));
        return;
      }
      let names: string[];
      try {
        names = (await readdir(p)).filter((n) => !n.startsWith('.'));
      } catch {
        return;
      }
      for (const name of names) await countPath(path.join(p, name));
    } else if (isSupportedFile(p)) {
      total += JSONL_EXTENSIONS.has(path.extname(p).toLowerCase()) ? await countLines(p) : 1;
    }
  };
  for (const p of paths) await countPath(p);
  return total;
}
