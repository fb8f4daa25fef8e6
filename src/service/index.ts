export { openSystem, engineSpecFor, type SystemOptions } from './compose.js';
export {
  RagService,
  citationsFrom,
  type AskParams,
  type AskOutcome,
  type AskHooks,
  type SamplingParams,
  type BulkRunOptions,
  type CollectionScope,
  type CollectionSummary,
  type SearchOutcome,
  type SearchParams,
  type DocumentView,
  type ServiceStats,
  type UploadedDocumentFile,
  type DocumentList,
  type SyncSummary,
} from './rag-service.js';
export type { ServiceLog } from './log.js';
export type { NewCollection } from './collections.js';
export type { DocumentInput, DocumentWriteStatus, DocumentWriteState, DeleteResult } from './index-writer.js';
export {
  ServiceError,
  WriteQueueFullError,
  WriteCancelledError,
  ReadOnlyIndexError,
  IndexInconsistentError,
  CollectionExistsError,
  CollectionProtectedError,
  CollectionNotFoundError,
} from './errors.js';
export { AdmissionQueue, QueueFullError, type AdmissionOptions } from './admission-queue.js';
export { RerankerSlot, RerankerUnavailableError, InvalidRerankError, retrieve, type RerankParams } from './reranking.js';
