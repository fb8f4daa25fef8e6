export { IndexStore, type IndexStoreOptions, type DenseSearchOptions, type Bm25Options } from './index-store.js';
export { EmbeddingMismatchError, IndexLockedError, IndexNotFoundError, IndexStoreError, InvalidFilterError } from './errors.js';
export { StorageUnavailableError } from './errors.js';
export { moveEmbeddedIndexToPostgres, type ImportSummary, type MoveOptions } from './postgres/import.js';
export { readManifest, type IndexManifest } from './manifest.js';
export {
  DEFAULT_HNSW,
  type DeleteOutcome,
  type DocumentState,
  type DocumentWrite,
  type FaultPoint,
  type HnswParams,
  type LabelScore,
  type Metadata,
  type PassageFields,
  type PassageInput,
  type PassageRecord,
  type SearchFilter,
  type StoredDocument,
  type StoreStats,
  type VerifyReport,
  type WriteOutcome,
} from './types.js';
export {
  COLLECTION_NAME,
  type Bm25Options as StoreBm25Options,
  type ChunkingParams,
  type CollectionInfo,
  type CollectionManifest,
  type DenseSearchOptions as StoreDenseSearchOptions,
  type DocumentInfo,
  type DocumentPage,
  type ListDocumentsOptions,
  type OpenCollectionOptions,
  type PassageStore,
  type StoreEngine,
} from './engine.js';
