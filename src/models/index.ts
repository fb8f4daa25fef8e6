import type { AppConfig } from '../config/index.js';
import { Embedder } from './embedder.js';
import { loadSeq2SeqModel, type Seq2SeqModel } from './reader-model.js';
import { CrossEncoder } from './cross-encoder.js';

export { Embedder, type EmbedderOptions, type Pooling } from './embedder.js';
export { CrossEncoder, type CrossEncoderOptions, type EncodedPair } from './cross-encoder.js';
export { loadSeq2SeqModel, type Seq2SeqModel, type Seq2SeqConfig, type Seq2SeqLoadOptions } from './reader-model.js';
export { ModelNotFoundError, locateModel, type ModelLocation } from './resolve.js';
export { knownEmbeddingModel, KNOWN_EMBEDDING_MODELS } from './known-models.js';

export function loadEmbedder(config: AppConfig): Promise<Embedder> {
  return Embedder.load(config.embedModel, {
    modelsDir: config.modelsDir,
    allowRemote: config.allowRemote,
    hubUrl: config.hubUrl,
    quantized: config.quantized,
    ...config.embedding,
  });
}

export function loadReaderModel(config: AppConfig): Promise<Seq2SeqModel> {
  return loadSeq2SeqModel(config.readerModel, {
    modelsDir: config.modelsDir,
    allowRemote: config.allowRemote,
    hubUrl: config.hubUrl,
    quantized: config.quantized,
    maxInputTokens: config.reader.maxInputTokens,
  });
}

export function loadCrossEncoder(config: AppConfig): Promise<CrossEncoder> {
  return CrossEncoder.load(config.rerankModel, {
    modelsDir: config.modelsDir,
    allowRemote: config.allowRemote,
    hubUrl: config.hubUrl,
    quantized: config.quantized,
    maxTokens: config.rerank.maxTokens,
  });
}
