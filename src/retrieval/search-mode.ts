/** How a search ranks passages: vectors (HNSW), BM25, both fused, or vectors by exhaustive scan. */
export const SEARCH_MODES = ['dense', 'bm25', 'hybrid', 'exact'] as const;
export type SearchMode = (typeof SEARCH_MODES)[number];
