// SQLite's FTS5 syntax: the one engine-specific piece of query text, so it comes from the SQLite module itself.
import { ftsMatchExpression } from '../store/sqlite/passage-tables.js';

const MAX_TERMS = 64;

/**
 * Function words that occur in nearly every passage. With OR semantics each of them makes FTS5 score almost the
 * whole corpus (10× slower on msmarco-mini) while adding next to nothing to BM25 (their IDF is ~0). They are dropped
 * unless the query consists of nothing else.
 */
const STOPWORDS = new Set(
  (
    'a an and are as at be but by for if in into is it no not of on or such that the their then there these they this to ' +
    'was will with what how who when where which do does did'
  ).split(' '),
);

/**
 * What FTS5's unicode61 tokenizer keeps inside a token, as far as JavaScript can tell: letters, digits, marks, and
 * also private-use and unassigned code points (unicode61 treats every character that is not a space or punctuation in
 * its Unicode 6.1 tables as a token character, so splitting on them would cut a token FTS5 keeps whole).
 */
const TOKEN_RUN = /[\p{L}\p{N}\p{M}\p{Co}\p{Cn}]+/gu;

/**
 * User text → the words a BM25 search looks for: token-character runs (so operators, column filters, prefixes,
 * parentheses and quotes in the input are plain words or dropped), without common stop-words unless nothing else is
 * left, at most 64. Empty when nothing searchable remains. Engines quote each word for their own query syntax.
 *
 * Each run is searched as typed and also in its NFKC form: the index holds the raw text (no NFKC), so a ligature
 * ("ﬁsh") or fullwidth ("ＡＢＣ") word copied from a document must stay as it is to be found there, while its NFKC form
 * finds the same word written plainly.
 */
export function queryTerms(text: string): string[] {
  const seen = new Set<string>();
  const unique: string[] = [];
  for (const run of text.match(TOKEN_RUN) ?? []) {
    for (const term of [run, ...(run.normalize('NFKC').match(TOKEN_RUN) ?? [])]) {
      const key = term.toLowerCase();
      if (seen.has(key)) continue;
      seen.add(key);
      unique.push(term);
    }
  }
  const content = unique.filter((term) => !STOPWORDS.has(term.toLowerCase()));
  return (content.length > 0 ? content : unique).slice(0, MAX_TERMS);
}

/** The FTS5 MATCH expression the embedded engine runs for `text` ('' when there is nothing to search). */
export function toFtsQuery(text: string): string {
  return ftsMatchExpression(queryTerms(text));
}
