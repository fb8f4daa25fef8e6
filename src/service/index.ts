export { openSystem, engineSpecFor, servingOptions, type SystemOptions } from './compose.js';
export { RagService } from './rag-service.js';
export { citationsFrom } from './citations.js';
export { answerSpan, normaliseForMatch, type AnswerSpan } from './answer-span.js';
export type { ServiceDiagnostics } from './diagnostics.js';
export type {
  AskParams,
  AskOutcome,
  AskHooks,
  SamplingParams,
  BulkRunOptions,
  CollectionScope,
  CollectionSummary,
  SearchOutcome,
  SearchParams,
  DocumentView,
  ServiceStats,
  UploadedDocumentFile,
  DocumentList,
  SyncSummary,
  OfflineStart,
} from './types.js';
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
