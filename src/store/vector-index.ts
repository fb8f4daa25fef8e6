import type { LabelScore } from './types.js';

/**
 * An in-memory nearest-neighbour index over unit vectors, labelled by passage label. Two implementations share it:
 * `HnswIndex` (approximate, hnswlib) and `ExactIndex` (brute force), so recall is measured by building both from the
 * same vectors.
 */
export interface VectorIndex {
  readonly dim: number;
  /** Live (searchable) labels. */
  readonly size: number;
  has(label: number): boolean;
  /** Adds a vector under a label; a label that is already live is left as it is. */
  add(label: number, vector: Float32Array): void;
  /** Makes a label unsearchable; unknown labels are ignored. */
  remove(label: number): void;
  /** The k most similar live labels by cosine similarity (score = cosine), best first; `allow` filters inside. */
  search(vector: Float32Array, k: number, allow?: (label: number) => boolean): LabelScore[];
}
