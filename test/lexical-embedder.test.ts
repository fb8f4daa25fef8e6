import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { lexicalVector } from '../src/models/index.js';

const DIM = 512;
const dot = (a: Float32Array, b: Float32Array) => a.reduce((sum, v, i) => sum + v * b[i]!, 0);

describe("lexical vectors (the offline start's weightless embedding)", () => {
  it('are unit-norm, or all zeros for a text without content words', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        const v = lexicalVector(text, DIM);
        const norm = dot(v, v);
        expect(norm === 0 || Math.abs(norm - 1) < 1e-5).toBe(true);
      }),
    );
    expect(dot(lexicalVector('the of and, to a!', DIM), lexicalVector('the of and, to a!', DIM))).toBe(0);
  });

  it('depend on the words alone: case, Unicode form, punctuation, stop words and order do not change them', () => {
    const a = lexicalVector('Reciprocal rank fusion merges two rankings.', DIM);
    const b = lexicalVector('two RANKINGS: the fusion of reciprocal rank merges', DIM);
    expect(dot(a, b)).toBeCloseTo(1, 5);
    expect(dot(lexicalVector('café', DIM), lexicalVector('cafe\u0301', DIM))).toBeCloseTo(1, 5);
  });

  it("rank a passage sharing the query's words above one that does not", () => {
    const query = lexicalVector('how does BM25 score passages', DIM);
    const relevant = lexicalVector('BM25 scores passages by term frequency and inverse document frequency.', DIM);
    const other = lexicalVector('The HNSW graph links each vector to its nearest neighbours.', DIM);
    expect(dot(query, relevant)).toBeGreaterThan(dot(query, other) + 0.2);
  });

  it('are the same on every run and machine (stored vectors depend on it)', () => {
    const v = lexicalVector('fusion in decoder', DIM);
    const nonZero = [...v.entries()].filter(([, x]) => x !== 0).map(([i, x]) => [i, Number(x.toFixed(4))]);
    // "in" is a stop word; FNV-1a puts "fusion" in bucket 263 with sign +, "decoder" in 445 with sign -.
    expect(nonZero).toEqual([
      [263, 0.7071],
      [445, -0.7071],
    ]);
  });
});
