import { createSession, onnxFile, type Seq2SeqModel } from '../models/index.js';
import { isDecoderPatchInfo, prepareDecoderGraph } from './attention-patch.js';
import {
  attributeFromCrossAttention,
  CrossAttentionTracer,
  traceRows,
  type Attribution,
  type AttributionDetail,
  type AttentionTraceNode,
} from './attribution.js';
import { MergedDecoder } from './decoder-session.js';
import {
  buildConcatPlan,
  buildEncoderPlan,
  encodeToMemory,
  memoryWithoutPassage,
  PieceTokenizer,
  type EncodeOptions,
  type EncoderInputLimits,
  type EncodingStrategy,
  type FusedMemory,
} from './fusion.js';
import { generate } from './generation.js';
import { OnnxClock, throwIfAborted, type OrtSession } from './onnx-run.js';
import { leaveOneOutAttribution } from './rescoring.js';
import { validateSampling } from './sampling.js';
import { CachedStepRunner, supportsMemoryBroadcast } from './step-runners.js';
import type { AnswerResult, AttributionMethod, FusionMode, GenerateOptions, ReaderLogger, ReaderPassage, StreamedToken } from './types.js';

export interface FidReaderOptions {
  /** 'auto' (default): cross-attention if the decoder graph can be patched, leave-one-out otherwise. */
  attribution?: 'auto' | AttributionMethod;
  logger?: ReaderLogger;
  /** Passages listed per answer token in `tokenAttention` (default 3). */
  topPassagesPerToken?: number;
  /** Passage tokens listed per listed passage (default 5). */
  topTokensPerPassage?: number;
  /** How passages go through the encoder (see EncodingStrategy; config `reader.encoding`). */
  encoding: EncodingStrategy;
  /** Encoder inputs per encoder run for `batch` encoding; default: all passages in one padded batch. */
  encoderBatchSize?: number;
  /**
   * FiD only: `per-passage` computes the decoder's cross-attention cache one passage at a time (CachedStepRunner
   * crossCachePerSpan), so under int8 a passage's keys/values do not depend on the other passages; `shared` computes
   * it over the whole memory in the first decoder step. Config `reader.crossCache`.
   */
  crossCache: 'per-passage' | 'shared';
}

/** Internal knobs for tests and benchmarks. */
export interface EncodeDebugOptions {
  padToLength?: number;
  strategy?: EncodingStrategy;
  batchSize?: number;
}

/**
 * The rewritten decoder: the model's own session when the model was loaded with `fidDecoderRewrite` (one decoder
 * session in memory), else a session of its own made from the rewritten file. Falls back to the model's unmodified
 * session if the rewrite fails (then `reason` says why).
 */
async function loadDecoder(model: Seq2SeqModel, exposeAttention: boolean): Promise<{ decoder: MergedDecoder; reason: string }> {
  const original = model.decoder;
  const { num_heads: heads, d_kv: dKv } = model.config;
  const patched = model.decoderRewrite;
  if (isDecoderPatchInfo(patched) && patched.exposeAttention === exposeAttention) {
    return { decoder: new MergedDecoder(original, heads, dKv, patched.outputs), reason: patched.reason ?? '' };
  }
  const layers = new MergedDecoder(original, heads, dKv).layers;
  const file = onnxFile('decoder_model_merged', model.quantized);
  try {
    const prepared = prepareDecoderGraph(await model.readModelFile(file), layers, exposeAttention);
    const session = await createSession(prepared.bytes, file, model.threads);
    return { decoder: new MergedDecoder(session, heads, dKv, prepared.outputs), reason: prepared.reason ?? '' };
  } catch (err) {
    // The original session still decodes correctly, just without the added outputs and in-graph cache reordering.
    return { decoder: new MergedDecoder(original, heads, dKv), reason: `rewriting ${file} failed: ${(err as Error).message}` };
  }
}

/**
 * Answers a question from several passages with a T5-family fusion-in-decoder reader, driving the encoder and the
 * merged decoder ONNX sessions directly (transformers.js generate() cannot fuse several encoder outputs).
 */
export class FidReader {
  private readonly tokenTexts = new Map<number, string>();
  private readonly pieces: PieceTokenizer;
  private readonly detail: AttributionDetail;

  private constructor(
    readonly model: Seq2SeqModel,
    readonly encoder: OrtSession,
    readonly decoder: MergedDecoder,
    readonly attributionMethod: AttributionMethod,
    /** Whether beams can share one copy of the memory and cross-attention cache (see supportsMemoryBroadcast). */
    readonly broadcastMemory: boolean,
    private readonly opts: FidReaderOptions,
  ) {
    this.pieces = new PieceTokenizer(model.tokenizer);
    this.detail = {
      topPassages: opts.topPassagesPerToken ?? 3,
      topTokens: opts.topTokensPerPassage ?? 5,
      hiddenTokenIds: new Set(model.tokenizer.all_special_ids),
    };
  }

  /**
   * Rewrites the merged decoder graph once (cross-attention outputs unless leave-one-out is asked for; see
   * attention-patch.ts) and loads it into a session of its own; the encoder session of the model is used as is.
   */
  static async create(model: Seq2SeqModel, opts: FidReaderOptions): Promise<FidReader> {
    const encoder = model.encoder;
    if (opts.encoding === 'float-encoder' && model.quantizedEncoder) {
      throw new Error(`reader encoding "float-encoder" needs the model loaded with its float encoder (floatEncoder: true)`);
    }
    const wanted = opts.attribution ?? 'auto';
    const { decoder, reason } = await loadDecoder(model, wanted !== 'leave-one-out');
    const method: AttributionMethod = decoder.hasCrossAttention ? 'cross-attention' : 'leave-one-out';
    if (method !== 'cross-attention' && wanted === 'cross-attention') {
      throw new Error(`cross-attention attribution is unavailable for "${model.modelId}": ${reason}`);
    }
    const broadcastMemory = await supportsMemoryBroadcast(decoder, model.config.d_model);
    const details = { model: model.modelId, layers: decoder.layers, broadcastMemory, reordersCache: decoder.reordersCache };
    if (method === 'cross-attention') {
      opts.logger?.info(details, 'reader attribution: decoder cross-attention');
    } else {
      opts.logger?.warn(
        { ...details, reason: wanted === 'leave-one-out' ? 'requested' : reason },
        'reader attribution: leave-one-passage-out fallback',
      );
    }
    return new FidReader(model, encoder, decoder, method, broadcastMemory, opts);
  }

  /** Builds the encoder inputs for a fusion mode and encodes them into the decoder memory. */
  encode(
    question: string,
    passages: readonly ReaderPassage[],
    fusion: FusionMode,
    clock: OnnxClock = new OnnxClock(),
    debug: EncodeDebugOptions = {},
  ): Promise<FusedMemory> {
    const plan = buildEncoderPlan(fusion, this.pieces, question, passages, this.limits());
    return encodeToMemory(this.encoder, plan, this.encodeOptions(debug), clock);
  }

  async answer(question: string, passages: readonly ReaderPassage[], opts: GenerateOptions): Promise<AnswerResult> {
    validateGenerateOptions(opts);
    const clock = new OnnxClock();
    const t0 = performance.now();
    throwIfAborted(opts.signal);
    const memory = await this.encode(question, passages, opts.fusion, clock);
    const t1 = performance.now();

    const { config, tokenizer } = this.model;
    const streamer = opts.onToken ? new TokenStreamer((ids) => this.decodeText(ids), opts.onToken) : undefined;
    const runner = new CachedStepRunner(this.decoder, memory, clock, {
      broadcastMemory: this.broadcastMemory,
      crossCachePerSpan: opts.fusion === 'fid' && this.opts.crossCache === 'per-passage',
    });
    const result = await generate(runner, {
      maxNewTokens: opts.maxNewTokens,
      minNewTokens: opts.minNewTokens ?? 0,
      numBeams: opts.numBeams,
      lengthPenalty: opts.lengthPenalty,
      noRepeatNgramSize: opts.noRepeatNgramSize,
      decoderStartTokenId: config.decoder_start_token_id,
      eosTokenId: config.eos_token_id,
      signal: opts.signal,
      onToken: streamer && ((id) => streamer.push(id)),
      tracer: this.decoder.hasCrossAttention ? new CrossAttentionTracer() : undefined,
      sampling: opts.sampling,
      vocabSize: config.vocab_size,
    });
    const decoderSteps = clock.decoderRuns - clock.crossCacheRuns;
    const t2 = performance.now();

    const attribution = await this.attribute(question, passages, opts, memory, result.tokenIds, result.trace, clock);
    const t3 = performance.now();
    return {
      answer: tokenizer.decode(result.tokenIds, { skip_special_tokens: true }),
      tokenIds: result.tokenIds,
      logProb: result.logProb,
      promptTokens: memory.length,
      ...attribution,
      attribution: this.attributionMethod,
      timings: {
        encodeMs: t1 - t0,
        decodeMs: t2 - t1,
        attributionMs: t3 - t2,
        totalMs: t3 - t0,
        onnxEncoderMs: clock.encoderMs,
        onnxDecoderMs: clock.decoderMs,
        onnxMs: clock.totalMs,
        decoderSteps,
      },
    };
  }

  private attribute(
    question: string,
    passages: readonly ReaderPassage[],
    opts: GenerateOptions,
    memory: FusedMemory,
    answerTokens: number[],
    trace: AttentionTraceNode | null,
    clock: OnnxClock,
  ): Promise<Attribution> {
    const tokenText = (id: number) => this.tokenText(id);
    if (this.attributionMethod === 'cross-attention') {
      return Promise.resolve(attributeFromCrossAttention(traceRows(trace), answerTokens, memory, tokenText, this.detail));
    }
    const memoryWithout =
      opts.fusion === 'fid'
        ? (i: number) => Promise.resolve(memoryWithoutPassage(memory, i))
        : (i: number) => {
            const rest = passages.filter((_, j) => j !== i);
            const plan = buildConcatPlan(this.pieces, question, rest, this.limits());
            return encodeToMemory(this.encoder, plan, this.encodeOptions({}), clock);
          };
    return leaveOneOutAttribution({
      decoder: this.decoder,
      memory,
      answerTokens,
      decoderStartTokenId: this.model.config.decoder_start_token_id,
      memoryWithout,
      tokenText,
      detail: this.detail,
      clock,
      signal: opts.signal,
    });
  }

  private limits(): EncoderInputLimits {
    return { maxInputTokens: this.model.config.maxInputTokens, eosTokenId: this.model.config.eos_token_id };
  }

  private encodeOptions(debug: EncodeDebugOptions): EncodeOptions {
    return {
      padTokenId: this.model.config.pad_token_id,
      strategy: debug.strategy ?? this.opts.encoding,
      batchSize: debug.batchSize ?? this.opts.encoderBatchSize,
      padToLength: debug.padToLength,
    };
  }

  private decodeText(ids: number[]): string {
    return this.model.tokenizer.decode(ids, { skip_special_tokens: true });
  }

  private tokenText(id: number): string {
    let text = this.tokenTexts.get(id);
    if (text === undefined) {
      text = this.model.tokenizer.decode([id], { skip_special_tokens: false });
      this.tokenTexts.set(id, text);
    }
    return text;
  }
}

/**
 * Turns token ids into text increments. Decoding token by token would lose the spaces SentencePiece encodes inside
 * tokens, so each increment is the growth of the decoded text of all tokens so far.
 */
class TokenStreamer {
  private readonly ids: number[] = [];
  private emitted = '';

  constructor(
    private readonly decode: (ids: number[]) => string,
    private readonly emit: (t: StreamedToken) => void,
  ) {}

  push(id: number): void {
    this.ids.push(id);
    const full = this.decode(this.ids);
    let common = 0;
    while (common < this.emitted.length && common < full.length && full[common] === this.emitted[common]) common++;
    const text = full.slice(common);
    this.emitted = full;
    this.emit({ id, text, index: this.ids.length - 1 });
  }
}

function validateGenerateOptions(opts: GenerateOptions): void {
  const int = (name: keyof GenerateOptions, min: number) => {
    const v = opts[name];
    if (v !== undefined && !(Number.isInteger(v) && (v as number) >= min)) {
      throw new RangeError(`${name} must be an integer >= ${min}, got ${String(v)}`);
    }
  };
  int('maxNewTokens', 1);
  int('numBeams', 1);
  int('noRepeatNgramSize', 0);
  int('minNewTokens', 0);
  if (!Number.isFinite(opts.lengthPenalty)) throw new RangeError(`lengthPenalty must be finite, got ${opts.lengthPenalty}`);
  if (opts.fusion !== 'fid' && opts.fusion !== 'concat') throw new RangeError(`unknown fusion mode "${String(opts.fusion)}"`);
  if (opts.sampling) validateSampling(opts.sampling);
}
