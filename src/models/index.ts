import type { AppConfig } from '../config/index.js';
import { BUNDLED_READER, ensureBundledReader } from './bundled-reader.js';
import { Embedder, type EmbeddingModel } from './embedder.js';
import { LEXICAL_EMBED_MODEL, LexicalEmbedder } from './lexical-embedder.js';
import { loadReaderTokenizer, loadSeq2SeqModel, type DecoderRewrite, type Seq2SeqModel } from './reader-model.js';
import { ModelNotFoundError, ModelsNotFoundError } from './resolve.js';
import { CrossEncoder } from './cross-encoder.js';

export { Embedder, type EmbedderOptions, type EmbeddingModel, type Pooling } from './embedder.js';
export { LEXICAL_EMBED_MODEL, LexicalEmbedder, lexicalVector } from './lexical-embedder.js';
export { BUNDLED_READER, BundledReaderUnavailableError, bundledReaderCheckpoint, ensureBundledReader } from './bundled-reader.js';
export { CrossEncoder, type CrossEncoderOptions, type EncodedPair } from './cross-encoder.js';
export {
  loadSeq2SeqModel,
  loadReaderTokenizer,
  type ReaderTokenizer,
  type DecoderRewrite,
  type Seq2SeqModel,
  type Seq2SeqConfig,
  type Seq2SeqLoadOptions,
} from './reader-model.js';
export {
  checkIrVersion,
  createSession,
  MAX_IR_VERSION,
  onnxFile,
  onnxIrVersion,
  UnsupportedModelFileError,
  type SessionThreads,
} from './onnx-session.js';
export { ModelNotFoundError, ModelsNotFoundError, locateModel, type ModelLocation } from './resolve.js';
export { knownEmbeddingModel, KNOWN_EMBEDDING_MODELS } from './known-models.js';
export { READER_ENCODINGS, type ReaderEncoding } from './reader-encoding.js';

/** The configured embedding model; `lexical-hash-512` needs no files but the bundled reader's tokenizer to cut passages. */
export async function loadEmbedder(config: AppConfig): Promise<EmbeddingModel> {
  if (config.embedModel === LEXICAL_EMBED_MODEL) {
    await ensureBundledReader(config.modelsDir);
    const { tokenizer, config: t5 } = await loadReaderTokenizer(BUNDLED_READER, {
      modelsDir: config.modelsDir,
      allowRemote: false,
      maxInputTokens: config.reader.maxInputTokens,
    });
    return new LexicalEmbedder(tokenizer, t5.maxInputTokens);
  }
  return Embedder.load(config.embedModel, {
    modelsDir: config.modelsDir,
    allowRemote: config.allowRemote,
    hubUrl: config.hubUrl,
    quantized: config.quantized,
    threads: config.threads,
    ...config.embedding,
  });
}

/** @param decoderRewrite the reader's decoder rewrite (src/reader `fidDecoderRewrite()`), applied at load */
export async function loadReaderModel<Info>(config: AppConfig, decoderRewrite?: DecoderRewrite<Info>): Promise<Seq2SeqModel<Info>> {
  // The bundled reader is exported from its committed checkpoint on first use, then loads as a local folder.
  if (config.readerModel === BUNDLED_READER) await ensureBundledReader(config.modelsDir);
  return loadSeq2SeqModel(config.readerModel, {
    modelsDir: config.modelsDir,
    allowRemote: config.allowRemote,
    hubUrl: config.hubUrl,
    quantized: config.quantized,
    floatEncoder: config.reader.encoding === 'float-encoder',
    maxInputTokens: config.reader.maxInputTokens,
    threads: config.threads,
    decoderRewrite,
  });
}

/**
 * Both models, loaded side by side. When any cannot be found, one error names every missing model, so a first run
 * learns everything that is missing at once instead of one model per attempt.
 */
export async function loadModels<Info>(
  config: AppConfig,
  decoderRewrite?: DecoderRewrite<Info>,
): Promise<{ embedder: EmbeddingModel; readerModel: Seq2SeqModel<Info> }> {
  const [embedder, readerModel] = await Promise.allSettled([loadEmbedder(config), loadReaderModel(config, decoderRewrite)]);
  const failures = [embedder, readerModel].flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  // A model file onnxruntime cannot load (IR 9) has its own message; a missing model is collected with the others.
  const other = failures.find((f) => !(f instanceof ModelNotFoundError));
  if (other !== undefined) throw other;
  if (failures.length > 0) throw new ModelsNotFoundError(failures as ModelNotFoundError[]);
  return {
    embedder: (embedder as PromiseFulfilledResult<EmbeddingModel>).value,
    readerModel: (readerModel as PromiseFulfilledResult<Seq2SeqModel<Info>>).value,
  };
}

export function loadCrossEncoder(config: AppConfig): Promise<CrossEncoder> {
  return CrossEncoder.load(config.rerankModel, {
    modelsDir: config.modelsDir,
    allowRemote: config.allowRemote,
    hubUrl: config.hubUrl,
    quantized: config.quantized,
    maxTokens: config.rerank.maxTokens,
    threads: config.threads,
  });
}
