import type { AppConfig } from '../config/index.js';
import { Embedder } from './embedder.js';
import { loadSeq2SeqModel, type DecoderRewrite, type Seq2SeqModel } from './reader-model.js';

export { Embedder, type EmbedderOptions, type Pooling } from './embedder.js';
export {
  loadSeq2SeqModel,
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
export { ModelNotFoundError, locateModel, type ModelLocation } from './resolve.js';
export { knownEmbeddingModel, KNOWN_EMBEDDING_MODELS } from './known-models.js';

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
