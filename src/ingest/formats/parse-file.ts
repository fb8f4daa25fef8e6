import path from 'node:path';
import { parseDocx } from './docx.js';
import { parseHtml } from './html.js';
import { parseImage } from './image.js';
import { parseMarkdown } from './markdown.js';
import { parsePdf } from './pdf.js';
import { decodeText } from './text.js';
import type { SourceDocument } from '../types.js';
import { UnreadableFileError, type FileReadOptions, type ParsedFile, type ParseLimits } from './types.js';

export type FileFormat = 'text' | 'markdown' | 'html' | 'pdf' | 'docx' | 'image';

/** File extensions the readers understand (JSONL and BEIR corpora are record streams, read elsewhere). */
export const FILE_FORMATS: ReadonlyMap<string, FileFormat> = new Map([
  ['.txt', 'text'],
  ['.text', 'text'],
  ['.md', 'markdown'],
  ['.markdown', 'markdown'],
  ['.html', 'html'],
  ['.htm', 'html'],
  ['.pdf', 'pdf'],
  ['.docx', 'docx'],
  ['.png', 'image'],
  ['.jpg', 'image'],
  ['.jpeg', 'image'],
  ['.tif', 'image'],
  ['.tiff', 'image'],
]);

/** Media types an upload may declare, for when a file name has no known extension. */
export const MEDIA_TYPES: ReadonlyMap<string, FileFormat> = new Map([
  ['text/plain', 'text'],
  ['text/markdown', 'markdown'],
  ['text/html', 'html'],
  ['application/pdf', 'pdf'],
  ['application/vnd.openxmlformats-officedocument.wordprocessingml.document', 'docx'],
  ['image/png', 'image'],
  ['image/jpeg', 'image'],
  ['image/tiff', 'image'],
]);

/** Formats whose reading may need OCR: they are read on the parser thread when OCR is on. */
export function mayNeedOcr(format: FileFormat): boolean {
  return format === 'pdf' || format === 'image';
}

export function fileFormat(name: string): FileFormat | undefined {
  return FILE_FORMATS.get(path.extname(name).toLowerCase());
}

/** ".png", or "(none)" for a name without an extension: the key unsupported files are counted under. */
export function extensionOf(name: string): string {
  return path.extname(name).toLowerCase() || '(none)';
}

function fileStem(name: string): string {
  return path.basename(name, path.extname(name));
}

export interface ParsedDocument extends ParsedFile {
  format: FileFormat;
}

/**
 * One file's bytes → its text, title and layout; an unreadable file throws UnreadableFileError with the reason, one
 * over `limits` FileLimitError. Without `limits` the file is trusted (the ingest CLI reading the operator's folders).
 * `read` brings OCR (pages without a text layer, images); without it image-only PDFs and images are refused.
 */
export async function parseFile(
  bytes: Uint8Array,
  name: string,
  format: FileFormat,
  limits?: ParseLimits,
  read?: FileReadOptions,
): Promise<ParsedDocument> {
  const stem = fileStem(name);
  if (format === 'pdf') return { ...(await parsePdf(bytes, stem, limits, read)), format };
  if (format === 'image') return { ...(await parseImage(bytes, stem, limits, read)), format };
  if (format === 'docx') return { ...(await parseDocx(bytes, stem, limits)), format };
  const decoded = decodeText(bytes);
  if ('error' in decoded) throw new UnreadableFileError(decoded.error);
  try {
    if (format === 'html') return { ...parseHtml(decoded.text, stem), format };
    if (format === 'markdown') return { ...parseMarkdown(decoded.text, stem), format };
  } catch (err) {
    throw new UnreadableFileError(`cannot parse ${format}: ${(err as Error).message}`);
  }
  return { title: stem, text: decoded.text, format };
}

/** What reads a file's bytes: `parseFile` itself, or the same run on a parser thread. */
export type ParseFile = (bytes: Uint8Array, name: string, format: FileFormat) => Promise<ParsedDocument>;

/**
 * A file as a document to ingest: id as given, metadata = `format` and the format's facts (e.g. `pages`) under the
 * caller's own metadata. Throws UnreadableFileError with the reason.
 */
export async function fileToDocument(
  bytes: Uint8Array,
  name: string,
  format: FileFormat,
  id: string,
  metadata: Record<string, unknown> = {},
  parse: ParseFile = parseFile,
): Promise<SourceDocument> {
  const parsed = await parse(bytes, name, format);
  const document: SourceDocument = {
    id,
    title: parsed.title,
    text: parsed.text,
    metadata: { format, ...parsed.metadata, ...metadata },
    origin: { path: name },
  };
  if (parsed.layout) document.layout = parsed.layout;
  return document;
}
