import { passageLocation } from '../retrieval/index.js';
import { answerSpan } from './answer-span.js';
import type { AskOutcome, PassageLocation } from './types.js';

export { answerSpan, type AnswerSpan } from './answer-span.js';

/**
 * Passages holding at least `minShare` of the answer's cross-attention, strongest first — and always the strongest one,
 * so an answer spread thinly over many passages still names its main source. Scores are renormalised to sum to 1 over
 * the cited passages; `attention` keeps the share over all passages. A cited passage that contains `answer` gets its
 * `answerSpan` there (offsets into its `text`), so a client can quote the answer in its source.
 */
export function citationsFrom(
  passages: ReadonlyArray<{ passageId: string; docId: string; title: string; text: string } & PassageLocation>,
  shares: readonly number[],
  minShare: number,
  answer: string,
): AskOutcome['citations'] {
  const ranked = passages.map((p, i) => ({ passage: p, attention: shares[i] ?? 0 })).sort((a, b) => b.attention - a.attention);
  const cited = ranked.filter((c, i) => i === 0 || c.attention >= minShare);
  const total = cited.reduce((sum, c) => sum + c.attention, 0);
  return cited.map(({ passage: p, attention }) => {
    // Only cited passages are searched: the span is for quoting a source, and this keeps the work to a few passages.
    const span = answerSpan(p.text, answer);
    return {
      passageId: p.passageId,
      docId: p.docId,
      title: p.title,
      ...passageLocation(p),
      attention,
      score: total > 0 ? attention / total : 1 / cited.length,
      ...(span ? { answerSpan: span } : {}),
    };
  });
}
