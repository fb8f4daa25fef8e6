import ort from 'onnxruntime-node';
import { AutoTokenizer, type PreTrainedTokenizer } from '@xenova/transformers';
import { createSession, readOnnxFile, UnsupportedModelFileError, type SessionLike, type SessionThreads } from './onnx-session.js';
import { downloadProgress, encoderInputLimit, locateModel, ModelNotFoundError, readModelJson, type ModelLocation } from './resolve.js';

export interface CrossEncoderOptions {
  modelsDir: string;
  allowRemote: boolean;
  hubUrl?: string;
  quantized: boolean;
  /** Pair length limit in tokens; default: the tokenizer's model_max_length when sane, else max_position_embeddings. */
  maxTokens?: number;
  threads?: SessionThreads;
}

/** A (query, passage) pair as the model reads it: `[CLS] query [SEP] passage [SEP]`, segment ids 0 then 1. */
export interface EncodedPair {
  ids: number[];
  /** Tokens of the first segment ([CLS], query, [SEP]); the rest is segment 1. */
  firstSegment: number;
}

/**
 * A sequence-classification model with one output logit (BertForSequenceClassification exports such as
 * Xenova/ms-marco-MiniLM-L-6-v2): scores how relevant a passage is to a query by reading both together.
 */
export class CrossEncoder {
  /** Cumulative wall time inside session.run(). */
  onnxRunMs = 0;

  private constructor(
    readonly modelId: string,
    readonly location: ModelLocation,
    readonly tokenizer: PreTrainedTokenizer,
    private readonly session: SessionLike,
    readonly maxTokens: number,
    private readonly clsId: number,
    private readonly sepId: number,
    private readonly padId: number,
  ) {}

  static async load(name: string, opts: CrossEncoderOptions): Promise<CrossEncoder> {
    const location = locateModel(name, { ...opts, onnxFiles: ['model'] });
    try {
      const progress_callback = location.source === 'hub' ? downloadProgress() : undefined;
      const config = (await readModelJson(location, 'config.json')) ?? {};
      const labels = Object.keys((config.id2label ?? {}) as Record<string, unknown>).length;
      if (labels !== 1) {
        throw new Error(`a reranker needs a one-logit classification head; config.json lists ${labels || 'no'} labels (id2label)`);
      }
      const tokenizer = await AutoTokenizer.from_pretrained(location.id, { progress_callback });
      // The project's own session, like the embedder's: configured threads and the ONNX IR check.
      const { bytes, file } = await readOnnxFile(location, 'model', opts.quantized, progress_callback);
      const session: SessionLike = await createSession(bytes, file, opts.threads);
      if (!session.outputNames.includes('logits'))
        throw new Error(`the ONNX model has no "logits" output (outputs: ${session.outputNames.join(', ')})`);
      const t = tokenizer as unknown as { pad_token_id?: number };
      const maxTokens = opts.maxTokens ?? encoderInputLimit(tokenizer, config.max_position_embeddings);
      if (!maxTokens) throw new Error('cannot tell the maximum input length; set rerank.maxTokens in the config file');
      // The tokenizer's own pair template gives the special tokens (whatever the model calls them).
      const template = tokenizer.encode('', '', { add_special_tokens: true });
      if (template.length !== 3) throw new Error(`expected a [CLS] a [SEP] b [SEP] pair template, got ${template.length} special tokens`);
      const [clsId, sepId] = template as [number, number, number];
      const padId = Number(t.pad_token_id ?? config.pad_token_id ?? 0);
      return new CrossEncoder(name, location, tokenizer, session, maxTokens, clsId, sepId, padId);
    } catch (err) {
      if (err instanceof ModelNotFoundError || err instanceof UnsupportedModelFileError) throw err;
      throw new ModelNotFoundError(
        name,
        location.triedPaths,
        `loading from ${location.source} failed: ${(err as Error).message}`,
        opts.allowRemote,
      );
    }
  }

  /** Token ids of a text without special tokens (tokenise once, pair with many). */
  tokenize(text: string): number[] {
    return this.tokenizer.encode(text, null, { add_special_tokens: false });
  }

  /**
   * Joins query and passage tokens, truncating the longer side one token at a time until the pair fits ("longest
   * first", as sentence-transformers' CrossEncoder asks of the tokenizer).
   */
  pair(query: readonly number[], passage: readonly number[]): EncodedPair {
    const budget = Math.max(this.maxTokens - 3, 0);
    let q = query.length;
    let p = passage.length;
    if (q + p > budget) {
      // Longest first, computed in closed form: cut the longer down to the shorter, then alternate.
      const excess = q + p - budget;
      const diff = Math.abs(q - p);
      const fromLonger = Math.min(excess, diff);
      if (q > p) q -= fromLonger;
      else p -= fromLonger;
      const rest = excess - fromLonger;
      q -= Math.floor(rest / 2);
      p -= rest - Math.floor(rest / 2);
    }
    return { ids: [this.clsId, ...query.slice(0, q), this.sepId, ...passage.slice(0, p), this.sepId], firstSegment: q + 2 };
  }

  /** One relevance logit per pair, from one padded batch. */
  async scoreBatch(pairs: readonly EncodedPair[]): Promise<Float32Array> {
    const rows = pairs.length;
    if (rows === 0) return new Float32Array(0);
    const cols = Math.max(...pairs.map((p) => p.ids.length));
    const inputIds = new BigInt64Array(rows * cols).fill(BigInt(this.padId));
    const mask = new BigInt64Array(rows * cols);
    const types = new BigInt64Array(rows * cols);
    pairs.forEach((pair, r) => {
      for (let c = 0; c < pair.ids.length; c++) {
        inputIds[r * cols + c] = BigInt(pair.ids[c]!);
        mask[r * cols + c] = 1n;
        if (c >= pair.firstSegment) types[r * cols + c] = 1n;
      }
    });
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', inputIds, [rows, cols]),
      attention_mask: new ort.Tensor('int64', mask, [rows, cols]),
    };
    if (this.session.inputNames.includes('token_type_ids')) feeds.token_type_ids = new ort.Tensor('int64', types, [rows, cols]);
    const started = performance.now();
    const out = await this.session.run(feeds);
    this.onnxRunMs += performance.now() - started;
    const logits = out.logits;
    if (!logits || logits.dims.length !== 2 || logits.dims[0] !== rows || logits.dims[1] !== 1) {
      throw new Error(`cross-encoder ${this.modelId} returned logits of shape [${logits?.dims.join(', ')}], expected [${rows}, 1]`);
    }
    return Float32Array.from(logits.data as Float32Array);
  }
}
