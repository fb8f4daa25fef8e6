import { LazySlot } from '../common/lazy-slot.js';
import type { AppConfig } from '../config/index.js';
import { loadCrossEncoder } from '../models/index.js';
import {
  CrossEncoderReranker,
  rerankHits,
  type Reranker,
  type Retriever,
  type SearchFilter,
  type SearchHit,
  type SearchMode,
} from '../retrieval/index.js';
import type { ErrorKind } from '../common/errors.js';
import { ServiceError } from './errors.js';

export interface RerankParams {
  /** Candidates retrieved and scored by the cross-encoder; the best k of them are kept. */
  topN: number;
}

export interface RetrieveParams {
  k: number;
  /** The retriever's configured default when absent. */
  mode?: SearchMode;
  filter?: SearchFilter;
  rerank?: RerankParams;
}

export interface RetrievedHit extends SearchHit {
  /** Present when the hits were reranked; `score` is then the retrieval score still. */
  rerankScore?: number;
}

export interface RetrieveResult {
  hits: RetrievedHit[];
  timings: { embedMs: number; searchMs: number; rerankMs?: number };
}

/** The reranker could not be loaded (missing model files, a model without a one-logit head). */
export class RerankerUnavailableError extends ServiceError {
  override name = 'RerankerUnavailableError';
  override readonly kind: ErrorKind = 'unavailable';
  override readonly code: string = 'rerank_unavailable';
}

/** A request asked for more candidates than it may, or fewer than it keeps. */
export class InvalidRerankError extends ServiceError {
  override name = 'InvalidRerankError';
  override readonly kind: ErrorKind = 'invalid';
  override readonly code: string = 'invalid_request';
  override readonly field = 'rerank.topN';
}

/**
 * The cross-encoder, loaded once on first use (or at start-up with rerank.loadOnStart): most deployments never rerank,
 * and a server must not refuse to start over a model only some requests use. A failed load is not remembered, so
 * adding the model files later works without a restart.
 */
export class RerankerSlot {
  private readonly slot: LazySlot<Promise<Reranker>>;

  constructor(load: () => Promise<Reranker>) {
    this.slot = new LazySlot(() =>
      load().catch((err: unknown) => {
        throw new RerankerUnavailableError(`reranking is unavailable: ${(err as Error).message}`);
      }),
    );
  }

  static fromConfig(config: AppConfig): RerankerSlot {
    return new RerankerSlot(
      async () =>
        new CrossEncoderReranker(await loadCrossEncoder(config), {
          batchSize: config.rerank.batchSize,
          batchTokens: config.rerank.batchTokens,
        }),
    );
  }

  get(): Promise<Reranker> {
    return this.slot.get();
  }
}

/** Retrieval, then (when asked) cross-encoder reranking of topN candidates down to k. */
export async function retrieve(
  retriever: Retriever,
  reranker: RerankerSlot,
  query: string,
  params: RetrieveParams,
  signal?: AbortSignal,
): Promise<RetrieveResult> {
  const { rerank } = params;
  if (!rerank) return retriever.search(query, { k: params.k, mode: params.mode, filter: params.filter });
  if (rerank.topN < params.k) throw new InvalidRerankError(`rerank.topN (${rerank.topN}) must be at least k (${params.k})`);
  const model = await reranker.get();
  const { hits, timings } = await retriever.search(query, { k: rerank.topN, mode: params.mode, filter: params.filter });
  signal?.throwIfAborted();
  const reranked = await rerankHits(model, query, hits, params.k, signal);
  return { hits: reranked.hits, timings: { ...timings, rerankMs: reranked.rerankMs } };
}
