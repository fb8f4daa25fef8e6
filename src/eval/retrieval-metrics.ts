/**
 * BEIR-style retrieval metrics with trec_eval semantics (what BEIR gets through pytrec_eval).
 *
 * Definitions (trec_eval 9.x source: form_res_rels.c, m_ndcg_cut.c, m_recall.c, m_map_cut.c):
 * - Ranking: each query's results are re-sorted by score descending, ties broken by document id in DESCENDING
 *   byte order (`comp_sim_docno` returns `strcmp(p2->docno, p1->docno)`). The order the caller supplies is ignored.
 *   Byte order of UTF-8 equals Unicode code point order, which is what `compareCodePoints` implements.
 * - Relevant (binary measures): qrels grade > 0 (trec_eval's default relevance_level 1; grades are integers).
 *   Documents missing from the qrels are non-relevant with gain 0.
 * - ndcg@10 (`ndcg_cut.10`): DCG = Σ_{rank r ≤ 10} grade_r / log2(r + 1) with linear gain; the ideal DCG uses the
 *   query's judged grades > 0 sorted descending, cut at 10. Ideal DCG 0 (no positive judgment) gives 0.
 * - recall@k (`recall_k`): relevant documents in the top k / relevant documents in the qrels (0 when there are none).
 * - mrr@10: 1 / rank of the first relevant document within the top 10, else 0 (trec_eval's `recip_rank` has no
 *   cut-off; BEIR computes MRR@k itself — we cut at 10 as BEIR does but keep trec_eval's tie order).
 * - map@100 (`map_cut.100`): Σ over relevant documents retrieved at rank r ≤ 100 of (relevant in top r) / r,
 *   divided by the number of relevant documents in the qrels (0 when there are none).
 *
 * Which queries count (pytrec_eval's `RelevanceEvaluator.evaluate`): only queries present in BOTH the run and the
 * qrels. A run query absent from the qrels is skipped; a qrels query absent from the run is skipped too (it is not
 * counted as 0). A qrels query whose judgments are all 0 IS evaluated and scores 0 on every measure. A query present
 * in the run with an empty result list is evaluated and scores 0. Means are arithmetic over evaluated queries; with
 * no evaluated query they are NaN (nothing to average — deliberately not 0).
 */

export interface ScoredDoc {
  docId: string;
  score: number;
}

/** Query id → retrieved documents with scores (any order; duplicates are an error, as in trec_eval). */
export type Run = ReadonlyMap<string, readonly ScoredDoc[]>;

/** Query id → (document id → integer relevance grade). */
export type Qrels = ReadonlyMap<string, ReadonlyMap<string, number>>;

export const RETRIEVAL_METRICS = ['ndcg@10', 'recall@10', 'recall@100', 'mrr@10', 'map@100'] as const;
export type RetrievalMetric = (typeof RETRIEVAL_METRICS)[number];
export type MetricValues = Record<RetrievalMetric, number>;

export interface RunEvaluation {
  perQuery: Map<string, MetricValues>;
  mean: MetricValues;
  /** Number of evaluated queries (run ∩ qrels). */
  queries: number;
  skipped: { notInQrels: string[]; notInRun: string[] };
}

/**
 * Compares strings by Unicode code point (= UTF-8 byte order = C `strcmp` on UTF-8 text). Plain `<` on JS strings
 * compares UTF-16 code units, which disagrees for astral characters versus U+E000–U+FFFF.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      // Surrogates (astral code points) must sort after U+E000–U+FFFF.
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

/** trec_eval's result order: score descending, then document id descending. */
export function compareTrecOrder(a: ScoredDoc, b: ScoredDoc): number {
  if (a.score > b.score) return -1;
  if (a.score < b.score) return 1;
  return compareCodePoints(b.docId, a.docId);
}

/** Returns a sorted copy in trec_eval order; rejects NaN scores and duplicate document ids. */
export function rankTrecOrder(docs: readonly ScoredDoc[], queryId = '?'): ScoredDoc[] {
  const seen = new Set<string>();
  for (const d of docs) {
    if (Number.isNaN(d.score)) throw new Error(`query ${queryId}: document ${d.docId} has a NaN score`);
    if (seen.has(d.docId)) throw new Error(`query ${queryId}: duplicate document ${d.docId} in run`);
    seen.add(d.docId);
  }
  return [...docs].sort(compareTrecOrder);
}

function dcg(gains: readonly number[], cutoff: number): number {
  let sum = 0;
  const n = Math.min(cutoff, gains.length);
  for (let i = 0; i < n; i++) {
    const g = gains[i] ?? 0;
    if (g > 0) sum += g / Math.log2(i + 2);
  }
  return sum;
}

function countRelevantInTop(grades: readonly number[], k: number): number {
  let count = 0;
  const n = Math.min(k, grades.length);
  for (let i = 0; i < n; i++) if ((grades[i] ?? 0) > 0) count++;
  return count;
}

function reciprocalRankAt(grades: readonly number[], k: number): number {
  const n = Math.min(k, grades.length);
  for (let i = 0; i < n; i++) if ((grades[i] ?? 0) > 0) return 1 / (i + 1);
  return 0;
}

function averagePrecisionAt(grades: readonly number[], k: number, numRelevant: number): number {
  if (numRelevant === 0) return 0;
  let relevantSoFar = 0;
  let sum = 0;
  const n = Math.min(k, grades.length);
  for (let i = 0; i < n; i++) {
    if ((grades[i] ?? 0) > 0) {
      relevantSoFar++;
      sum += relevantSoFar / (i + 1);
    }
  }
  return sum / numRelevant;
}

/** Scores one query. `docs` may be in any order; it is ranked with the trec_eval rule first. */
export function evaluateQuery(docs: readonly ScoredDoc[], judgments: ReadonlyMap<string, number>, queryId = '?'): MetricValues {
  const ranked = rankTrecOrder(docs, queryId);
  const grades = ranked.map((d) => judgments.get(d.docId) ?? 0);
  const judged = [...judgments.values()];
  for (const g of judged) {
    if (!Number.isInteger(g)) throw new Error(`query ${queryId}: relevance grade ${g} is not an integer`);
  }
  const numRelevant = judged.filter((g) => g > 0).length;
  const idealGains = judged.filter((g) => g > 0).sort((a, b) => b - a);
  const idealDcg = dcg(idealGains, 10);
  const recallAt = (k: number) => (numRelevant === 0 ? 0 : countRelevantInTop(grades, k) / numRelevant);
  return {
    'ndcg@10': idealDcg > 0 ? dcg(grades, 10) / idealDcg : 0,
    'recall@10': recallAt(10),
    'recall@100': recallAt(100),
    'mrr@10': reciprocalRankAt(grades, 10),
    'map@100': averagePrecisionAt(grades, 100, numRelevant),
  };
}

function meanOf(rows: readonly MetricValues[]): MetricValues {
  const mean = {} as MetricValues;
  for (const metric of RETRIEVAL_METRICS) {
    let sum = 0;
    for (const row of rows) sum += row[metric];
    mean[metric] = rows.length === 0 ? Number.NaN : sum / rows.length;
  }
  return mean;
}

/** Evaluates a run against qrels over the queries present in both (see the module comment for the rules). */
export function evaluateRun(run: Run, qrels: Qrels): RunEvaluation {
  const perQuery = new Map<string, MetricValues>();
  const notInQrels: string[] = [];
  for (const [queryId, docs] of run) {
    const judgments = qrels.get(queryId);
    if (judgments === undefined) {
      notInQrels.push(queryId);
      continue;
    }
    perQuery.set(queryId, evaluateQuery(docs, judgments, queryId));
  }
  const notInRun = [...qrels.keys()].filter((q) => !run.has(q));
  return { perQuery, mean: meanOf([...perQuery.values()]), queries: perQuery.size, skipped: { notInQrels, notInRun } };
}

/**
 * Mean overlap of the top-k ids of an approximate search with the exact top-k, query by query (lists aligned by
 * index): |approx_k ∩ exact_k| / |exact_k|. The denominator is k unless the exact list is shorter (tiny index).
 * Queries whose exact list is empty have nothing to recall and are skipped; NaN if every query is skipped.
 */
export function recallAgainst(
  approx: ReadonlyArray<ReadonlyArray<string | number>>,
  exact: ReadonlyArray<ReadonlyArray<string | number>>,
  k: number,
): number {
  if (approx.length !== exact.length) {
    throw new Error(`recallAgainst: ${approx.length} approximate result lists but ${exact.length} exact ones`);
  }
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`recallAgainst: k must be a positive integer, got ${k}`);
  let sum = 0;
  let counted = 0;
  exact.forEach((exactIds, i) => {
    const truth = new Set(exactIds.slice(0, k));
    if (truth.size === 0) return;
    const found = new Set((approx[i] ?? []).slice(0, k).filter((id) => truth.has(id)));
    sum += found.size / truth.size;
    counted++;
  });
  return counted === 0 ? Number.NaN : sum / counted;
}

export type PercentileMethod = 'linear' | 'nearest-rank';

/**
 * p-th percentile (0 ≤ p ≤ 100) of unsorted values. 'linear' (default) interpolates between closest ranks at
 * position p/100·(n−1), like numpy.percentile's default; 'nearest-rank' returns the ⌈p/100·n⌉-th smallest value
 * (the smallest for p = 0), always an observed value. NaN for an empty list.
 */
export function percentile(values: readonly number[], p: number, method: PercentileMethod = 'linear'): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile: p must be in [0, 100], got ${p}`);
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  if (method === 'nearest-rank') {
    const rank = Math.max(1, Math.ceil((p / 100) * n));
    return sorted[rank - 1] as number;
  }
  const position = (p / 100) * (n - 1);
  const lower = Math.floor(position);
  const upper = Math.min(lower + 1, n - 1);
  const lo = sorted[lower] as number;
  const hi = sorted[upper] as number;
  return lo + (hi - lo) * (position - lower);
}

/**
 * Turns a passage-level hit list into a document-level run (max-P): each document is represented by its
 * best-scoring passage, placed where that passage stood; the first of equal-scoring passages wins.
 * For a list already sorted by descending score this keeps each document's first hit.
 */
export function passagesToDocRun<H extends ScoredDoc>(hits: readonly H[]): H[] {
  const best = new Map<string, { hit: H; position: number }>();
  hits.forEach((hit, position) => {
    const current = best.get(hit.docId);
    if (current === undefined || hit.score > current.hit.score) best.set(hit.docId, { hit, position });
  });
  return [...best.values()].sort((a, b) => a.position - b.position).map((entry) => entry.hit);
}
