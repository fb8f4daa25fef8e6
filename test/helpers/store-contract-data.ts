/** Synthetic documents and vectors of the storage contract suite (no vitest here: a child process imports it). */
import type { DocumentWrite } from '../../src/store/index.js';
import { DEFAULTS } from './store.js';

export const CONTRACT_MODEL = 'contract/synthetic-32';
export const CONTRACT_DIM = 32;

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const rand = prng(7);
const CENTRES = Array.from({ length: 6 }, () => Float32Array.from({ length: CONTRACT_DIM }, () => rand() * 2 - 1));

/** A deterministic vector near one of a few centres, as text embeddings cluster by topic. */
export function contractVector(seed: number): Float32Array {
  const r = prng(seed * 7919 + 13);
  const centre = CENTRES[seed % CENTRES.length]!;
  return Float32Array.from(centre, (c) => c + 0.5 * (r() * 2 - 1));
}

/** A document with `passages` passages; each passage's text carries a unique word `w<doc>p<i>` and the doc's word. */
export function contractDocument(id: string, seed: number, passages = 3, metadata: Record<string, unknown> = {}): DocumentWrite {
  const word = `doc${id.replace(/[^a-z0-9]/gi, '')}`;
  return {
    document: { id, title: `Title ${id}`, contentHash: `hash-${id}-${seed}`, chunking: 'contract', metadata },
    passages: Array.from({ length: passages }, (_, i) => ({
      id: `${id}#${i}`,
      chunkNo: i,
      title: `Title ${id}`,
      text: `Passage ${i} of ${word} mentions w${seed}p${i} and the shared river.`,
      metadata,
      charStart: i * 10,
      charEnd: i * 10 + 9,
      vector: contractVector(seed * 100 + i),
    })),
  };
}

export function contractOpenOptions(extra: { readonly?: boolean; create?: boolean; exactFilterThreshold?: number } = {}) {
  return {
    embedModel: CONTRACT_MODEL,
    dim: CONTRACT_DIM,
    hnsw: DEFAULTS.hnsw,
    chunk: DEFAULTS.chunk,
    readonly: extra.readonly ?? false,
    create: extra.create ?? !(extra.readonly ?? false),
    exactFilterThreshold: extra.exactFilterThreshold ?? DEFAULTS.retrieval.exactFilterThreshold,
  };
}
