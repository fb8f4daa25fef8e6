import type { PreTrainedTokenizer } from '@xenova/transformers';
import type { EmbeddingModel } from './embedder.js';

/**
 * The embedding model name a collection records when its vectors come from `LexicalEmbedder`; like a neural model's
 * name it fixes what every later vector of the collection must be.
 */
export const LEXICAL_EMBED_MODEL = 'lexical-hash-512';
const LEXICAL_DIM = 512;

// Without corpus statistics the commonest English words would dominate every cosine; these carry no topic.
const STOPWORDS = new Set(
  (
    'a an and are as at be but by can did do does for from had has have how i if in into is it its of on or that the their ' +
    'them there these they this to was were what when where which who whom why will with you your'
  ).split(' '),
);

const WORD = /[\p{L}\p{N}]+/gu;

/** FNV-1a over the UTF-16 code units: stable across runs and machines, as stored vectors require. */
function fnv1a(word: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < word.length; i++) {
    h ^= word.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * A weightless embedding: the words of a text (NFKC, lower-cased, stop words dropped) feature-hashed into 512 signed
 * buckets, each weighted 1 + ln(count), the vector unit-normed, so the inner product is a lexical cosine. It is what a
 * collection gets when no embedding model can be loaded (the offline start), so the store's contract, a vector for
 * every passage, holds and dense search still means something, though BM25 is what that start retrieves with.
 * Passages are cut with the reader's tokenizer, so they fit the reader's input.
 */
export class LexicalEmbedder implements EmbeddingModel {
  readonly modelId = LEXICAL_EMBED_MODEL;
  readonly dim = LEXICAL_DIM;
  readonly source = 'built-in';
  readonly onnxRunMs = 0;

  constructor(
    /** Cuts passages: the reader's tokenizer, whose input these passages become. */
    readonly tokenizer: PreTrainedTokenizer,
    readonly maxTokens: number,
  ) {}

  async tokenization(): Promise<{ tokenizer: PreTrainedTokenizer; maxTokens: number }> {
    return { tokenizer: this.tokenizer, maxTokens: this.maxTokens };
  }

  async embedQuery(text: string): Promise<Float32Array> {
    return lexicalVector(text, this.dim);
  }

  async embedPassages(texts: string[]): Promise<Float32Array[]> {
    return texts.map((t) => lexicalVector(t, this.dim));
  }
}

/** The hashed, weighted, unit-norm word vector of `text` (all zeros for a text without content words). */
export function lexicalVector(text: string, dim: number): Float32Array {
  const counts = new Map<string, number>();
  for (const [word] of text.normalize('NFKC').toLowerCase().matchAll(WORD)) {
    if (!STOPWORDS.has(word)) counts.set(word, (counts.get(word) ?? 0) + 1);
  }
  const vector = new Float32Array(dim);
  for (const [word, count] of counts) {
    const h = fnv1a(word);
    vector[h % dim]! += (h & 0x80000000 ? -1 : 1) * (1 + Math.log(count));
  }
  let norm = 0;
  for (const v of vector) norm += v * v;
  if (norm > 0) {
    const scale = 1 / Math.sqrt(norm);
    for (let i = 0; i < dim; i++) vector[i]! *= scale;
  }
  return vector;
}
