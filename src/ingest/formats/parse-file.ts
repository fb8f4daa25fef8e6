import path from 'node:path';
import { parseDocx } from './docx.js';
import { parseHtml } from './html.js';
import { parseMarkdown } from './markdown.js';
import { parsePdf } from './pdf.js';
import { decodeText } from './text.js';
import type { SourceDocument } from '../types.js';
import { UnreadableFileError, type ParsedFile, type ParseLimits } from './types.js';

export type FileFormat = 'text' | 'markdown' | 'html' | 'pdf' | 'docx';

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
]);

/** Media types an upload may declare, for when a file name has no known extension. */
export const MEDIA_TYPES: ReadonlyMap<string, FileFormat> = new Map([
  ['text/plain', 'text'],
  ['text/markdown', 'markdown'],
  ['text/html', 'html'],
  ['application/pdf', 'pdf'],
  ['application/vnd.openxmlformats-officedocument.wordprocessingml.document', 'docx'],
]);

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
 */
export async function parseFile(bytes: Uint8Array, name: string, format: FileFormat, limits?: ParseLimits): Promise<ParsedDocument> {
  const stem = fileStem(name);
  if (format === 'pdf') return { ...(await parsePdf(bytes, stem, limits)), format };
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
  parse: typeof parseFile = parseFile,
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
