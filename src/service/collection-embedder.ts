import type { IngestEmbedder, TokenBudget } from '../ingest/index.js';
import type { EmbeddingModel } from '../models/index.js';
import type { QueryEmbedder } from '../retrieval/index.js';
import { EmbeddingMismatchError } from '../store/index.js';

/**
 * A collection's embedding model as its manifest records it (model and dimension), loaded on the first operation
 * that needs it: a query embedding (dense, hybrid, exact search), or cutting and embedding a new or changed document.
 * BM25 searches, deletes and re-ingests of unchanged documents never load it, so tools doing only those run without
 * the model files. `load` shares one model per process and forgets a failed load, so a later operation retries.
 */
export class CollectionEmbedder implements QueryEmbedder, IngestEmbedder {
  constructor(
    readonly modelId: string,
    readonly dim: number,
    /** The collection, for the message when the files under the model's name hold another model. */
    private readonly location: string,
    private readonly load: (model: string) => Promise<EmbeddingModel>,
  ) {}

  /** The loaded model; one whose dimension is not the collection's is refused before it embeds anything. */
  async model(): Promise<EmbeddingModel> {
    const embedder = await this.load(this.modelId);
    if (embedder.modelId !== this.modelId || embedder.dim !== this.dim) {
      throw new EmbeddingMismatchError(this.location, this.modelId, this.dim, embedder.modelId, embedder.dim);
    }
    return embedder;
  }

  tokenization(): Promise<TokenBudget> {
    return this.model();
  }

  async embedQuery(text: string): Promise<Float32Array> {
    return (await this.model()).embedQuery(text);
  }

  async embedPassages(texts: string[]): Promise<Float32Array[]> {
    return (await this.model()).embedPassages(texts);
  }
}
