export {
  RETRIEVAL_METRICS,
  compareCodePoints,
  compareTrecOrder,
  evaluateQuery,
  evaluateRun,
  passagesToDocRun,
  percentile,
  rankTrecOrder,
  recallAgainst,
} from './retrieval-metrics.js';
export type { MetricValues, PercentileMethod, Qrels, RetrievalMetric, Run, RunEvaluation, ScoredDoc } from './retrieval-metrics.js';
export { loadBeirDataset, parseQrels, readBeirCorpus, readBeirQueries, readQrels } from './beir.js';
export type { BeirDataset, BeirDocument } from './beir.js';
export {
  answerInPassages,
  answerTokens,
  effectiveReferences,
  evaluateAnswers,
  exactMatch,
  firstPassageWithAnswer,
  matchTokens,
  normalizeAnswer,
  scoreAnswer,
  tokenF1,
} from './squad-metrics.js';
export type { AnswerEvaluation, AnswerScore } from './squad-metrics.js';
export { loadSquad, parseSquad } from './squad-data.js';
export type { SquadDataset, SquadParagraph, SquadQuestion } from './squad-data.js';
export { DatasetFormatError } from './dataset-error.js';
export { argmax, citationThresholds, isGoldPassage, summarizeAttribution } from './attribution-eval.js';
export type { AttributionCase, AttributionReport, MethodSummary, ThresholdRow } from './attribution-eval.js';
