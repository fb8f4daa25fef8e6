import { AutoModelForSeq2SeqLM, AutoTokenizer, type PreTrainedModel, type PreTrainedTokenizer } from '@xenova/transformers';
import { downloadProgress, locateModel, ModelNotFoundError, readModelFile, readModelJson, type ModelLocation } from './resolve.js';

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

/** A loaded T5-family encoder–decoder: the reader drives its ONNX sessions itself. */
export interface Seq2SeqModel {
  modelId: string;
  location: ModelLocation;
  tokenizer: PreTrainedTokenizer;
  /** transformers.js model: `.session` is the encoder, `.decoder_merged_session` the merged decoder. */
  model: PreTrainedModel;
  config: Seq2SeqConfig;
  quantized: boolean;
  /** Raw bytes of a file of the model, e.g. to patch its ONNX graph. */
  readModelFile(relPath: string): Promise<Uint8Array>;
}

export interface Seq2SeqLoadOptions {
  modelsDir: string;
  allowRemote: boolean;
  hubUrl?: string;
  quantized: boolean;
  maxInputTokens?: number;
}

const SANE_MAX_LENGTH = 100_000;

export async function loadSeq2SeqModel(name: string, opts: Seq2SeqLoadOptions): Promise<Seq2SeqModel> {
  const location = locateModel(name, { ...opts, onnxFiles: ['encoder_model', 'decoder_model_merged'] });
  try {
    const progress_callback = location.source === 'hub' ? downloadProgress() : undefined;
    const tokenizer = await AutoTokenizer.from_pretrained(location.id, { progress_callback });
    const model = await AutoModelForSeq2SeqLM.from_pretrained(location.id, { quantized: opts.quantized, progress_callback });
    const raw = (await readModelJson(location, 'config.json')) ?? {};
    const config = seq2seqConfig(name, raw, tokenizer, opts.maxInputTokens);
    return {
      modelId: name,
      location,
      tokenizer,
      model,
      config,
      quantized: opts.quantized,
      readModelFile: (relPath) => readModelFile(location, relPath),
    };
  } catch (err) {
    if (err instanceof ModelNotFoundError) throw err;
    throw new ModelNotFoundError(name, location.triedPaths, `loading from ${location.source} failed: ${(err as Error).message}`, opts.allowRemote);
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
  const limit =
    maxInputTokens ??
    [tokenizerMax, positions].find((n) => Number.isFinite(n) && n > 0 && n < SANE_MAX_LENGTH);
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
