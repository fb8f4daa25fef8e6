import ort from 'onnxruntime-node';
import { AutoTokenizer, type PreTrainedTokenizer } from '@xenova/transformers';
import { knownEmbeddingModel } from './known-models.js';
import { createSession, readOnnxFile, UnsupportedModelFileError, type SessionLike, type SessionThreads } from './onnx-session.js';
import { downloadProgress, encoderInputLimit, locateModel, ModelNotFoundError, readModelJson, type ModelLocation } from './resolve.js';

export type Pooling = 'mean' | 'cls';

export interface EmbedderOptions {
  modelsDir: string;
  allowRemote: boolean;
  hubUrl?: string;
  quantized: boolean;
  /** Most texts per model run. */
  batchSize: number;
  /**
   * Most tokens per model run, padding included (rows × longest row): with texts sorted by length, short texts are
   * batched many at a time and long ones few, which measured fastest in both precisions under load (docs/benchmarks.md, embedding).
   * Undefined: batches of `batchSize` whatever their length.
   */
  batchTokens?: number;
  /** onnxruntime threading of the session; undefined leaves onnxruntime's default. */
  threads?: SessionThreads;
  /** Explicit settings win over the model's files and the known-model table. */
  pooling?: Pooling;
  queryPrefix?: string;
  passagePrefix?: string;
  maxTokens?: number;
}

interface EmbeddingSettings {
  pooling: Pooling;
  queryPrefix: string;
  passagePrefix: string;
  maxTokens: number;
  dim: number;
}

/** What the service asks of an embedding model: the neural `Embedder` below, or the weightless `LexicalEmbedder`. */
export interface EmbeddingModel {
  readonly modelId: string;
  readonly dim: number;
  readonly maxTokens: number;
  readonly tokenizer: PreTrainedTokenizer;
  /** Where the weights came from: a local folder, the hub, or none needed. */
  readonly source: 'local' | 'hub' | 'built-in';
  /** Cumulative wall time inside onnxruntime's run(), for benchmarks. */
  readonly onnxRunMs: number;
  tokenization(): Promise<{ tokenizer: PreTrainedTokenizer; maxTokens: number }>;
  embedQuery(text: string): Promise<Float32Array>;
  embedPassages(texts: string[]): Promise<Float32Array[]>;
}

/**
 * Sentence embeddings for passages and queries: unit-norm vectors from mean or CLS pooling, batched with
 * batches sorted by length so short passages do not pay for long ones' padding.
 */
export class Embedder implements EmbeddingModel {
  /** Cumulative wall time inside the ONNX session's run(), for benchmarks that separate model time from ours. */
  onnxRunMs = 0;

  private constructor(
    readonly modelId: string,
    readonly location: ModelLocation,
    readonly tokenizer: PreTrainedTokenizer,
    private readonly session: SessionLike,
    private readonly settings: EmbeddingSettings,
    private readonly batching: { batchSize: number; batchTokens?: number },
  ) {}

  get source(): 'local' | 'hub' {
    return this.location.source;
  }
  get dim(): number {
    return this.settings.dim;
  }
  get maxTokens(): number {
    return this.settings.maxTokens;
  }
  get pooling(): Pooling {
    return this.settings.pooling;
  }
  get queryPrefix(): string {
    return this.settings.queryPrefix;
  }
  get passagePrefix(): string {
    return this.settings.passagePrefix;
  }

  static async load(name: string, opts: EmbedderOptions): Promise<Embedder> {
    const location = locateModel(name, { ...opts, onnxFiles: ['model'] });
    try {
      const progress_callback = location.source === 'hub' ? downloadProgress() : undefined;
      const tokenizer = await AutoTokenizer.from_pretrained(location.id, { progress_callback });
      const { bytes, file } = await readOnnxFile(location, 'model', opts.quantized, progress_callback);
      const session = await createSession(bytes, file, opts.threads);
      const settings = await resolveSettings(name, location, tokenizer, opts);
      return new Embedder(name, location, tokenizer, session, settings, { batchSize: opts.batchSize, batchTokens: opts.batchTokens });
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

  /** The tokenizer and input limit, for consumers that also accept a model not loaded yet (the ingest pipeline). */
  async tokenization(): Promise<{ tokenizer: PreTrainedTokenizer; maxTokens: number }> {
    return { tokenizer: this.tokenizer, maxTokens: this.maxTokens };
  }

  /** Token ids as the model sees them: with special tokens, truncated to the model's limit keeping the final [SEP]. */
  encode(text: string): number[] {
    const ids = this.tokenizer.encode(text);
    if (ids.length <= this.settings.maxTokens) return ids;
    const last = ids[ids.length - 1]!;
    return [...ids.slice(0, this.settings.maxTokens - 1), last];
  }

  async embedPassages(texts: string[]): Promise<Float32Array[]> {
    return this.embedTexts(texts.map((t) => this.settings.passagePrefix + t));
  }

  async embedQuery(text: string): Promise<Float32Array> {
    const [vector] = await this.embedTexts([this.settings.queryPrefix + text]);
    return vector!;
  }

  async embedTexts(texts: string[]): Promise<Float32Array[]> {
    const encoded = texts.map((t) => this.encode(t));
    const order = encoded.map((_, i) => i).sort((a, b) => encoded[a]!.length - encoded[b]!.length);
    const out = new Array<Float32Array>(texts.length);
    for (const batch of planBatches(
      order.map((i) => encoded[i]!.length),
      this.batching,
    )) {
      const rows = batch.map((k) => order[k]!);
      const vectors = await this.runBatch(rows.map((i) => encoded[i]!));
      rows.forEach((i, j) => (out[i] = vectors[j]!));
    }
    return out;
  }

  private async runBatch(batch: number[][]): Promise<Float32Array[]> {
    const rows = batch.length;
    const cols = Math.max(...batch.map((ids) => ids.length));
    const inputIds = new BigInt64Array(rows * cols);
    const mask = new BigInt64Array(rows * cols);
    batch.forEach((ids, r) => {
      for (let c = 0; c < ids.length; c++) {
        inputIds[r * cols + c] = BigInt(ids[c]!);
        mask[r * cols + c] = 1n;
      }
    });
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', inputIds, [rows, cols]),
      attention_mask: new ort.Tensor('int64', mask, [rows, cols]),
    };
    if (this.session.inputNames.includes('token_type_ids')) {
      feeds.token_type_ids = new ort.Tensor('int64', new BigInt64Array(rows * cols), [rows, cols]);
    }
    const started = performance.now();
    const output = await this.session.run(feeds);
    this.onnxRunMs += performance.now() - started;
    const hidden = output.last_hidden_state ?? Object.values(output)[0];
    if (!hidden) throw new Error(`embedding model ${this.modelId} returned no output`);
    const dim = hidden.dims[2]!;
    if (dim !== this.settings.dim) {
      throw new Error(`embedding model ${this.modelId} returned ${dim}-d vectors but its config says ${this.settings.dim}`);
    }
    return pool(hidden.data as Float32Array, batch, cols, dim, this.settings.pooling);
  }
}

/**
 * Splits texts sorted by ascending length into consecutive batches of at most `batchSize` rows whose padded size
 * (rows × longest) stays within `batchTokens`; a text longer than the budget runs alone. Returns index lists.
 */
export function planBatches(sortedLengths: readonly number[], limits: { batchSize: number; batchTokens?: number }): number[][] {
  const batches: number[][] = [];
  let current: number[] = [];
  for (let i = 0; i < sortedLengths.length; i++) {
    const longest = sortedLengths[i]!;
    const fits =
      current.length < limits.batchSize && (limits.batchTokens === undefined || (current.length + 1) * longest <= limits.batchTokens);
    if (!fits && current.length > 0) {
      batches.push(current);
      current = [];
    }
    current.push(i);
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

/** Pools each row's valid positions and L2-normalises, so cosine similarity is a dot product downstream. */
function pool(data: Float32Array, batch: number[][], cols: number, dim: number, pooling: Pooling): Float32Array[] {
  return batch.map((ids, r) => {
    const v = new Float32Array(dim);
    const rowBase = r * cols * dim;
    if (pooling === 'cls') {
      v.set(data.subarray(rowBase, rowBase + dim));
    } else {
      for (let t = 0; t < ids.length; t++) {
        const base = rowBase + t * dim;
        for (let d = 0; d < dim; d++) v[d]! += data[base + d]!;
      }
      for (let d = 0; d < dim; d++) v[d]! /= ids.length;
    }
    let norm = 0;
    for (let d = 0; d < dim; d++) norm += v[d]! * v[d]!;
    norm = Math.sqrt(norm) || 1;
    for (let d = 0; d < dim; d++) v[d]! /= norm;
    return v;
  });
}

/**
 * Pooling, prefixes and length limit, from (in order) explicit config, the model's sentence-transformers files, the
 * known-model table. An embedding model we know nothing about is an error rather than a guessed pooling.
 */
async function resolveSettings(
  name: string,
  location: ModelLocation,
  tokenizer: PreTrainedTokenizer,
  opts: EmbedderOptions,
): Promise<EmbeddingSettings> {
  const config = (await readModelJson(location, 'config.json')) ?? {};
  const poolingConfig = await readModelJson(location, '1_Pooling/config.json');
  const stConfig = await readModelJson(location, 'config_sentence_transformers.json');
  const known = knownEmbeddingModel(name);

  const filePooling: Pooling | undefined = poolingConfig
    ? poolingConfig.pooling_mode_cls_token
      ? 'cls'
      : poolingConfig.pooling_mode_mean_tokens
        ? 'mean'
        : undefined
    : undefined;
  const pooling = opts.pooling ?? filePooling ?? known?.pooling;
  if (!pooling) {
    throw new Error(
      `cannot tell how to pool "${name}": it has no 1_Pooling/config.json and is not in the known-model table; ` +
        `set embedding.pooling ("mean" or "cls") in the config file`,
    );
  }
  const prompts = (stConfig?.prompts ?? {}) as Record<string, unknown>;
  const stringOr = (v: unknown) => (typeof v === 'string' ? v : undefined);

  const maxTokens = opts.maxTokens ?? encoderInputLimit(tokenizer, config.max_position_embeddings);
  if (!maxTokens) {
    throw new Error(`cannot tell the maximum input length of "${name}"; set embedding.maxTokens in the config file`);
  }
  const dim = Number(config.hidden_size ?? config.d_model);
  if (!Number.isInteger(dim) || dim <= 0) throw new Error(`config.json of "${name}" has no hidden_size`);

  return {
    pooling,
    queryPrefix: opts.queryPrefix ?? stringOr(prompts.query) ?? known?.queryPrefix ?? '',
    passagePrefix: opts.passagePrefix ?? stringOr(prompts.passage) ?? stringOr(prompts.document) ?? known?.passagePrefix ?? '',
    maxTokens,
    dim,
  };
}
