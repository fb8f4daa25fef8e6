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
 * User text → an FTS5 MATCH expression that cannot be FTS syntax: the text is cut into letter/digit runs (roughly
 * what the unicode61 tokenizer keeps), each run becomes a quoted FTS5 string, and the strings are OR-ed. Operators
 * (AND, NEAR, NOT), column filters (`title:`), prefixes (`*`), parentheses and quotes in the input are thereby plain
 * words or dropped. Returns '' when nothing searchable remains.
 */
export function toFtsQuery(text: string): string {
  const runs = text.normalize('NFKC').match(/[\p{L}\p{N}\p{M}]+/gu) ?? [];
  const seen = new Set<string>();
  const unique: string[] = [];
  for (const run of runs) {
    const key = run.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    unique.push(run);
  }
  const content = unique.filter((term) => !STOPWORDS.has(term.toLowerCase()));
  const terms = (content.length > 0 ? content : unique).slice(0, MAX_TERMS);
  return terms.map((term) => `"${term.replaceAll('"', '""')}"`).join(' OR ');
}
