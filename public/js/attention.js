/**
 * Turns the reader's cross-attention report into what the page shades. No DOM here, so it is testable in Node.
 */

/** SentencePiece marks a word start with U+2581; the passage text has a plain space there. */
const WORD_START = /^[\u2581\s]+/;
/** Words and single punctuation marks, the units a reader sees in the passage text. */
const WORD = /[\p{L}\p{M}\p{N}]+|[^\s\p{L}\p{M}\p{N}]/gu;
const ALPHANUMERIC = /^[\p{L}\p{M}\p{N}]+$/u;
/**
 * Shorter word pieces ("s", "i") occur inside almost every word; marking them inside words would shade noise, so
 * they only mark whole words.
 */
const MIN_PIECE_LENGTH = 3;

/**
 * @param {string} token a passage or answer token as the API reports it
 * @returns {string} the comparable form: no word-start marker, lower case
 */
export function normalizeToken(token) {
  return token.replace(WORD_START, '').trim().toLowerCase();
}

/**
 * Summed weight per normalized token: the same piece can occur at several attended positions.
 * @param {ReadonlyArray<{token: string, weight: number}>} topTokens
 * @returns {Map<string, number>}
 */
export function tokenWeights(topTokens) {
  const weights = new Map();
  for (const { token, weight } of topTokens) {
    const key = normalizeToken(token);
    if (key === '' || !(weight > 0)) continue;
    weights.set(key, (weights.get(key) ?? 0) + weight);
  }
  return weights;
}

/**
 * Splits `text` into plain runs and runs to mark with the weight of the attended token they match: whole words
 * that equal a token, else pieces of at least MIN_PIECE_LENGTH letters found inside a word (heaviest first).
 * @param {string} text passage text
 * @param {Map<string, number>} weights from tokenWeights
 * @returns {Array<{text: string, weight?: number, token?: string}>} concatenating the texts gives back `text`
 */
export function highlightSegments(text, weights) {
  /** @type {Array<{start: number, end: number, weight: number, token: string}>} */
  const ranges = [];
  const pieces = [...weights.entries()]
    .filter(([token]) => token.length >= MIN_PIECE_LENGTH && ALPHANUMERIC.test(token))
    .sort((a, b) => b[1] - a[1]);
  for (const match of text.matchAll(WORD)) {
    const word = match[0];
    const start = match.index ?? 0;
    const lower = word.toLowerCase();
    const whole = weights.get(lower);
    if (whole !== undefined) {
      ranges.push({ start, end: start + word.length, weight: whole, token: lower });
      continue;
    }
    // Lower-casing that changes the length (rare Unicode) would misplace offsets; such words match only whole.
    if (lower.length !== word.length) continue;
    /** @type {Array<{start: number, end: number}>} */
    const taken = [];
    for (const [token, weight] of pieces) {
      if (token.length >= lower.length) continue;
      for (let at = lower.indexOf(token); at !== -1; at = lower.indexOf(token, at + 1)) {
        const end = at + token.length;
        if (taken.some((t) => at < t.end && end > t.start)) continue;
        taken.push({ start: at, end });
        ranges.push({ start: start + at, end: start + end, weight, token });
      }
    }
  }
  ranges.sort((a, b) => a.start - b.start);

  /** @type {Array<{text: string, weight?: number, token?: string}>} */
  const segments = [];
  let cursor = 0;
  for (const r of ranges) {
    if (r.start > cursor) segments.push({ text: text.slice(cursor, r.start) });
    segments.push({ text: text.slice(r.start, r.end), weight: r.weight, token: r.token });
    cursor = r.end;
  }
  if (cursor < text.length) segments.push({ text: text.slice(cursor) });
  return segments;
}

/**
 * The answer-token × passage matrix of attention shares; passages outside a token's reported top list count 0.
 * @param {ReadonlyArray<{passages: ReadonlyArray<{passageIndex: number, weight: number}>}>} tokenAttention
 * @param {number} passageCount
 * @returns {number[][]} one row per answer token, one column per passage
 */
export function attentionMatrix(tokenAttention, passageCount) {
  return tokenAttention.map((entry) => {
    const row = new Array(passageCount).fill(0);
    for (const p of entry.passages) {
      if (p.passageIndex >= 0 && p.passageIndex < passageCount) row[p.passageIndex] = p.weight;
    }
    return row;
  });
}
