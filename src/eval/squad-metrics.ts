/**
 * SQuAD answer metrics, matching the official evaluation scripts (evaluate-v1.1.py / evaluate-v2.0.py).
 *
 * normalize_answer = white_space_fix(remove_articles(remove_punc(lower(s)))), reproduced character for character:
 * - lower: `str.lower()` (String#toLowerCase agrees with Python 3.11 on every assigned Unicode 14 code point);
 * - remove_punc: drops exactly `string.punctuation` (ASCII !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~); Unicode punctuation
 *   such as ’ or — is kept, as in the official script;
 * - remove_articles: `re.sub(r'\b(a|an|the)\b', ' ', text)` where Python's `\b` is Unicode-aware: a word character is
 *   a letter, a number or '_' (JS `\b` is ASCII-only, so it is emulated with \p{L}\p{N}_ look-arounds);
 * - white_space_fix: `' '.join(text.split())` with Python's whitespace set (includes \x1c–\x1f and \x85, excludes
 *   U+FEFF and U+200B, unlike JS `\s`).
 *
 * Scores are in [0, 1] (the official scripts print 100×). For a question with several reference answers the
 * score is the maximum over references. Unanswerable questions (SQuAD v2, no references) follow evaluate-v2.0.py:
 * references that normalise to the empty string are dropped, and if none remain the only reference is '' — EM and
 * F1 are then 1 exactly when the prediction normalises to the empty string (e.g. '' or 'the').
 */

const ASCII_PUNCTUATION = /[!-/:-@[-`{-~]/g;
const ARTICLES = /(?<![\p{L}\p{N}_])(?:a|an|the)(?![\p{L}\p{N}_])/gu;
const PYTHON_WHITESPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;

/** The official SQuAD answer normalisation. */
export function normalizeAnswer(text: string): string {
  const withoutPunctuation = text.toLowerCase().replace(ASCII_PUNCTUATION, '');
  const withoutArticles = withoutPunctuation.replace(ARTICLES, ' ');
  return withoutArticles
    .split(PYTHON_WHITESPACE)
    .filter((token) => token !== '')
    .join(' ');
}

/** Tokens of the normalised answer (whitespace split), as both official scripts compute them. */
export function answerTokens(text: string): string[] {
  const normalized = normalizeAnswer(text);
  return normalized === '' ? [] : normalized.split(' ');
}

/** 1 if prediction and reference are equal after normalisation, else 0. */
export function exactMatch(prediction: string, reference: string): number {
  return normalizeAnswer(prediction) === normalizeAnswer(reference) ? 1 : 0;
}

/**
 * Token F1 with multiset (Counter) intersection. If either side has no tokens, F1 is 1 when both are empty and
 * 0 otherwise (evaluate-v2.0.py; evaluate-v1.1.py only differs when the reference normalises to '').
 */
export function tokenF1(prediction: string, reference: string): number {
  const predicted = answerTokens(prediction);
  const gold = answerTokens(reference);
  if (predicted.length === 0 || gold.length === 0) return predicted.length === gold.length ? 1 : 0;
  const goldCounts = new Map<string, number>();
  for (const token of gold) goldCounts.set(token, (goldCounts.get(token) ?? 0) + 1);
  let common = 0;
  for (const token of predicted) {
    const remaining = goldCounts.get(token) ?? 0;
    if (remaining > 0) {
      common++;
      goldCounts.set(token, remaining - 1);
    }
  }
  if (common === 0) return 0;
  const precision = common / predicted.length;
  const recall = common / gold.length;
  return (2 * precision * recall) / (precision + recall);
}

export interface AnswerScore {
  exactMatch: number;
  f1: number;
}

/** The references actually scored against: non-empty after normalisation, or [''] for an unanswerable question. */
export function effectiveReferences(references: readonly string[]): string[] {
  const kept = references.filter((reference) => normalizeAnswer(reference) !== '');
  return kept.length > 0 ? kept : [''];
}

/** EM and F1 of one prediction, each the maximum over the references. */
export function scoreAnswer(prediction: string, references: readonly string[]): AnswerScore {
  let best: AnswerScore = { exactMatch: 0, f1: 0 };
  for (const reference of effectiveReferences(references)) {
    best = {
      exactMatch: Math.max(best.exactMatch, exactMatch(prediction, reference)),
      f1: Math.max(best.f1, tokenF1(prediction, reference)),
    };
  }
  return best;
}

export interface AnswerEvaluation extends AnswerScore {
  count: number;
}

/** Mean EM and F1 over questions (NaN when there are none). */
export function evaluateAnswers(items: ReadonlyArray<{ prediction: string; answers: readonly string[] }>): AnswerEvaluation {
  let exact = 0;
  let f1 = 0;
  for (const item of items) {
    const score = scoreAnswer(item.prediction, item.answers);
    exact += score.exactMatch;
    f1 += score.f1;
  }
  const n = items.length;
  return { exactMatch: n === 0 ? Number.NaN : exact / n, f1: n === 0 ? Number.NaN : f1 / n, count: n };
}

const NON_WORD_RUN = /[^\p{L}\p{N}\p{M}]+/u;
const ARTICLE_TOKENS = new Set(['a', 'an', 'the']);

/**
 * Token string used for answer-in-passage matching: NFC-composed, lower-cased, split into runs of letters, numbers
 * and combining marks (DPR's SimpleTokenizer alphanumeric class), articles dropped, joined by single spaces.
 * Punctuation separates tokens here instead of being deleted as in normalizeAnswer, so 'gold' is found in
 * 'gold-themed' and 'Manning' in "Manning's".
 */
export function matchTokens(text: string): string {
  return text
    .normalize('NFC')
    .toLowerCase()
    .split(NON_WORD_RUN)
    .filter((token) => token !== '' && !ARTICLE_TOKENS.has(token))
    .join(' ');
}

/**
 * Index of the first passage containing any answer, or -1. An answer is contained when its matchTokens sequence
 * occurs contiguously, on token boundaries, in the passage's (` answer ` ⊂ ` passage `). Like DPR's has_answer
 * (match_type 'string': uncased token-sequence match) but looser: punctuation and symbol tokens and articles are
 * ignored on both sides, so 'the Beatles' matches 'Beatles' and '$5' matches '5'; it never matches inside a word
 * ('art' does not match 'party'). Answers with no tokens are ignored, so an unanswerable question never has a hit.
 */
export function firstPassageWithAnswer(answers: readonly string[], passageTexts: readonly string[]): number {
  const needles = answers
    .map(matchTokens)
    .filter((needle) => needle !== '')
    .map((needle) => ` ${needle} `);
  if (needles.length === 0) return -1;
  return passageTexts.findIndex((text) => {
    const haystack = ` ${matchTokens(text)} `;
    return needles.some((needle) => haystack.includes(needle));
  });
}

/** Whether any of the passages contains any of the answers (hit@k over the passages given); see firstPassageWithAnswer. */
export function answerInPassages(answers: readonly string[], passageTexts: readonly string[]): boolean {
  return firstPassageWithAnswer(answers, passageTexts) !== -1;
}
