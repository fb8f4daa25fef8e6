import type { Metadata, PassageFields } from '../store/index.js';

/** A document before chunking, from a reader or from a caller (eval, REST document API). */
export interface SourceDocument {
  id: string;
  title: string;
  text: string;
  metadata: Metadata;
  /** Where it came from, for error messages. */
  origin?: { path: string; line?: number };
}

export interface IngestError {
  path: string;
  line?: number;
  message: string;
}

/** What readers yield: a document, or a problem that skipped one (the run continues). */
export type SourceItem = { kind: 'document'; document: SourceDocument } | { kind: 'error'; error: IngestError };

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
  /** Why it is an error. */
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
  /** One per input document (and per unreadable input), in input order. */
  outcomes: DocumentOutcome[];
  seconds: number;
}
