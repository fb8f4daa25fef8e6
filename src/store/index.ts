export { IndexStore, type IndexStoreOptions, type DenseSearchOptions, type Bm25Options } from './index-store.js';
export { EmbeddingMismatchError, IndexLockedError, IndexNotFoundError, IndexStoreError, InvalidFilterError } from './errors.js';
export { readManifest, type IndexManifest } from './manifest.js';
export {
  DEFAULT_HNSW,
  type DeleteOutcome,
  type DocumentState,
  type DocumentWrite,
  type FaultPoint,
  type HnswParams,
  type LabelScore,
  type MetadataFilter,
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
export { parseMetadataFilter, parseKeyPath, isoDateToMs, FilterSyntaxError, FILTER_LIMITS, type FilterNode, type FilterScalar } from './filter.js';
