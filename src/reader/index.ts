/**
 * The fusion-in-decoder reader. Where things are:
 * - types.ts: the types the modules share (imports nothing)
 * - fusion.ts: encoder inputs per passage (or one concat input), one padded encoder batch, fused memory + spans
 * - onnx-run.ts: tensors, timed session runs, abort and event-loop yielding
 * - attention-patch.ts: the one-time ONNX graph rewrite (cross-attention outputs, log-sum-exp, in-graph beam reorder)
 * - decoder-session.ts: the merged ONNX decoder's session (MergedDecoder) and one run's outputs (DecoderStep)
 * - step-runners.ts: one decoder step for a set of rows, with (CachedStepRunner) or without (UncachedStepRunner) cache
 * - generation.ts: the decoding loop (`generate`: greedy search, beam search, sampling); sampling.ts: the draws
 * - attribution.ts: cross-attention per passage and per answer token
 * - rescoring.ts: teacher-forced log-probabilities and the leave-one-out fallback attribution built on them
 * - reader.ts: the FidReader class tying it together
 */
export { FidReader, type FidReaderOptions } from './reader.js';
export { fidDecoderRewrite, isDecoderPatchInfo, type DecoderPatchInfo } from './attention-patch.js';
export { buildFidPlan, PieceTokenizer, type EncodingStrategy, type EncoderInputLimits } from './fusion.js';
export { ReaderAbortError } from './onnx-run.js';
export { SeededRandom, samplingDistribution, drawIndex } from './sampling.js';
export type {
  AnswerResult,
  AttributionMethod,
  FusionMode,
  GenerateOptions,
  PassageAttention,
  ReaderLogger,
  ReaderPassage,
  ReaderTimings,
  SamplingOptions,
  StreamedToken,
  TokenAttention,
  TokenWeight,
} from './types.js';
