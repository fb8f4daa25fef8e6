/**
 * Reranking: a second, more expensive look at the top retrieval candidates. Retrieval fetches topN passages, a reranker
 * scores every (query, passage) pair, and the best k by that score are kept.
 */

import { yieldToEventLoop } from '../common/yield.js';

export interface Reranker {
  readonly modelId: string;
  /** One relevance score per passage, aligned with `passages`; higher is more relevant. */
  score(query: string, passages: readonly string[], signal?: AbortSignal): Promise<Float32Array>;
}

/** What CrossEncoderReranker needs of a cross-encoder model (src/models' CrossEncoder satisfies it). */
export interface PairScorer {
  readonly modelId: string;
  tokenize(text: string): number[];
  pair(query: readonly number[], passage: readonly number[]): { ids: number[]; firstSegment: number };
  scoreBatch(pairs: ReadonlyArray<{ ids: number[]; firstSegment: number }>): Promise<Float32Array>;
}

export interface CrossEncoderRerankerOptions {
  /** Most pairs per model run. */
  batchSize: number;
  /**
   * Most tokens per model run, padding included (pairs × longest pair); a single longer pair still runs alone. A run
   * holds the event loop (onnxruntime-node runs on its thread), so this bounds how long one reranking blocks others.
   */
  batchTokens: number;
}

/**
 * Scores pairs with a cross-encoder in batches of similar length (sorted by token count, so short passages do not pay
 * for long ones' padding), yielding to the event loop between batches and stopping when the signal aborts.
 */
export class CrossEncoderReranker implements Reranker {
  constructor(
    private readonly model: PairScorer,
    private readonly options: CrossEncoderRerankerOptions,
  ) {
    if (!(Number.isInteger(options.batchSize) && options.batchSize >= 1))
      throw new RangeError(`batchSize must be >= 1, got ${options.batchSize}`);
    if (!(options.batchTokens >= 1)) throw new RangeError(`batchTokens must be >= 1, got ${options.batchTokens}`);
  }

  get modelId(): string {
    return this.model.modelId;
  }

  async score(query: string, passages: readonly string[], signal?: AbortSignal): Promise<Float32Array> {
    const scores = new Float32Array(passages.length);
    if (passages.length === 0) return scores;
    const queryIds = this.model.tokenize(query);
    const pairs = passages.map((p) => this.model.pair(queryIds, this.model.tokenize(p)));
    const order = pairs.map((_, i) => i).sort((a, b) => pairs[a]!.ids.length - pairs[b]!.ids.length);
    for (let start = 0; start < order.length;) {
      signal?.throwIfAborted();
      // Sorted by length, so the pair being added is the batch's longest: the padded size is count × its length.
      let end = start + 1;
      while (
        end < order.length &&
        end - start < this.options.batchSize &&
        (end - start + 1) * pairs[order[end]!]!.ids.length <= this.options.batchTokens
      ) {
        end++;
      }
      const batch = order.slice(start, end);
      start = end;
      const batchScores = await this.model.scoreBatch(batch.map((i) => pairs[i]!));
      batch.forEach((i, j) => (scores[i] = batchScores[j]!));
      await yieldToEventLoop();
    }
    signal?.throwIfAborted();
    return scores;
  }
}

export interface RerankResult<T> {
  /** The best k candidates by rerank score (ties keep retrieval order), each with its rerank score. */
  hits: Array<T & { rerankScore: number }>;
  rerankMs: number;
}

/** Scores `candidates` (in retrieval order) against the query and keeps the best k. */
export async function rerankHits<T extends { text: string }>(
  reranker: Reranker,
  query: string,
  candidates: readonly T[],
  k: number,
  signal?: AbortSignal,
): Promise<RerankResult<T>> {
  const started = performance.now();
  const scores = await reranker.score(
    query,
    candidates.map((c) => c.text),
    signal,
  );
  const hits = candidates
    .map((c, i) => ({ ...c, rerankScore: scores[i]!, rank: i }))
    .sort((a, b) => b.rerankScore - a.rerankScore || a.rank - b.rank)
    .slice(0, k)
    .map(({ rank: _rank, ...hit }) => hit as T & { rerankScore: number });
  return { hits, rerankMs: performance.now() - started };
}
