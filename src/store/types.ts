/** JSON-serialisable metadata attached to a document and copied onto each of its passages. */
export type Metadata = Record<string, unknown>;

export interface HnswParams {
  /** Graph degree; fixed when the index is created. */
  M: number;
  /** Construction beam width; fixed when the index is created. */
  efConstruction: number;
  /** Default search beam width; may differ per open and per query. */
  efSearch: number;
}

export interface StoredDocument {
  id: string;
  title: string;
  contentHash: string;
  /** How the document was cut into passages; a different value means the passages must be rebuilt. */
  chunking: string;
  metadata: Metadata;
}

/** What every stored passage has, whether being written or read back. */
export interface PassageFields {
  id: string;
  docId: string;
  chunkNo: number;
  title: string;
  text: string;
  metadata: Metadata;
  charStart: number;
  charEnd: number;
}

/** A passage to write: its document comes from the enclosing `DocumentWrite`. */
export type PassageInput = Omit<PassageFields, 'docId'> & { vector: Float32Array };

export interface DocumentWrite {
  document: StoredDocument;
  passages: PassageInput[];
}

export interface PassageRecord extends PassageFields {
  /** HNSW label, also the SQLite rowid and the FTS rowid; never reused. */
  label: number;
}

export interface DocumentState {
  contentHash: string;
  chunking: string;
  /** Passages the document has. */
  passages: number;
}

export interface WriteOutcome {
  inserted: number;
  replaced: number;
  passagesAdded: number;
  passagesRemoved: number;
  /** One entry per written document, in input order. */
  documents: Array<{ id: string; status: 'added' | 'updated'; passages: number }>;
}

export interface DeleteOutcome {
  deleted: string[];
  missing: string[];
  passagesRemoved: number;
}

/** Restricts a search to passages of the given documents and/or with the given top-level metadata values. */
export interface SearchFilter {
  docIds?: string[];
  metadata?: Record<string, string | number | boolean>;
}

export interface LabelScore {
  label: number;
  score: number;
}

export interface StoreStats {
  embedModel: string;
  dim: number;
  documents: number;
  passages: number;
  vectors: number;
  /** Passages searchable through the in-memory HNSW graph. */
  hnswLive: number;
  /** Passages whose vectors are not yet in the saved HNSW file (they are re-added from SQLite on open). */
  pending: number;
  hnswCapacity: number;
  generation: number;
  /** True when the saved HNSW file was missing or unreadable and the graph was rebuilt from the stored vectors. */
  rebuiltFromVectors: boolean;
  /** Bytes the collection occupies on this machine's disk (embedded engine: every file in its folder). */
  bytes: number;
}

export interface VerifyReport {
  ok: boolean;
  problems: string[];
  stats: StoreStats;
}

/** Points inside `checkpoint()`/`writeDocuments()` where tests inject crashes to prove recovery. */
export type FaultPoint = 'after-sqlite-commit' | 'before-hnsw-rename' | 'after-hnsw-rename' | 'after-generation-commit';
