/**
 * The storage boundary. Everything retrieval, ingest, the service and the evals may do with stored documents goes
 * through `PassageStore` (one collection) and `StoreEngine` (the set of collections of one deployment). Engines:
 * the embedded SQLite engine (`sqlite/`), and a PostgreSQL-backed one. Any engine must pass the contract suite in
 * `test/helpers/store-contract.ts`.
 *
 * Methods are async because a networked engine needs them to be; the embedded engine does its work synchronously
 * inside them, which is what makes "a batch is visible all at once in this process" hold there for free.
 */
import type {
  DeleteOutcome,
  DocumentState,
  DocumentWrite,
  HnswParams,
  LabelScore,
  Metadata,
  MetadataFilter,
  PassageRecord,
  SearchFilter,
  StoreStats,
  VerifyReport,
  WriteOutcome,
} from './types.js';

/** How a collection cuts documents into passages; recorded with the collection so every writer uses the same. */
export interface ChunkingParams {
  /** Budget per passage in embedding-model tokens, special tokens excluded. */
  maxTokens: number;
  /** Tokens of the previous passage repeated at the start of the next one. */
  overlapTokens: number;
}

/** What a collection is, fixed when it is created (the embedded engine keeps it in `manifest.json`). */
export interface CollectionManifest {
  embedModel: string;
  dim: number;
  space: 'cosine';
  /** M and efConstruction are fixed at creation; efSearch is the default an open uses unless told otherwise. */
  hnsw: HnswParams;
  /** Absent in indexes made before collections existed: writers then use the configured chunking. */
  chunk?: ChunkingParams;
  createdAt: string;
}

export interface DocumentInfo {
  id: string;
  title: string;
  metadata: Metadata;
  contentHash: string;
  chunking: string;
  /** Number of passages the document has. */
  passages: number;
}

export interface ListDocumentsOptions {
  /** Only ids starting with this string (plain prefix, no pattern syntax). */
  idPrefix?: string;
  /** Only documents whose metadata matches this filter (the search filter language, see `filter.ts`). */
  metadata?: MetadataFilter;
  /** Paging cursor: only ids sorting after this one (binary order of the UTF-8 id). */
  after?: string;
  /** Page size; engines cap it at 1000. Default 100. */
  limit?: number;
}

export interface DocumentPage {
  /** Ordered by id (binary order); `contentHash`/`chunking` let a sync decide what changed without reading text. */
  documents: Array<Pick<DocumentInfo, 'id' | 'title' | 'metadata' | 'contentHash' | 'chunking'>>;
  /** Pass as `after` for the next page; absent on the last page. */
  next?: string;
}

export interface DenseSearchOptions {
  /** Applied inside the vector search (never a post-filter that would return fewer than k). */
  filter?: SearchFilter;
  /** HNSW beam width for this query; default: the open's efSearch. Engines may search exactly when it is moot. */
  ef?: number;
}

export interface Bm25Options {
  filter?: SearchFilter;
  /** Column weights; title is repeated on every passage of a document, so it usually weighs less. */
  titleWeight: number;
  textWeight: number;
}

/**
 * One collection: documents with their passages, passage vectors, a BM25 index and a vector index, kept consistent.
 *
 * Atomicity: `writeDocuments` and `deleteDocuments` apply a whole batch or nothing. Visibility: when their promise
 * resolves the batch is committed (durable in the engine's source of truth) and every later read through this
 * object sees it; no read through this object ever sees part of a batch. Reads through a read-only open see other
 * processes' commits without any call by the caller (the store refreshes itself, cheaply, at the start of a read).
 * Derived structures (the embedded engine's saved HNSW graph) are brought up to date by `checkpoint()`; a crash
 * before it costs recovery time on the next open, never data.
 *
 * Labels: every passage has a numeric label, unique within the collection and never reused; search methods return
 * labels and `passagesByLabels` turns them into passages. A label returned by a search may have been deleted by a
 * concurrent writer before it is looked up: callers skip labels that `passagesByLabels` does not return.
 */
export interface PassageStore {
  /** The collection's name. */
  readonly name: string;
  /** Where it lives, for messages (a folder for the embedded engine, a URL without credentials otherwise). */
  readonly location: string;
  readonly manifest: CollectionManifest;
  readonly embedModel: string;
  readonly dim: number;
  /** Opened for reads only: write methods and `checkpoint` reject with an error. */
  readonly readonly: boolean;

  // ---------------------------------------------------------------- writes

  /**
   * Inserts or replaces documents with their passages and vectors, atomically for the whole batch. A replaced
   * document loses all its old passages in the same transaction. Vectors are stored unit-normalised. Rejects (and
   * changes nothing) on a vector of the wrong dimension, an empty id, or a storage failure. Outcome per document in
   * input order; a document id must occur at most once per batch.
   */
  writeDocuments(writes: DocumentWrite[]): Promise<WriteOutcome>;

  /** Removes documents with their passages, BM25 rows and vectors, atomically for the whole batch. */
  deleteDocuments(ids: string[]): Promise<DeleteOutcome>;

  /**
   * Brings derived structures up to date on durable storage (embedded engine: saves the HNSW graph under the
   * checkpoint/generation protocol). Resolves whether anything was written. Writers call it per their policy; it is
   * never needed for correctness or visibility, only to bound recovery work after a crash.
   */
  checkpoint(): Promise<boolean>;

  // ---------------------------------------------------------------- lookups

  /**
   * Content hash and chunking signature of those ids that exist (ingest's change detection). This is the writers'
   * view: a replicated engine answers from its database, which runs ahead of the replica's searchable state.
   */
  documentStates(ids: string[]): Promise<Map<string, DocumentState>>;

  /** One page of documents, ordered by id; filters by id prefix and/or top-level metadata values. */
  listDocuments(options?: ListDocumentsOptions): Promise<DocumentPage>;

  getDocument(id: string): Promise<DocumentInfo | undefined>;

  /** The document's passages in chunk order; empty if it does not exist. */
  passagesOfDocument(docId: string): Promise<PassageRecord[]>;

  /** Passages by label; labels that no longer exist are absent from the map. */
  passagesByLabels(labels: number[]): Promise<Map<number, PassageRecord>>;

  /**
   * Every document with its passages and stored (unit) vectors, as writes another store accepts unchanged, in pages of
   * at most `pageDocuments` documents ordered by id (moving a collection between engines without re-embedding). Each
   * page is read consistently; writes between pages may or may not be seen.
   */
  exportDocuments(pageDocuments: number): AsyncIterable<DocumentWrite[]>;

  // ---------------------------------------------------------------- search

  /**
   * BM25 over title and text, best first (score = -bm25(), higher is better). `terms` are plain words, OR-ed; the
   * engine quotes them for its own query syntax, so no term is ever interpreted as an operator.
   */
  bm25Search(terms: string[], k: number, options: Bm25Options): Promise<LabelScore[]>;

  /** Approximate nearest neighbours by cosine similarity (score = cosine), filter applied inside the search. */
  denseSearch(vector: Float32Array, k: number, options?: DenseSearchOptions): Promise<LabelScore[]>;

  /** Brute-force cosine similarity over every stored vector passing the filter: the reference for recall. */
  exactSearch(vector: Float32Array, k: number, filter?: SearchFilter): Promise<LabelScore[]>;

  // ---------------------------------------------------------------- health

  stats(): Promise<StoreStats>;

  /** Checks every cross-structure invariant (passages ↔ BM25 rows ↔ vectors ↔ vector index ↔ saved state). */
  verify(): Promise<VerifyReport>;

  /** Checkpoints if writable and dirty, then releases everything (locks, files, connections). Idempotent. */
  close(): Promise<void>;
}

/** How to open one collection. Every field the engine needs is given: no defaults below the config schema. */
export interface OpenCollectionOptions {
  /** The embedding model and dimension the caller will use; opening a collection built with others is an error. */
  embedModel: string;
  dim: number;
  /** HNSW parameters; M/efConstruction only matter when the collection is created, efSearch applies to this open. */
  hnsw: HnswParams;
  /** Recorded in the manifest when the collection is created; ignored otherwise. */
  chunk?: ChunkingParams;
  /** Open for reads only (no writer lock). Default false. */
  readonly?: boolean;
  /** Create the collection if it does not exist. Default false: a missing collection is `CollectionDataNotFoundError`. */
  create?: boolean;
  /** A filter admitting at most this many passages is answered exactly rather than by a filtered graph walk. */
  exactFilterThreshold: number;
}

export interface CollectionInfo {
  name: string;
  manifest: CollectionManifest;
}

/**
 * The set of collections of one deployment. The embedded engine keeps one folder per collection under its
 * indexes folder; names are checked by `assertCollectionName`, so no name can reach outside it.
 */
export interface StoreEngine {
  /** 'sqlite' or 'postgres'. */
  readonly kind: string;
  listCollections(): Promise<CollectionInfo[]>;
  /** The collection's manifest, or undefined if it does not exist. */
  describeCollection(name: string): Promise<CollectionManifest | undefined>;
  openCollection(name: string, options: OpenCollectionOptions): Promise<PassageStore>;
  /**
   * Deletes a collection and everything in it. Callers close their open store of it first; the embedded engine
   * refuses while another process holds its writer lock. Resolves false if it did not exist.
   */
  dropCollection(name: string): Promise<boolean>;
  close(): Promise<void>;
}

// The naming rule lives in src/common (the config validates names too, without depending on the store).
export { COLLECTION_NAME, isReservedCollectionName, RESERVED_NAME_MESSAGE } from '../common/collection-name.js';
