export {
  Retriever,
  passageLocation,
  SEARCH_MODES,
  type QueryEmbedder,
  type RetrieverOptions,
  type SearchHit,
  type SearchMode,
  type SearchOptions,
  type SearchResult,
} from './retriever.js';
export { queryTerms, toFtsQuery } from './fts-query.js';
export { reciprocalRankFusion, type RankedList, type FusedItem } from './rrf.js';
export type { SearchFilter } from '../store/index.js';
export {
  CrossEncoderReranker,
  rerankHits,
  type Reranker,
  type PairScorer,
  type CrossEncoderRerankerOptions,
  type RerankResult,
} from './rerank.js';
