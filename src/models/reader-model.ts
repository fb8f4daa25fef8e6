import type ort from 'onnxruntime-node';
import { AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer, type PreTrainedModel, type PreTrainedTokenizer } from '@xenova/transformers';
import { createSession, readOnnxFile, UnsupportedModelFileError, type SessionThreads } from './onnx-session.js';
import {
  downloadProgress,
  isSaneLength,
  locateModel,
  ModelNotFoundError,
  readModelFile,
  readModelJson,
  type ModelLocation,
} from './resolve.js';

export interface Seq2SeqConfig {
  d_model: number;
  num_heads: number;
  d_kv: number;
  num_decoder_layers: number;
  decoder_start_token_id: number;
  eos_token_id: number;
  pad_token_id: number;
  vocab_size: number;
  /** Encoder input limit per sequence, from the tokenizer or the model's config. */
  maxInputTokens: number;
}

type Feeds = Record<string, ort.Tensor>;

/**
 * A rewrite of the merged decoder graph applied before its one session is created (the reader adds outputs and
 * inputs, see src/reader/attention-patch.ts). Rewriting at load means only one decoder session exists: transformers.js's
 * `generate()` runs the rewritten session too, through a view that fills the added inputs with neutral values.
 */
export interface DecoderRewrite<Info> {
  rewrite(bytes: Uint8Array, config: Seq2SeqConfig): { bytes: Uint8Array; info: Info };
  /** Names of the inputs the rewrite adds. */
  addedInputs(info: Info): string[];
  /** Values for the added inputs that leave the original outputs unchanged, given the original feeds. */
  neutralFeeds(info: Info, feeds: Feeds): Feeds;
}

/** A loaded T5-family encoder–decoder: the reader drives its ONNX sessions itself. */
export interface Seq2SeqModel<Info = unknown> {
  modelId: string;
  location: ModelLocation;
  tokenizer: PreTrainedTokenizer;
  /** transformers.js model, for `generate()`: `.session` is `encoder`, `.decoder_merged_session` a view of `decoder`. */
  model: PreTrainedModel;
  encoder: ort.InferenceSession;
  /** The merged decoder session (of the rewritten graph when `decoderRewrite` is set). */
  decoder: ort.InferenceSession;
  /** What the load-time rewrite added, or undefined when the decoder graph is the file's own. */
  decoderRewrite: Info | undefined;
  /** The merged decoder file that `decoder` was made from. */
  decoderFile: string;
  config: Seq2SeqConfig;
  quantized: boolean;
  /** Whether the encoder file is the `_quantized` one (an int8 model can keep a float encoder, see reader.encoding). */
  quantizedEncoder: boolean;
  threads: SessionThreads | undefined;
  /** Raw bytes of a file of the model, e.g. to patch its ONNX graph. */
  readModelFile(relPath: string): Promise<Uint8Array>;
}

export interface Seq2SeqLoadOptions<Info = unknown> {
  modelsDir: string;
  allowRemote: boolean;
  hubUrl?: string;
  quantized: boolean;
  /** Load the float encoder although `quantized` is set (default: the same precision as the decoder). */
  floatEncoder?: boolean;
  maxInputTokens?: number;
  /** onnxruntime threading of both sessions; undefined leaves onnxruntime's default. */
  threads?: SessionThreads;
  decoderRewrite?: DecoderRewrite<Info>;
}

/**
 * Loads tokenizer, config and the two ONNX sessions, created here (not by transformers.js) so that their threading is
 * set, their IR version checked, and the merged decoder exists once even when a rewrite is applied.
 */
export async function loadSeq2SeqModel<Info = undefined>(name: string, opts: Seq2SeqLoadOptions<Info>): Promise<Seq2SeqModel<Info>> {
  const quantizedEncoder = opts.quantized && !opts.floatEncoder;
  const sameFiles = quantizedEncoder === opts.quantized;
  if (!sameFiles) locateModel(name, { ...opts, quantized: quantizedEncoder, onnxFiles: ['encoder_model'] });
  const location = locateModel(name, {
    ...opts,
    onnxFiles: sameFiles ? ['encoder_model', 'decoder_model_merged'] : ['decoder_model_merged'],
  });
  try {
    const progress_callback = location.source === 'hub' ? downloadProgress() : undefined;
    const tokenizer = await AutoTokenizer.from_pretrained(location.id, { progress_callback });
    const raw = (await readModelJson(location, 'config.json')) ?? {};
    const config = seq2seqConfig(name, raw, tokenizer, opts.maxInputTokens);
    const encoderFile = await readOnnxFile(location, 'encoder_model', quantizedEncoder, progress_callback);
    const encoder = await createSession(encoderFile.bytes, encoderFile.file, opts.threads);
    const decoderFile = await readOnnxFile(location, 'decoder_model_merged', opts.quantized, progress_callback);
    const original = decoderFile.bytes;
    const rewritten = opts.decoderRewrite?.rewrite(original, config);
    const decoder = await createSession(rewritten?.bytes ?? original, decoderFile.file, opts.threads);

    const transformersConfig = await AutoConfig.from_pretrained(location.id, { progress_callback });
    const generationConfig = (await readModelJson(location, 'generation_config.json')) ?? {};
    const modelType = String(raw.model_type ?? '');
    const modelClass = AutoModelForSeq2SeqLM.MODEL_CLASS_MAPPINGS.map((m) => m.get(modelType)).find(Boolean)?.[1];
    if (typeof modelClass !== 'function') throw new Error(`model_type "${modelType}" is not a transformers.js seq2seq model`);
    const decoderView = rewritten && opts.decoderRewrite ? originalInputsView(decoder, opts.decoderRewrite, rewritten.info) : decoder;
    const Model = modelClass as unknown as new (...args: unknown[]) => PreTrainedModel;
    const model = new Model(transformersConfig, encoder, decoderView, generationConfig);
    return {
      modelId: name,
      location,
      tokenizer,
      model,
      encoder,
      decoder,
      decoderRewrite: rewritten?.info,
      decoderFile: decoderFile.file,
      config,
      quantized: opts.quantized,
      quantizedEncoder,
      threads: opts.threads,
      readModelFile: (relPath) => readModelFile(location, relPath),
    };
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

function seq2seqConfig(
  name: string,
  raw: Record<string, unknown>,
  tokenizer: PreTrainedTokenizer,
  maxInputTokens: number | undefined,
): Seq2SeqConfig {
  const int = (key: string, fallback?: unknown): number => {
    const v = Number(raw[key] ?? fallback);
    if (!Number.isInteger(v)) throw new Error(`config.json of "${name}" has no usable ${key}`);
    return v;
  };
  const tokenizerMax = Number((tokenizer as unknown as { model_max_length?: number }).model_max_length);
  const positions = Number(raw.n_positions);
  const limit = maxInputTokens ?? [tokenizerMax, positions].find(isSaneLength);
  if (!limit) throw new Error(`cannot tell the encoder input limit of "${name}"; set reader.maxInputTokens in the config file`);
  return {
    d_model: int('d_model'),
    num_heads: int('num_heads'),
    d_kv: int('d_kv'),
    num_decoder_layers: int('num_decoder_layers', raw.num_layers),
    decoder_start_token_id: int('decoder_start_token_id', raw.pad_token_id),
    eos_token_id: int('eos_token_id'),
    pad_token_id: int('pad_token_id'),
    vocab_size: int('vocab_size'),
    maxInputTokens: limit,
  };
}

/**
 * The rewritten decoder session as transformers.js expects the original one: the original input names (it checks them
 * all are fed), with the added inputs filled with neutral values on each run.
 */
function originalInputsView<Info>(session: ort.InferenceSession, rewrite: DecoderRewrite<Info>, info: Info): ort.InferenceSession {
  const added = new Set(rewrite.addedInputs(info));
  const inputNames = session.inputNames.filter((n) => !added.has(n));
  const view = {
    inputNames,
    outputNames: session.outputNames,
    run: (feeds: Feeds) => session.run({ ...feeds, ...rewrite.neutralFeeds(info, feeds) }),
  };
  return view as unknown as ort.InferenceSession;
}

/** The tokenizer of a reader model and the ids and limit its encoder inputs are built with. */
export interface ReaderTokenizer {
  tokenizer: PreTrainedTokenizer;
  config: Seq2SeqConfig;
  location: ModelLocation;
}

/**
 * Loads only a reader's tokenizer and config (no ONNX files), with the same limits `loadSeq2SeqModel` applies: the
 * training-data builder tokenises with exactly what the server will use.
 */
export async function loadReaderTokenizer(
  name: string,
  opts: Pick<Seq2SeqLoadOptions, 'modelsDir' | 'allowRemote' | 'hubUrl' | 'maxInputTokens'>,
): Promise<ReaderTokenizer> {
  const location = locateModel(name, { ...opts, quantized: false, onnxFiles: [] });
  const tokenizer = await AutoTokenizer.from_pretrained(location.id);
  const raw = (await readModelJson(location, 'config.json')) ?? {};
  return { tokenizer, config: seq2seqConfig(name, raw, tokenizer, opts.maxInputTokens), location };
}
