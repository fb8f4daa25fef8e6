import type { Metadata, PassageFields } from '../store/index.js';

/** A document before chunking, from a reader or from a caller (eval, REST document API). */
export interface SourceDocument {
  id: string;
  title: string;
  text: string;
  metadata: Metadata;
  /** Where it came from, for error messages. */
  origin?: { path: string; line?: number };
  /** Pages and headings as character spans of `text`, when the format has them (PDF pages; Markdown/HTML/DOCX headings). */
  layout?: TextLayout;
}

export interface TextLayout {
  /**
   * Page spans of `text`, in order; `page` is the 1-based page number. Text between pages belongs to none. A page read
   * by OCR has tesseract's mean word confidence (0–100).
   */
  pages?: Array<{ page: number; start: number; end: number; ocrConfidence?: number }>;
  /** Heading paths in order of `start`: each applies from its start to the next entry's start. */
  sections?: Array<{ start: number; path: string[] }>;
}

export interface IngestError {
  path: string;
  line?: number;
  message: string;
}

/** What readers yield: a document, a problem that skipped one, or a file of a type no reader handles (the run continues). */
export type SourceItem =
  | { kind: 'document'; document: SourceDocument }
  | { kind: 'error'; error: IngestError }
  | { kind: 'unsupported'; path: string; extension: string };

export interface ChunkOptions {
  /** Budget per passage in tokens of the embedding model's tokenizer, special tokens excluded. */
  maxTokens: number;
  /** Tokens of the previous passage repeated at the start of the next one. */
  overlapTokens: number;
}

/**
 * A chunk of a document, before embedding. Its `id` is `${docId}#${chunkNo}`: stable as long as the document and the
 * chunking settings are; `text` is the original character span of the document, not a detokenisation.
 */
export interface Passage extends PassageFields {
  tokens: number;
}

/** What happened to one input document; the same document gets the same outcome from every writer. */
export interface DocumentOutcome {
  /** The document id, or where the input came from when it had no usable id. */
  id: string;
  status: 'added' | 'updated' | 'unchanged' | 'deleted' | 'error';
  /** Passages the document has after the write (absent for errors and deletes). */
  passages?: number;
  /** Why it is an error, or why a folder sync lists it. */
  reason?: string;
}

export interface IngestSummary {
  documentsSeen: number;
  added: number;
  updated: number;
  unchanged: number;
  deleted: number;
  passagesAdded: number;
  passagesRemoved: number;
  errors: IngestError[];
  /** Files skipped because no reader handles their type, counted by extension ("(none)" for no extension). */
  unsupported: Record<string, number>;
  /** One per input document (and per unreadable input), in input order. */
  outcomes: DocumentOutcome[];
  seconds: number;
}
