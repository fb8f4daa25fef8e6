/**
 * The answer's span in its cited passage (the API's `answerSpan`), as the page shows it: a quote around it, and the
 * passage's highlight segments split where it starts and ends. No DOM here, so it is testable in Node.
 */

/** Characters of context quoted on each side of the answer. */
export const QUOTE_CONTEXT = 120;
const ELLIPSIS = '\u2026';
const SPACE = /\s/;

/**
 * Where a quote's context before `start` begins: `start - context`, moved forward past the first whitespace so the
 * quote opens on a whole word (unless the window is a single word).
 * @param {string} text
 * @param {number} from
 * @param {number} start
 */
function openingCut(text, from, start) {
  if (from <= 0 || SPACE.test(text[from - 1] ?? '')) return Math.max(0, from);
  for (let i = from; i < start; i++) if (SPACE.test(text[i] ?? '')) return i + 1;
  return from;
}

/**
 * Where a quote's context after `end` stops: `end + context`, moved back to the last whitespace so the quote closes on
 * a whole word (unless the window is a single word).
 * @param {string} text
 * @param {number} end
 * @param {number} to
 */
function closingCut(text, end, to) {
  if (to >= text.length || SPACE.test(text[to] ?? '')) return Math.min(text.length, to);
  for (let i = to - 1; i > end; i--) if (SPACE.test(text[i] ?? '')) return i;
  return to;
}

/**
 * The answer with up to `context` characters of its passage on each side, cut at whitespace; `before` opens and
 * `after` closes with an ellipsis where the passage goes on.
 * @param {string} text passage text
 * @param {{start: number, end: number}} span offsets into `text`
 * @param {number} [context]
 * @returns {{before: string, answer: string, after: string}}
 */
export function quoteAround(text, span, context = QUOTE_CONTEXT) {
  const from = openingCut(text, span.start - context, span.start);
  const to = closingCut(text, span.end, span.end + context);
  const before = text.slice(from, span.start);
  const after = text.slice(span.end, to);
  return {
    before: from > 0 ? ELLIPSIS + before.trimStart() : before,
    answer: text.slice(span.start, span.end),
    after: to < text.length ? after.trimEnd() + ELLIPSIS : after,
  };
}

/**
 * The segments before, inside and after `span`; a segment across either end is cut in two, both keeping its weight,
 * so the attention shading looks the same with the span marked.
 * @template {{text: string}} S
 * @param {S[]} segments concatenating to the passage text
 * @param {{start: number, end: number}} span
 * @returns {{before: S[], inside: S[], after: S[]}}
 */
export function splitAtSpan(segments, span) {
  /** @type {{before: S[], inside: S[], after: S[]}} */
  const parts = { before: [], inside: [], after: [] };
  let offset = 0;
  for (const segment of segments) {
    const start = offset;
    const end = offset + segment.text.length;
    offset = end;
    /** @type {Array<['before' | 'inside' | 'after', number, number]>} */
    const pieces = [
      ['before', start, Math.min(end, span.start)],
      ['inside', Math.max(start, span.start), Math.min(end, span.end)],
      ['after', Math.max(start, span.end), end],
    ];
    for (const [where, from, to] of pieces) {
      if (to <= from) continue;
      const whole = from === start && to === end;
      parts[where].push(whole ? segment : { ...segment, text: segment.text.slice(from - start, to - start) });
    }
  }
  return parts;
}
