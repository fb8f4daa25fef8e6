/**
 * Scoring a given answer by teacher forcing, and the attribution built on it. Leave-one-out is the fallback attribution
 * when the decoder graph cannot be patched to expose cross-attention: a passage matters as much as the answer's
 * log-likelihood drops when it is removed (teacher-forced re-scoring of the same answer tokens).
 */
import { normalizeScores, presentPassages, topIndices, type Attribution, type AttributionDetail } from './attribution.js';
import type { MergedDecoder } from './decoder-session.js';
import type { FusedMemory } from './fusion.js';
import { throwIfAborted, yieldToEventLoop, type OnnxClock } from './onnx-run.js';
import { UncachedStepRunner } from './step-runners.js';

/**
 * Teacher-forced log-probability of each of `tokens` given the memory: one no-past run over
 * [start, tokens[0..n-2]]. Used to re-score answers (leave-one-out attribution, tests).
 */
export async function teacherForcedLogProbs(
  decoder: MergedDecoder,
  memory: FusedMemory,
  decoderStartTokenId: number,
  tokens: readonly number[],
  clock: OnnxClock,
): Promise<Float64Array> {
  const result = new Float64Array(tokens.length);
  if (tokens.length === 0) return result;
  const runner = new UncachedStepRunner(decoder, memory, clock, 'logits');
  const step = await runner.step([[decoderStartTokenId, ...tokens.slice(0, -1)]]);
  for (let t = 0; t < tokens.length; t++) result[t] = step.logitsAt(0, t)[tokens[t]!]! - step.logSumExpAt(0, t);
  return result;
}

export interface LeaveOneOutInput {
  decoder: MergedDecoder;
  memory: FusedMemory;
  answerTokens: readonly number[];
  decoderStartTokenId: number;
  /** The memory the reader would have built without passage i (FiD: its span cut out; concat: re-encoded). */
  memoryWithout: (passageIndex: number) => Promise<FusedMemory>;
  tokenText: (id: number) => string;
  detail: AttributionDetail;
  clock: OnnxClock;
  signal?: AbortSignal;
}

/**
 * Scores are max(0, drop) normalised to sum 1 (uniform when no removal lowers the likelihood), both for the whole
 * answer and per answer token. Passages without tokens in the memory (cut off by truncation) score 0 without a run.
 */
export async function leaveOneOutAttribution(input: LeaveOneOutInput): Promise<Attribution> {
  const { memory, answerTokens } = input;
  const passages = memory.spans.length;
  const tokens = answerTokens.length;
  // drops[t * passages + p]: how much token t's log-probability falls without passage p.
  const drops = new Float64Array(tokens * passages);
  if (passages > 1 && tokens > 0) {
    const full = await teacherForcedLogProbs(input.decoder, memory, input.decoderStartTokenId, answerTokens, input.clock);
    for (let p = 0; p < passages; p++) {
      const span = memory.spans[p]!;
      if (span.start === span.end) continue;
      await yieldToEventLoop();
      throwIfAborted(input.signal);
      const reduced = await input.memoryWithout(p);
      const without = await teacherForcedLogProbs(input.decoder, reduced, input.decoderStartTokenId, answerTokens, input.clock);
      for (let t = 0; t < tokens; t++) drops[t * passages + p] = full[t]! - without[t]!;
    }
  } else if (passages === 1 && memory.spans[0]!.end > memory.spans[0]!.start) {
    drops.fill(1);
  }

  const total = new Float64Array(passages);
  const present = presentPassages(memory);
  for (let t = 0; t < tokens; t++) for (let p = 0; p < passages; p++) total[p]! += drops[t * passages + p]!;
  const tokenAttention = answerTokens.map((id, t) => {
    const shares = normalizeScores(drops.subarray(t * passages, (t + 1) * passages), present);
    return {
      token: input.tokenText(id),
      passages: topIndices(shares, input.detail.topPassages).map((p) => ({ passageIndex: p, weight: shares[p]!, topTokens: [] })),
    };
  });
  return { passageScores: passages === 0 ? [] : normalizeScores(total, present), tokenAttention };
}
