/**
 * Types shared across the reader's modules (and its public surface). Imports nothing, so every module can depend on it
 * without forming a cycle.
 */
export const FUSION_MODES = ['fid', 'concat'] as const;
export type FusionMode = (typeof FUSION_MODES)[number];

export type AttributionMethod = 'cross-attention' | 'leave-one-out';

export interface ReaderPassage {
  passageId: string;
  docId: string;
  title: string;
  text: string;
  retrievalScore: number;
}

export interface StreamedToken {
  id: number;
  /** Text this token adds to the answer (special tokens add ''); concatenated, these texts form the answer. */
  text: string;
  /** Position of the token in `AnswerResult.tokenIds`. */
  index: number;
}

/** How sampling draws a token (see sampling.ts). */
export interface SamplingOptions {
  /** > 0 samples from softmax(logits / temperature); 0 means greedy (the other fields are then ignored). */
  temperature: number;
  /** Keep only the topK most likely tokens; 0 keeps all. */
  topK: number;
  /** Keep the smallest set of most likely tokens whose probability reaches topP; 1 keeps all. */
  topP: number;
  /** Seed of the pseudo-random draws: the same seed, input and options give the same tokens. Random when absent. */
  seed?: number;
}

/** The options of `FidReader.answer` (it turns them into the decoding loop's `GenerationOptions`, generation.ts). */
export interface GenerateOptions {
  maxNewTokens: number;
  numBeams: number;
  /** Beam score = sum of token log-probs / (generated length ^ lengthPenalty), as in Hugging Face transformers. */
  lengthPenalty: number;
  /** 0 disables; otherwise no n-gram of this size may occur twice in the answer. */
  noRepeatNgramSize: number;
  fusion: FusionMode;
  /** EOS is forbidden before this many tokens have been generated (HF `min_new_tokens`). Default 0. */
  minNewTokens?: number;
  /** Temperature > 0 samples (numBeams must be 1); absent or temperature 0 decodes greedily or with beams. */
  sampling?: SamplingOptions;
  signal?: AbortSignal;
  /**
   * Greedy search calls this for every token as soon as it is chosen. Beam search calls it for every token of the
   * winning hypothesis once the search has finished, because no beam's tokens are final before that.
   */
  onToken?: (t: StreamedToken) => void;
}

/** A token with its raw logit, as a decoder step lists its largest logits (see DecoderStep.topCandidates). */
export interface Candidate {
  token: number;
  logit: number;
}

export interface TokenWeight {
  token: string;
  /** Share of the answer token's cross-attention (mean over layers and heads) that fell on this memory position. */
  weight: number;
}

export interface PassageAttention {
  passageIndex: number;
  /** Share of the answer token's passage-attributed attention that fell on this passage (shares of all passages sum to 1). */
  weight: number;
  /** Empty for leave-one-out attribution, which has no per-position information. */
  topTokens: TokenWeight[];
}

export interface TokenAttention {
  token: string;
  passages: PassageAttention[];
}

export interface ReaderTimings {
  /** Tokenising, running the encoder and fusing its states. */
  encodeMs: number;
  /** The decoding loop (greedy or beam search). */
  decodeMs: number;
  /** Aggregating cross-attention, or the leave-one-out re-scoring runs. */
  attributionMs: number;
  totalMs: number;
  /** Wall time spent inside `session.run` of the encoder / decoder over the whole call (attribution included). */
  onnxEncoderMs: number;
  onnxDecoderMs: number;
  onnxMs: number;
  /** Decoder `session.run` calls made while decoding (attribution runs excluded). */
  decoderSteps: number;
}

export interface AnswerResult {
  answer: string;
  /** Generated token ids without the decoder start token; ends with EOS when the model emitted it. */
  tokenIds: number[];
  /** Sum of the model's log-probabilities of `tokenIds`. */
  logProb: number;
  /** Encoder tokens the answer was read from: the length of the fused memory (all passages' inputs, padding excluded). */
  promptTokens: number;
  /** Aligned with the input passages, each in [0,1], summing to 1 (empty when there were no passages). */
  passageScores: number[];
  /** Aligned with `tokenIds`. */
  tokenAttention: TokenAttention[];
  attribution: AttributionMethod;
  timings: ReaderTimings;
}

/** Structural subset of a pino logger, so one can be passed straight in. */
export interface ReaderLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}
