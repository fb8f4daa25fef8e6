import type { LabelScore } from './types.js';
import type { VectorIndex } from './vector-index.js';
import { dot, normalized, TopK } from './vectors.js';

/** Top k of `entries` by dot product with `unitQuery`; shared by the exact index and the engines' exact scans. */
export function exactTopK(unitQuery: Float32Array, entries: Iterable<readonly [number, Float32Array]>, k: number): LabelScore[] {
  const top = new TopK(k);
  for (const [label, vector] of entries) top.offer(label, dot(unitQuery, vector));
  return top.result();
}

/** Brute-force cosine search over vectors held in memory: the reference the HNSW index is measured against. */
export class ExactIndex implements VectorIndex {
  private readonly vectors = new Map<number, Float32Array>();

  constructor(readonly dim: number) {}

  get size(): number {
    return this.vectors.size;
  }

  has(label: number): boolean {
    return this.vectors.has(label);
  }

  add(label: number, vector: Float32Array): void {
    if (vector.length !== this.dim) throw new RangeError(`vector has ${vector.length} dimensions, index holds ${this.dim}`);
    if (!this.vectors.has(label)) this.vectors.set(label, normalized(vector));
  }

  remove(label: number): void {
    this.vectors.delete(label);
  }

  search(vector: Float32Array, k: number, allow?: (label: number) => boolean): LabelScore[] {
    if (k <= 0) return [];
    const entries = allow ? [...this.vectors].filter(([label]) => allow(label)) : this.vectors;
    return exactTopK(normalized(vector), entries, k);
  }
}
