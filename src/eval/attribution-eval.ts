/**
 * How often an attribution method names the passage that holds the answer ("citation@1"): the top-scored passage must
 * be a gold one (from the question's own paragraph and containing a reference answer). Questions whose retrieved
 * passages hold no gold passage cannot be attributed correctly by any method and are counted apart.
 */
import { normalizeAnswer } from './squad-metrics.js';

export interface AttributionCase {
  /** Per retrieved passage: is it a gold passage? */
  gold: readonly boolean[];
  /** Per method: one score per retrieved passage (higher = more responsible for the answer). */
  scores: Record<string, readonly number[]>;
  /** Per method: milliseconds the attribution itself cost on this question. */
  ms: Record<string, number>;
}

export interface MethodSummary {
  method: string;
  /** Share of questions with a gold passage among the retrieved ones whose top-scored passage is gold. */
  citationAt1: number;
  /** Median attribution cost per question. */
  msP50: number;
}

export interface AttributionReport {
  questions: number;
  /** Questions with a gold passage among the retrieved ones (the denominator of citation@1). */
  withGold: number;
  methods: MethodSummary[];
}

/** Whether a passage is a gold passage of a question: its paragraph, and a reference answer in its text. */
export function isGoldPassage(passage: { docId: string; text: string }, paragraphId: string, answers: readonly string[]): boolean {
  if (passage.docId !== paragraphId) return false;
  const text = normalizeAnswer(passage.text);
  return answers.some((a) => normalizeAnswer(a).length > 0 && text.includes(normalizeAnswer(a)));
}

/** Index of the highest score; the earliest wins ties (the retrieval order). */
export function argmax(scores: readonly number[]): number {
  let best = -1;
  for (let i = 0; i < scores.length; i++) if (best < 0 || scores[i]! > scores[best]!) best = i;
  return best;
}

function median(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function summarizeAttribution(cases: readonly AttributionCase[], methods: readonly string[]): AttributionReport {
  const withGold = cases.filter((c) => c.gold.some(Boolean));
  return {
    questions: cases.length,
    withGold: withGold.length,
    methods: methods.map((method) => {
      const hits = withGold.filter((c) => {
        const top = argmax(c.scores[method] ?? []);
        return top >= 0 && c.gold[top] === true;
      }).length;
      return {
        method,
        citationAt1: withGold.length > 0 ? hits / withGold.length : 0,
        msP50: median(cases.map((c) => c.ms[method] ?? 0)),
      };
    }),
  };
}

export interface ThresholdRow {
  /** Passages with at least this share of the attribution are cited (the top one always is). */
  minShare: number;
  /** Share of questions (with a gold passage retrieved) whose citations include a gold passage. */
  goldCited: number;
  /** Mean passages cited per question. */
  citedPerAnswer: number;
  /** Share of all citations that are gold passages. */
  precision: number;
  /** Harmonic mean of goldCited and precision: one number to pick a threshold by. */
  f1: number;
}

/**
 * What citing every passage with at least `minShare` of a method's scores (normalised to sum to 1; the top passage is
 * always cited, as the service does) would give, for each threshold: how often the gold passage is among the
 * citations, and how many passages are cited that are not gold.
 */
export function citationThresholds(cases: readonly AttributionCase[], method: string, thresholds: readonly number[]): ThresholdRow[] {
  const withGold = cases.filter((c) => c.gold.some(Boolean));
  return thresholds.map((minShare) => {
    let goldCited = 0;
    let cited = 0;
    let citedGold = 0;
    for (const c of withGold) {
      const scores = c.scores[method] ?? [];
      const total = scores.reduce((sum, v) => sum + Math.max(0, v), 0);
      const top = argmax(scores);
      const picked = scores.map((v, i) => i === top || (total > 0 && Math.max(0, v) / total >= minShare));
      const gold = picked.filter((p, i) => p && c.gold[i] === true).length;
      goldCited += gold > 0 ? 1 : 0;
      cited += picked.filter(Boolean).length;
      citedGold += gold;
    }
    const recall = withGold.length > 0 ? goldCited / withGold.length : 0;
    const precision = cited > 0 ? citedGold / cited : 0;
    return {
      minShare,
      goldCited: recall,
      citedPerAnswer: withGold.length > 0 ? cited / withGold.length : 0,
      precision,
      f1: recall + precision > 0 ? (2 * recall * precision) / (recall + precision) : 0,
    };
  });
}
