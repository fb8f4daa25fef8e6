import type { RequestHandler } from 'express';
import type { Logger } from 'pino';
import type {
  AdmissionQueue,
  AskHooks,
  AskOutcome,
  AskParams,
  CollectionScope,
  CollectionSummary,
  DeleteResult,
  DocumentInput,
  DocumentList,
  DocumentView,
  DocumentWriteStatus,
  NewCollection,
  SearchParams,
  ServiceStats,
  UploadedDocumentFile,
} from '../service/index.js';
import type { ListDocumentsOptions, Metadata } from '../store/index.js';
import type { AuthPolicy } from './auth.js';
import type { InFlightRequests } from './in-flight.js';
import type { ApiMetrics } from './metrics.js';
import type { ApiLimits, DocumentLimits, SearchResponse } from './schemas.js';
import type { UploadLimits } from './uploads.js';

/**
 * What the HTTP layer needs from the service; the service may still be starting (not ready) when requests arrive.
 * Every data call names its collection (the default one for the unscoped routes).
 */
export interface ApiBackend {
  search(params: SearchParams, options?: { signal?: AbortSignal }): Promise<SearchResponse>;
  ask(params: AskParams, hooks: AskHooks): Promise<AskOutcome>;
  upsertDocuments(docs: DocumentInput[], options: CollectionScope & { signal?: AbortSignal }): Promise<DocumentWriteStatus[]>;
  upsertFiles(
    files: UploadedDocumentFile[],
    metadata: Metadata,
    options: CollectionScope & { signal?: AbortSignal },
  ): Promise<DocumentWriteStatus[]>;
  listDocuments(options: CollectionScope & ListDocumentsOptions): Promise<DocumentList>;
  deleteDocument(id: string, options: CollectionScope & { signal?: AbortSignal }): Promise<DeleteResult>;
  getDocument(id: string, options: CollectionScope): Promise<DocumentView | undefined>;
  stats(options: CollectionScope): Promise<ServiceStats>;
  listCollections(): Promise<CollectionSummary[]>;
  createCollection(name: string, spec: NewCollection): Promise<CollectionSummary>;
  deleteCollection(name: string): Promise<boolean>;
  readonly openCollections: { open: number; peak: number; max: number };
  readonly pendingWrites: number;
}

export interface ApiOptions {
  /** The collection the unscoped routes (/v1/search, /v1/documents, …) use. */
  defaultCollection: string;
  limits: ApiLimits;
  documentLimits: DocumentLimits;
  bodyLimit: string;
  documentsBodyLimit: string;
  uploadLimits: UploadLimits;
  requestTimeoutMs: number;
  generationConcurrency: number;
  generationQueueLength: number;
  auth: AuthPolicy;
  /** Require the read scope for /metrics. */
  protectMetrics: boolean;
  corsOrigins: readonly string[];
  rateLimit: { windowMs: number; max: number };
  trustProxy: boolean | number | string;
  logger: Logger;
  /** User turns folded into a chat's retrieval query (config chat.retrievalTurns). */
  chatRetrievalTurns: number;
  /** The `/mcp` endpoint's session bounds (config mcp). */
  mcp: { maxSessions: number; sessionIdleMs: number };
}

export interface ApiState {
  backend?: ApiBackend;
  /** Why the service is not ready, for /readyz. */
  status: 'starting' | 'ready' | 'failed' | 'stopping';
  detail?: Record<string, unknown>;
}

/** What every router (src/api/routes) is given by createApp: the app's state and options, its queues and middleware. */
export interface RouteContext {
  state: ApiState;
  options: ApiOptions;
  /** Admission of answers (ask and chat): generation concurrency and queue length. */
  queue: AdmissionQueue;
  inFlight: InFlightRequests;
  metrics: ApiMetrics;
  /** Auth for the read and write scopes. */
  read: RequestHandler;
  write: RequestHandler;
  /** The rate limit every /v1 route shares. */
  limit: RequestHandler;
  /** JSON bodies within `options.bodyLimit` (jsonBody: strict, UTF-8 checked); chat uses it too. */
  json: RequestHandler;
  /** Document batches within `options.documentsBodyLimit`, the large ones parsed off the event loop. */
  documentsJson: RequestHandler[];
}
