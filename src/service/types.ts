/**
 * The service's request and result types (DTOs): what the REST API, the CLIs and the evaluations pass to `RagService`
 * and get back from it.
 */
import type { AppConfig } from '../config/index.js';
import type { IngestError, IngestSummary, ProgressMode, ChunkOptions, FileFormat } from '../ingest/index.js';
import type { AnswerResult, FusionMode } from '../reader/index.js';
import type { passageLocation, SearchFilter, SearchMode } from '../retrieval/index.js';
import type { Metadata, StoreStats } from '../store/index.js';
import type { AnswerSpan } from './answer-span.js';
import type { RerankParams } from './reranking.js';

/** Which collection a call addresses; the default collection (config `defaultCollection`) when absent. */
export interface CollectionScope {
  collection?: string;
}

export interface SearchParams extends CollectionScope {
  query: string;
  k?: number;
  mode?: SearchMode;
  filter?: SearchFilter;
  rerank?: RerankParams;
}

/** Temperature > 0 samples (see src/reader/sampling.ts); absent or 0 decodes greedily (or with beams). */
export interface SamplingParams {
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
}

export interface AskParams extends CollectionScope, SamplingParams {
  question: string;
  k?: number;
  mode?: SearchMode;
  filter?: SearchFilter;
  fusion?: FusionMode;
  rerank?: RerankParams;
  maxNewTokens?: number;
  numBeams?: number;
  /** Not exposed over HTTP: benchmarks force a fixed answer length with it. */
  minNewTokens?: number;
  /** Retrieve with this text instead of the question (chat folds earlier user turns into it). */
  retrievalQuery?: string;
}

export interface AskOutcome {
  answer: string;
  /**
   * `attention`: the passage's share of the cross-attention; `score`: that share renormalised over the cited passages;
   * `answerSpan`: where the answer occurs in the passage's `text` (in `passages`), when it does.
   */
  citations: Array<
    { passageId: string; docId: string; title: string; score: number; attention: number; answerSpan?: AnswerSpan } & PassageLocation
  >;
  passages: Array<
    {
      passageId: string;
      docId: string;
      title: string;
      text: string;
      retrievalScore: number;
      rerankScore?: number;
      attention: number;
    } & PassageLocation
  >;
  tokenAttention: AnswerResult['tokenAttention'];
  attribution: AnswerResult['attribution'];
  fusion: FusionMode;
  model: string;
  /** Generated tokens, EOS included. */
  tokens: number;
  /** Encoder tokens the reader read (all passages' inputs); 0 without passages. */
  promptTokens: number;
  /** 'stop': the model ended the answer (or there was nothing to read); 'length': maxNewTokens cut it off. */
  finishReason: 'stop' | 'length';
  /**
   * `embedMs` + `searchMs` (inside `retrieveMs`) and `onnxMs` are for metrics and benchmarks, not for API clients;
   * `rerankMs` (also inside `retrieveMs`) is there when the passages were reranked.
   */
  timings: {
    retrieveMs: number;
    embedMs: number;
    searchMs: number;
    rerankMs?: number;
    encodeMs: number;
    decodeMs: number;
    totalMs: number;
    onnxMs: number;
  };
}

export interface SearchOutcome {
  /** `score`: the retrieval score; `rerankScore` (with rerank): the cross-encoder's, which orders the results. */
  results: Array<{ passageId: string; docId: string; title: string; text: string; score: number; rerankScore?: number } & PassageLocation>;
  timings: { embedMs: number; searchMs: number; rerankMs?: number; totalMs: number };
}

/** Page range and heading path of a passage, when its document has them. */
export type PassageLocation = ReturnType<typeof passageLocation>;

/** One uploaded file: its name (the document id), its format and its bytes. */
export interface UploadedDocumentFile {
  name: string;
  format: FileFormat;
  bytes: Uint8Array;
}

export interface DocumentList {
  documents: Array<{ id: string; title: string; metadata: Metadata }>;
  /** Pass as `after` for the next page; absent on the last page. */
  next?: string;
}

export interface DocumentView {
  id: string;
  title: string;
  metadata: Metadata;
  passages: Array<{ passageId: string; text: string } & PassageLocation>;
}

export interface ServiceStats {
  collection: string;
  documents: number;
  passages: number;
  /** Bytes the collection occupies on disk (SQLite with its WAL, HNSW graph, manifest). */
  indexBytes: number;
  hnsw: { live: number; pending: number };
  models: { embed: string; reader: string };
  writable: boolean;
  /** PostgreSQL deployment: how far this replica has applied the collection's change log. */
  replication?: StoreStats['replication'];
}

export interface CollectionSummary {
  name: string;
  embedModel: string;
  dim: number;
  chunk?: { maxTokens: number; overlapTokens: number };
  createdAt: string;
}

export interface AskHooks {
  signal?: AbortSignal;
  onToken?: (token: { id: number; text: string; index: number }) => void;
}

export interface BulkRunOptions extends CollectionScope {
  progress: ProgressMode;
  onError?: (error: IngestError) => void;
  /** This run only: cut documents differently from the collection's chunking. */
  chunk?: ChunkOptions;
  /** Decide outcomes (and, for a sync, the deletions) without writing. */
  dryRun?: boolean;
}

/** A folder sync: the ingest summary of the folder's documents plus the documents removed (or, dry, to remove). */
export interface SyncSummary extends IngestSummary {
  removed: string[];
  /** Documents from files that a plain ingest wrote and this folder no longer has: a sync never deletes them. */
  kept: Array<{ id: string; reason: string }>;
}

/** What runs instead of the default models when they cannot be loaded and none was configured (`offline.bundledReader`). */
export interface OfflineStart {
  /** The configuration actually served: the bundled reader, lexical vectors, BM25, the offline collection. */
  config: AppConfig;
  embedModel: string;
  readerModel: string;
  collection: string;
  /** Why the default models did not load. */
  reason: string;
  /** What runs and how to switch to the hub models: for the log and /readyz. */
  message: string;
}
