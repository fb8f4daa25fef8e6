import type { AppConfig } from '../config/index.js';
import { Embedder } from './embedder.js';
import { loadSeq2SeqModel, type DecoderRewrite, type Seq2SeqModel } from './reader-model.js';
import { ModelNotFoundError, ModelsNotFoundError } from './resolve.js';
import { CrossEncoder } from './cross-encoder.js';

export { Embedder, type EmbedderOptions, type Pooling } from './embedder.js';
export { CrossEncoder, type CrossEncoderOptions, type EncodedPair } from './cross-encoder.js';
export { loadSeq2SeqModel, loadReaderTokenizer, type ReaderTokenizer, type DecoderRewrite, type Seq2SeqModel, type Seq2SeqConfig, type Seq2SeqLoadOptions } from './reader-model.js';
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

export function loadEmbedder(config: AppConfig): Promise<Embedder> {
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
export function loadReaderModel<Info>(config: AppConfig, decoderRewrite?: DecoderRewrite<Info>): Promise<Seq2SeqModel<Info>> {
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
): Promise<{ embedder: Embedder; readerModel: Seq2SeqModel<Info> }> {
  const [embedder, readerModel] = await Promise.allSettled([loadEmbedder(config), loadReaderModel(config, decoderRewrite)]);
  const failures = [embedder, readerModel].flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  // A model file onnxruntime cannot load (IR 9) has its own message; a missing model is collected with the others.
  const other = failures.find((f) => !(f instanceof ModelNotFoundError));
  if (other !== undefined) throw other;
  if (failures.length > 0) throw new ModelsNotFoundError(failures as ModelNotFoundError[]);
  return {
    embedder: (embedder as PromiseFulfilledResult<Embedder>).value,
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
