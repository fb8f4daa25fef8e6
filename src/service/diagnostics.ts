import type { EmbeddingModel } from '../models/index.js';

/**
 * What benchmarks and tests read beside the service's answers: not part of the facade's API (src/api never uses it).
 * The service exposes it as `diagnostics`.
 */
export interface ServiceDiagnostics {
  /** Milliseconds the embedding models have spent inside onnxruntime run() so far. */
  readonly embedOnnxMs: number;
}

/** Diagnostics over the embedding models loaded so far (the composition root's list). */
export function embedderDiagnostics(embedders: () => readonly EmbeddingModel[]): ServiceDiagnostics {
  return {
    get embedOnnxMs(): number {
      return embedders().reduce((sum, e) => sum + e.onnxRunMs, 0);
    },
  };
}
