import { DomainError, type ErrorKind } from '../../common/errors.js';
import type { TextLayout } from '../types.js';

/** What a format reader makes of one file: its text, a title, and where pages and headings are. */
export interface ParsedFile {
  title: string;
  text: string;
  layout?: TextLayout;
  /** Format facts worth filtering on (e.g. `pages`), merged into the document's metadata. */
  metadata?: Record<string, string | number>;
}

/** A file that cannot be read, with the reason in words a user can act on. */
export class UnreadableFileError extends DomainError {
  override name = 'UnreadableFileError';
  readonly kind: ErrorKind = 'unprocessable';
  readonly code: string = 'unreadable_file';
}

/**
 * What an uploaded file may cost to read, for files from clients rather than from the operator's own folders: a zip
 * bomb or a PDF of 20,000 pages is refused before it takes the machine's memory or minutes of CPU. The time budget
 * is the parser thread's (`maxParseMs`); the others are checked while the file is read.
 */
export interface ParseLimits {
  /** Pages of one PDF. */
  maxPdfPages: number;
  /** Bytes the compressed streams of one PDF that text extraction reads (not its images) may inflate to, in all. */
  maxPdfInflatedBytes: number;
  /** Bytes the parts of one DOCX archive that are read may inflate to, in all. */
  maxDocxInflatedBytes: number;
  /** Entries of one DOCX archive. */
  maxDocxEntries: number;
  /** Pages of one file that may be OCR'd (below `OcrOptions.maxPages` when tighter): OCR costs seconds per page. */
  maxOcrPages: number;
}

/** `auto`: OCR only the pages without a text layer (and image files); `off`: never; `force`: every page. */
export type OcrMode = 'auto' | 'off' | 'force';

/** How pages without a text layer and image files are read: tesseract's OCR, within a page and a time budget per file. */
export interface OcrOptions {
  mode: OcrMode;
  /** tesseract language codes, each with its data package `@tesseract.js-data/<code>` installed. */
  languages: string[];
  /** Resolution PDF pages are rendered at for OCR. */
  dpi: number;
  /** Pages of one file that may be OCR'd; a file needing more is refused before any is. */
  maxPages: number;
  /** Milliseconds the OCR of one file may take; then it is stopped and the file refused. */
  maxMsPerFile: number;
  /** tesseract workers (threads) recognising pages side by side. */
  workers: number;
}

/** One page OCR'd: the `done`-th of the `total` pages of the file that need OCR, and its PDF page number. */
export interface OcrPageEvent {
  page: number;
  done: number;
  total: number;
  /** tesseract's mean word confidence of the page, 0–100. */
  confidence: number;
}

/** How a file is read beyond its format: with OCR (absent: without, so image-only PDFs and images are refused). */
export interface FileReadOptions {
  ocr: OcrOptions;
  onOcrPage?: (event: OcrPageEvent) => void;
}

/**
 * A file over one of its `ParseLimits` or its time budget: 413 for size, entries and pages, 422 for time. `field`
 * names the file in the request (`files.N`) once the caller knows which one it was.
 */
export class FileLimitError extends UnreadableFileError {
  override name = 'FileLimitError';
  override readonly kind: ErrorKind;
  override readonly code: string;
  constructor(
    message: string,
    readonly status: 413 | 422,
    override readonly field?: string,
  ) {
    super(message);
    this.kind = status === 413 ? 'too_large' : 'unprocessable';
    this.code = status === 413 ? 'payload_too_large' : 'unprocessable_file';
  }
}
