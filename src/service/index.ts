export {
  RagService,
  type AskParams,
  type AskOutcome,
  type AskHooks,
  type SearchParams,
  type ServiceLog,
  type DocumentView,
  type ServiceStats,
  type UploadedDocumentFile,
  type OpenOptions,
} from './rag-service.js';
export type { DocumentInput, DocumentWriteStatus, DocumentWriteState, DeleteResult } from './index-writer.js';
export { ServiceError, WriteQueueFullError, WriteCancelledError, ReadOnlyIndexError, IndexInconsistentError } from './errors.js';
