export interface RankedList {
  /** Labels best first. */
  labels: number[];
  weight: number;
}

export interface FusedItem {
  label: number;
  score: number;
}

/**
 * Reciprocal rank fusion: score(d) = Σ_lists weight / (k + rank(d)), ranks from 1. Scores of different retrievers
 * are not comparable, ranks are; k damps the advantage of the very top ranks. Ties go to the lower label so results
 * are deterministic.
 */
export function reciprocalRankFusion(lists: RankedList[], k: number): FusedItem[] {
  if (!(k >= 0)) throw new RangeError(`RRF k must be >= 0, got ${k}`);
  const scores = new Map<number, number>();
  for (const { labels, weight } of lists) {
    if (weight === 0) continue;
    labels.forEach((label, i) => scores.set(label, (scores.get(label) ?? 0) + weight / (k + i + 1)));
  }
  return [...scores].map(([label, score]) => ({ label, score })).sort((a, b) => b.score - a.score || a.label - b.label);
}
