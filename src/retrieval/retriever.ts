import { EmbeddingMismatchError, type LabelScore, type Metadata, type PassageStore, type SearchFilter } from '../store/index.js';
import { queryTerms } from './fts-query.js';
import { reciprocalRankFusion } from './rrf.js';
import { SEARCH_MODES, type SearchMode } from './search-mode.js';

export { SEARCH_MODES, type SearchMode };

/** The slice of the embedding service search needs (the models stage's `Embedder` satisfies it). */
export interface QueryEmbedder {
  readonly modelId: string;
  readonly dim: number;
  embedQuery(text: string): Promise<Float32Array>;
}

/** Complete options (the config schema's `retrieval` section satisfies it). */
export interface RetrieverOptions {
  defaultK: number;
  /** Mode of searches that name none. */
  defaultMode: SearchMode;
  /** Larger k is clamped to this. */
  maxK: number;
  /** RRF constant. */
  rrfK: number;
  denseWeight: number;
  bm25Weight: number;
  /** Hybrid fetches max(k, fusionDepth) candidates from each list before fusing. */
  fusionDepth: number;
  /** bm25() column weights. */
  titleWeight: number;
  textWeight: number;
}

export interface SearchOptions {
  k?: number;
  mode?: SearchMode;
  filter?: SearchFilter;
  /** HNSW beam for this query; the store's own (config hnsw.efSearch) otherwise. */
  ef?: number;
}

export interface SearchHit {
  passageId: string;
  docId: string;
  chunkNo: number;
  title: string;
  text: string;
  /** dense/exact: cosine similarity; bm25: negated bm25() (higher is better); hybrid: RRF score. */
  score: number;
  metadata: Metadata;
  charStart: number;
  charEnd: number;
  /** Page range (paged formats) and heading path, when the document has them. */
  pageStart?: number;
  pageEnd?: number;
  section?: string[];
  /** In hybrid mode, the scores of the lists the passage came from. */
  components?: { dense?: number; bm25?: number };
}

export interface SearchResult {
  hits: SearchHit[];
  timings: { embedMs: number; searchMs: number };
}

/** Dense (HNSW), BM25, hybrid (RRF of both) and exact (brute-force) search over one collection. */
export class Retriever {
  constructor(
    private readonly store: PassageStore,
    private readonly embedder: QueryEmbedder,
    private readonly options: RetrieverOptions,
  ) {
    if (embedder.modelId !== store.embedModel || embedder.dim !== store.dim) {
      throw new EmbeddingMismatchError(store.location, store.embedModel, store.dim, embedder.modelId, embedder.dim);
    }
  }

  async search(query: string, options: SearchOptions = {}): Promise<SearchResult> {
    const mode = options.mode ?? this.options.defaultMode;
    if (!SEARCH_MODES.includes(mode)) throw new RangeError(`unknown search mode "${String(mode)}"`);
    const k = this.resolveK(options.k);
    if (query.trim() === '') return { hits: [], timings: { embedMs: 0, searchMs: 0 } };

    let embedMs = 0;
    let vector: Float32Array | undefined;
    if (mode !== 'bm25') {
      const started = performance.now();
      vector = await this.embedder.embedQuery(query);
      embedMs = performance.now() - started;
    }

    const started = performance.now();
    const ranked = await this.rank(query, vector, mode, k, options);
    const hits = await this.hydrate(ranked);
    return { hits, timings: { embedMs, searchMs: performance.now() - started } };
  }

  private resolveK(k: number | undefined): number {
    const value = k ?? this.options.defaultK;
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`k must be a positive integer, got ${value}`);
    return Math.min(value, this.options.maxK);
  }

  private rank(query: string, vector: Float32Array | undefined, mode: SearchMode, k: number, options: SearchOptions): Promise<RankedHit[]> {
    const filter = options.filter;
    const ef = options.ef;
    switch (mode) {
      case 'dense':
        return this.store.denseSearch(vector!, k, { filter, ef });
      case 'exact':
        return this.store.exactSearch(vector!, k, filter);
      case 'bm25':
        return this.bm25(query, k, filter);
      case 'hybrid':
        return this.hybrid(query, vector!, k, filter, ef);
    }
  }

  private async bm25(query: string, k: number, filter: SearchFilter | undefined): Promise<LabelScore[]> {
    const terms = queryTerms(query);
    if (terms.length === 0) return [];
    return this.store.bm25Search(terms, k, { filter, titleWeight: this.options.titleWeight, textWeight: this.options.textWeight });
  }

  private async hybrid(
    query: string,
    vector: Float32Array,
    k: number,
    filter: SearchFilter | undefined,
    ef: number | undefined,
  ): Promise<RankedHit[]> {
    const depth = Math.max(k, this.options.fusionDepth);
    // The graph search widens ef to at least the depth itself.
    const dense = await this.store.denseSearch(vector, depth, { filter, ef });
    const bm25 = await this.bm25(query, depth, filter);
    const denseScore = new Map(dense.map((d) => [d.label, d.score]));
    const bm25Score = new Map(bm25.map((b) => [b.label, b.score]));
    const fused = reciprocalRankFusion(
      [
        { labels: dense.map((d) => d.label), weight: this.options.denseWeight },
        { labels: bm25.map((b) => b.label), weight: this.options.bm25Weight },
      ],
      this.options.rrfK,
    );
    return fused.slice(0, k).map(({ label, score }) => ({
      label,
      score,
      components: { dense: denseScore.get(label), bm25: bm25Score.get(label) },
    }));
  }

  private async hydrate(ranked: RankedHit[]): Promise<SearchHit[]> {
    const records = await this.store.passagesByLabels(ranked.map((r) => r.label));
    const hits: SearchHit[] = [];
    for (const { label, score, components } of ranked) {
      // A concurrent writer may delete a passage between search and lookup; its label has no row any more.
      const p = records.get(label);
      if (!p) continue;
      const hit: SearchHit = {
        passageId: p.id,
        docId: p.docId,
        chunkNo: p.chunkNo,
        title: p.title,
        text: p.text,
        score,
        metadata: p.metadata,
        charStart: p.charStart,
        charEnd: p.charEnd,
        ...passageLocation(p),
      };
      if (components) hit.components = components;
      hits.push(hit);
    }
    return hits;
  }
}

interface RankedHit {
  label: number;
  score: number;
  components?: { dense?: number; bm25?: number };
}

/**
 * The optional page range, heading path and OCR confidence of a passage, as fields to spread into a response object.
 * The confidence is the passage's `ocrConfidence` metadata (text read by OCR) or, for a view that already carries it,
 * its own field.
 */
export function passageLocation(p: {
  pageStart?: number;
  pageEnd?: number;
  section?: string[];
  ocrConfidence?: number;
  metadata?: Metadata;
}): {
  pageStart?: number;
  pageEnd?: number;
  section?: string[];
  ocrConfidence?: number;
} {
  const stored = p.metadata?.ocrConfidence;
  const ocrConfidence = p.ocrConfidence ?? (typeof stored === 'number' ? stored : undefined);
  return {
    ...(p.pageStart !== undefined ? { pageStart: p.pageStart, pageEnd: p.pageEnd ?? p.pageStart } : {}),
    ...(p.section !== undefined && p.section.length > 0 ? { section: p.section } : {}),
    ...(ocrConfidence !== undefined ? { ocrConfidence } : {}),
  };
}
