export {
  RagService,
  type AskParams,
  type AskOutcome,
  type AskHooks,
  type SamplingParams,
  type SearchParams,
  type ServiceLog,
  type DocumentView,
  type ServiceStats,
  type OpenOptions,
} from './rag-service.js';
export type { DocumentInput, DocumentWriteStatus, DocumentWriteState, DeleteResult } from './index-writer.js';
export { ServiceError, WriteQueueFullError, WriteCancelledError, ReadOnlyIndexError, IndexInconsistentError } from './errors.js';
export { RerankerSlot, RerankerUnavailableError, InvalidRerankError, retrieve, type RerankParams } from './reranking.js';
