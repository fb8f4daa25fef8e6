import { passageLocation } from '../retrieval/index.js';
import type { AskOutcome, PassageLocation } from './types.js';

/**
 * Passages holding at least `minShare` of the answer's cross-attention, strongest first — and always the strongest one,
 * so an answer spread thinly over many passages still names its main source. Scores are renormalised to sum to 1 over
 * the cited passages; `attention` keeps the share over all passages.
 */
export function citationsFrom(
  passages: ReadonlyArray<{ passageId: string; docId: string; title: string } & PassageLocation>,
  shares: readonly number[],
  minShare: number,
): AskOutcome['citations'] {
  const ranked = passages
    .map((p, i) => ({ passageId: p.passageId, docId: p.docId, title: p.title, ...passageLocation(p), attention: shares[i] ?? 0 }))
    .sort((a, b) => b.attention - a.attention);
  const cited = ranked.filter((c, i) => i === 0 || c.attention >= minShare);
  const total = cited.reduce((sum, c) => sum + c.attention, 0);
  return cited.map((c) => ({ ...c, score: total > 0 ? c.attention / total : 1 / cited.length }));
}
