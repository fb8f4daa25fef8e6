/**
 * Sampling for the decoding loop, with the semantics of Hugging Face's logits warpers in their order: temperature,
 * then top-k, then top-p (nucleus), then one draw from what is left, renormalised. Banned tokens (min new tokens,
 * no-repeat n-grams) are removed before any of them, as HF's processors run before its warpers.
 */
import type { Candidate, SamplingOptions } from './types.js';

export function validateSampling(s: SamplingOptions): void {
  if (!(Number.isFinite(s.temperature) && s.temperature >= 0)) throw new RangeError(`temperature must be >= 0, got ${s.temperature}`);
  if (!(Number.isInteger(s.topK) && s.topK >= 0)) throw new RangeError(`topK must be an integer >= 0, got ${s.topK}`);
  if (!(Number.isFinite(s.topP) && s.topP > 0 && s.topP <= 1)) throw new RangeError(`topP must be in (0, 1], got ${s.topP}`);
  if (s.seed !== undefined && !(Number.isSafeInteger(s.seed) && s.seed >= 0))
    throw new RangeError(`seed must be an integer >= 0, got ${s.seed}`);
}

export function isSampling(s: SamplingOptions | undefined): s is SamplingOptions {
  return s !== undefined && s.temperature > 0;
}

/**
 * The tokens a draw can pick and their probabilities, most likely first.
 * @param candidates every allowed token (or at least the topK best), largest logit first
 */
export function samplingDistribution(candidates: readonly Candidate[], s: SamplingOptions): { tokens: number[]; probs: Float64Array } {
  const kept = s.topK > 0 ? candidates.slice(0, s.topK) : candidates;
  if (kept.length === 0) throw new Error('no token to sample from');
  const max = kept[0]!.logit / s.temperature;
  const weights = new Float64Array(kept.length);
  let total = 0;
  for (let i = 0; i < kept.length; i++) total += weights[i] = Math.exp(kept[i]!.logit / s.temperature - max);
  // Nucleus: a token stays while the probability of the tokens before it is still below topP (HF removes the tokens
  // whose ascending cumulative probability is <= 1 - topP, which is the same set; the most likely always stays).
  let size = kept.length;
  if (s.topP < 1) {
    let before = 0;
    for (let i = 0; i < kept.length; i++) {
      if (i > 0 && before / total >= s.topP) {
        size = i;
        break;
      }
      before += weights[i]!;
    }
  }
  let keptTotal = 0;
  for (let i = 0; i < size; i++) keptTotal += weights[i]!;
  const probs = new Float64Array(size);
  for (let i = 0; i < size; i++) probs[i] = weights[i]! / keptTotal;
  return { tokens: kept.slice(0, size).map((c) => c.token), probs };
}

/** Picks index i with probability probs[i] by inverting the cumulative distribution at a uniform draw. */
export function drawIndex(probs: Float64Array, uniform: number): number {
  let cumulative = 0;
  for (let i = 0; i < probs.length; i++) {
    cumulative += probs[i]!;
    if (uniform < cumulative) return i;
  }
  // Rounding can leave the sum a hair below 1.
  return probs.length - 1;
}

/**
 * sfc32 (Chris Doty-Humphrey's Small Fast Counting generator, as in PractRand), seeded through splitmix32 from the two
 * 32-bit halves of the seed. Draws are doubles with 53 random bits.
 */
export class SeededRandom {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 4294967296) >>> 0;
    let state = (lo ^ Math.imul(hi, 0x9e3779b9)) >>> 0;
    const next = () => {
      state = (state + 0x9e3779b9) >>> 0;
      let z = state;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next() ^ hi;
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  nextUint32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1). */
  next(): number {
    const high = this.nextUint32() >>> 5;
    const low = this.nextUint32() >>> 6;
    return (high * 67108864 + low) / 9007199254740992;
  }
}
