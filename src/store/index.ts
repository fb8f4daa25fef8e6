export {
  COLLECTION_NAME,
  isReservedCollectionName,
  RESERVED_NAME_MESSAGE,
  type Bm25Options,
  type ChunkingParams,
  type CollectionInfo,
  type CollectionManifest,
  type DenseSearchOptions,
  type DocumentInfo,
  type DocumentPage,
  type ListDocumentsOptions,
  type OpenCollectionOptions,
  type PassageStore,
  type StoreEngine,
} from './engine.js';
export { openStoreEngine, type EngineSpec } from './open-engine.js';
export { assertCollectionName } from './collection-name.js';
export {
  EmbeddingMismatchError,
  IndexLockedError,
  CollectionDataNotFoundError,
  IndexStoreError,
  InvalidCollectionNameError,
  InvalidFilterError,
} from './errors.js';
export { ExactIndex } from './exact-index.js';
export { HnswIndex } from './hnsw-index.js';
export type { VectorIndex } from './vector-index.js';
export type {
  DeleteOutcome,
  DocumentState,
  DocumentWrite,
  FaultPoint,
  HnswParams,
  LabelScore,
  Metadata,
  MetadataFilter,
  PassageFields,
  PassageInput,
  PassageRecord,
  SearchFilter,
  StoredDocument,
  StoreStats,
  VerifyReport,
  WriteOutcome,
} from './types.js';
export { StorageUnavailableError } from './errors.js';
export { moveEmbeddedIndexToPostgres, type ImportSummary, type MoveOptions } from './postgres/import.js';
export {
  parseMetadataFilter,
  parseKeyPath,
  isoDateToMs,
  FilterSyntaxError,
  FILTER_LIMITS,
  type FilterNode,
  type FilterScalar,
} from './filter.js';
