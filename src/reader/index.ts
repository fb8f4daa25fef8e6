/**
 * The fusion-in-decoder reader. Where things are:
 * - fusion.ts: encoder inputs per passage (or one concat input), one padded encoder batch, fused memory + spans
 * - decoder.ts: feeding the merged ONNX decoder, with (CachedStepRunner) or without (UncachedStepRunner) its cache
 * - decode.ts: the greedy and beam search loops
 * - attention-patch.ts: the one-time ONNX graph rewrite (cross-attention outputs, log-sum-exp, in-graph beam reorder)
 * - attribution.ts: cross-attention per passage and per answer token
 * - leave-one-out.ts: fallback attribution; reader.ts: the FidReader class tying it together
 */
export { FidReader, type FidReaderOptions } from './reader.js';
export { fidDecoderRewrite, isDecoderPatchInfo, type DecoderPatchInfo } from './attention-patch.js';
export { buildFidPlan, PieceTokenizer, type EncodingStrategy, type EncoderInputLimits } from './fusion.js';
export { ReaderAbortError } from './onnx-run.js';
export { SeededRandom, samplingDistribution, drawIndex, type SamplingOptions } from './sampling.js';
export type {
  AnswerResult,
  AttributionMethod,
  FusionMode,
  GenerateOptions,
  PassageAttention,
  ReaderLogger,
  ReaderPassage,
  ReaderTimings,
  StreamedToken,
  TokenAttention,
  TokenWeight,
} from './types.js';
