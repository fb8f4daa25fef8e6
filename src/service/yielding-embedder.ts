import { yieldToEventLoop } from '../common/yield.js';
import type { IngestEmbedder, TokenBudget } from '../ingest/index.js';

/**
 * onnxruntime-node runs each batch synchronously inside a nextTick, so embedding a large write batch in one call would
 * keep searches and answers waiting until it ends. This wrapper feeds the embedder one batch at a time and yields a
 * macrotask in between, so other requests run between batches; it also stops a cancelled write before its commit.
 */
export class YieldingEmbedder implements IngestEmbedder {
  constructor(
    private readonly inner: IngestEmbedder,
    private readonly batchSize: number,
    private readonly signal?: AbortSignal,
  ) {}

  get modelId(): string {
    return this.inner.modelId;
  }
  get dim(): number {
    return this.inner.dim;
  }
  tokenization(): Promise<TokenBudget> {
    return this.inner.tokenization();
  }

  async embedPassages(texts: string[]): Promise<Float32Array[]> {
    // Similar lengths share a batch, as inside the embedder, so short passages do not pay for long ones' padding.
    const order = texts.map((_, i) => i).sort((a, b) => texts[a]!.length - texts[b]!.length);
    const out = new Array<Float32Array>(texts.length);
    for (let start = 0; start < order.length; start += this.batchSize) {
      await yieldToEventLoop();
      this.signal?.throwIfAborted();
      const batch = order.slice(start, start + this.batchSize);
      const vectors = await this.inner.embedPassages(batch.map((i) => texts[i]!));
      batch.forEach((i, j) => (out[i] = vectors[j]!));
    }
    return out;
  }
}
