/**
 * Property-based tests (fast-check) for the two places where arbitrary user text meets exact machinery: the
 * token-aware chunker (real bge WordPiece tokenizer) and the BM25 query builder (real SQLite FTS5).
 * Failures print the seed and the shrunk counterexample; `FC_SEED=<n>` replays a run, `FC_RUNS_SCALE=<k>` runs k× more cases.
 */
import path from 'node:path';
import { AutoTokenizer, env, type PreTrainedTokenizer } from '@xenova/transformers';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkDocument, chunkText, tokenCounter, type CountTokens, type TextChunk } from '../src/ingest/index.js';
import { toFtsQuery } from '../src/retrieval/index.js';
import { REPO_ROOT } from './helpers/fixtures.js';

const SHARED_MODELS = path.resolve(REPO_ROOT, '../shared/models');
const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;
/** `FC_RUNS_SCALE=10` runs every property ten times as often (a longer hunt than CI's). */
const scale = Number(process.env.FC_RUNS_SCALE ?? 1);
const runs = (numRuns: number) => ({ numRuns: Math.max(1, Math.round(numRuns * scale)), seed });

let tokenizer: PreTrainedTokenizer;
let count: CountTokens;

beforeAll(async () => {
  env.localModelPath = SHARED_MODELS;
  env.allowRemoteModels = false;
  tokenizer = await AutoTokenizer.from_pretrained('bge-small-en-v1.5');
  count = tokenCounter(tokenizer);
});

// ---------------------------------------------------------------- generators

const WORDS = [
  'the',
  'river',
  'flows',
  'north',
  'through',
  'ancient',
  'forests',
  'photosynthesis',
  'unbelievably',
  'Mr.',
  'Dr.',
  'e.g.',
  'etc.',
  'U.S.',
  '3.14',
  '1,000,000',
  "don't",
  'naïve',
  'café',
  'Zürich',
  'Αθήνα',
  'Москва',
  '東京',
  '北京大学',
  'مرحبا',
  'שלום',
  'हिन्दी',
  '😀',
  '👩‍👩‍👧',
  '🇫🇷',
  'e\u0301',
  'ﬁsh',
  'ＡＢＣ',
  'x\u200by',
  '\u00ad',
  '$100',
  'C++',
  'https://example.com/a/very/long/path?with=query&and=more#fragment',
];
const LONG_WORDS = [
  'x7Qz'.repeat(40),
  'Donaudampfschifffahrtsgesellschaftskapitän',
  '東京都'.repeat(30),
  '😀'.repeat(50),
  'ab'.repeat(120),
];
const SEPARATORS = [
  ' ',
  ' ',
  ' ',
  '  ',
  '\n',
  '\n\n',
  '\t',
  '\u00a0',
  '\u3000',
  '. ',
  '! ',
  '? ',
  '; ',
  ', ',
  '.\n\n',
  '...',
  ' — ',
  '"',
  "'",
  '(',
  ')',
];

const word = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(...WORDS) },
  { weight: 1, arbitrary: fc.constantFrom(...LONG_WORDS) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme-composite', minLength: 1, maxLength: 6 }) },
);
const separator = fc.constantFrom(...SEPARATORS);

/** Prose-like text with every kind of trouble mixed in: sentence ends, long words, scripts, emoji, odd whitespace. */
const text = fc.array(fc.tuple(word, separator), { minLength: 0, maxLength: 120 }).map((pairs) => pairs.map(([w, s]) => w + s).join(''));

const chunkOptions = fc
  .integer({ min: 1, max: 64 })
  .chain((maxTokens) => fc.record({ maxTokens: fc.constant(maxTokens), overlapTokens: fc.integer({ min: 0, max: maxTokens - 1 }) }));

// ---------------------------------------------------------------- chunker

const sentenceSegmenter = new Intl.Segmenter('en', { granularity: 'sentence' });

/** Start offsets of the non-blank sentences, as UAX #29 segments them. */
function sentenceStarts(input: string): number[] {
  const starts: number[] = [];
  for (const { index, segment } of sentenceSegmenter.segment(input)) {
    const lead = segment.search(/\S/u);
    if (lead >= 0) starts.push(index + lead);
  }
  return starts;
}

function uncovered(input: string, chunks: TextChunk[]): number[] {
  const covered = new Uint8Array(input.length);
  for (const c of chunks) covered.fill(1, c.start, c.end);
  const missing: number[] = [];
  for (let i = 0; i < input.length; i++) if (!covered[i] && !/\s/.test(input[i]!)) missing.push(i);
  return missing;
}

describe('chunker properties (bge WordPiece tokenizer)', () => {
  it('passages are exact, ordered spans that cover every non-whitespace character', () => {
    fc.assert(
      fc.property(text, chunkOptions, (input, options) => {
        const chunks = chunkText(input, count, options);
        for (const [i, c] of chunks.entries()) {
          expect(c.text).toBe(input.slice(c.start, c.end));
          expect(c.start).toBeLessThan(c.end);
          // No passage starts or ends with whitespace, nor inside a surrogate pair.
          expect(/\s/.test(c.text[0]!) || /\s/.test(c.text.at(-1)!)).toBe(false);
          expect(c.text.isWellFormed() || !input.isWellFormed()).toBe(true);
          if (i > 0) {
            const prev = chunks[i - 1]!;
            expect(c.start).toBeGreaterThan(prev.start);
            expect(c.end).toBeGreaterThan(prev.end);
          }
        }
        expect(uncovered(input, chunks)).toEqual([]);
        // Nothing to index gives no passage at all.
        expect(chunks.length === 0).toBe(input.trim() === '');
      }),
      runs(300),
    );
  });

  it('every passage is within the token budget, counted with the real tokenizer', () => {
    fc.assert(
      fc.property(text, chunkOptions, (input, options) => {
        for (const c of chunkText(input, count, options)) {
          expect(c.tokens).toBe(count(c.text));
          // One code point is the smallest piece: NFD turns a Hangul syllable into three jamo tokens, so under a
          // budget of 1 or 2 (the config allows no less than 16) it stands alone over the budget.
          if ([...c.text].length > 1) expect(c.tokens).toBeLessThanOrEqual(options.maxTokens);
        }
      }),
      runs(300),
    );
  });

  it('passages overlap by at most overlapTokens and never by a whole passage', () => {
    fc.assert(
      fc.property(text, chunkOptions, (input, options) => {
        const chunks = chunkText(input, count, options);
        for (let i = 1; i < chunks.length; i++) {
          const prev = chunks[i - 1]!;
          const cur = chunks[i]!;
          if (options.overlapTokens === 0) expect(cur.start).toBeGreaterThanOrEqual(prev.end);
          if (cur.start < prev.end) expect(count(input.slice(cur.start, prev.end))).toBeLessThanOrEqual(options.overlapTokens);
        }
      }),
      runs(200),
    );
  });

  it('is deterministic: the same document gives the same passages and ids', () => {
    const doc = fc.record({ id: fc.string({ minLength: 1, maxLength: 20 }), title: fc.string({ maxLength: 20 }), text });
    fc.assert(
      fc.property(doc, chunkOptions, (d, options) => {
        const a = chunkDocument({ ...d, metadata: { k: 1 } }, count, options);
        const b = chunkDocument({ ...d, metadata: { k: 1 } }, count, options);
        expect(b).toEqual(a);
        expect(new Set(a.map((p) => p.id)).size).toBe(a.length);
        a.forEach((p, i) => {
          expect(p.id).toBe(`${d.id}#${i}`);
          expect(p.chunkNo).toBe(i);
          expect(d.text.slice(p.charStart, p.charEnd)).toBe(p.text);
        });
      }),
      runs(100),
    );
  });

  /**
   * What appending text to a document really preserves. The chunker packs greedily from the start, so only units at
   * the end can change, but two things reach back further than the last passage:
   * - sentence segmentation (UAX #29 rule SB8) looks ahead: in "Hi there. 1" the break after "there." exists only
   *   because no lowercase word follows; appending " lower" removes it and merges the last two sentences;
   * - WordPiece counts are not monotonic in a word: appending letters to the last word can make it cheaper
   *   ("unbeliev" costs more than "unbelievable"), so it may fit into an earlier passage.
   * Hence: with a continuation that starts on a new line (a hard sentence break), every passage but the last is kept;
   * with any continuation, every passage that ends before the original's second-to-last sentence is kept.
   */
  const continuationText = fc.array(fc.tuple(fc.constantFrom('lower', 'words', 'Upper', '7', '2024', 'x', 'ing', '##', '.'), separator), {
    maxLength: 30,
  });
  /** Texts that end in a digits-only sentence or in half a word, where appending bites hardest. */
  const appendableText = fc
    .tuple(text, fc.constantFrom('', ' 1', '. 42', '. 3 4', ' unbeliev', ' photosynth', '. Hi there. 1'))
    .map(([t, end]) => t + end);

  it('appending after a line break keeps every passage but the last (ids, texts, spans)', () => {
    const continuation = fc
      .tuple(fc.constantFrom('\n', '\n\n', '\r\n', '\u2029'), continuationText, text)
      .map(([sep, words, more]) => sep + words.map(([w, s]) => w + s).join('') + more);
    fc.assert(
      fc.property(appendableText, continuation, chunkOptions, (input, more, options) => {
        const doc = { id: 'doc', title: 't', metadata: {} };
        const before = chunkDocument({ ...doc, text: input }, count, options);
        const after = chunkDocument({ ...doc, text: input + more }, count, options);
        expect(after.length).toBeGreaterThanOrEqual(before.length);
        expect(after.slice(0, Math.max(0, before.length - 1))).toEqual(before.slice(0, -1));
      }),
      runs(300),
    );
  });

  it('appending anything keeps every passage that ends before the second-to-last sentence', () => {
    const continuation = fc
      .tuple(fc.constantFrom('', ' ', '  ', '\t'), continuationText, text)
      .map(([sep, words, more]) => sep + words.map(([w, s]) => w + s).join('') + more);
    fc.assert(
      fc.property(appendableText, continuation, chunkOptions, (input, more, options) => {
        const doc = { id: 'doc', title: 't', metadata: {} };
        const before = chunkDocument({ ...doc, text: input }, count, options);
        const after = chunkDocument({ ...doc, text: input + more }, count, options);
        const starts = sentenceStarts(input);
        const stable = starts.length >= 2 ? starts[starts.length - 2]! : 0;
        const kept = before.filter((p) => p.charEnd <= stable);
        expect(after.slice(0, kept.length)).toEqual(kept);
      }),
      runs(300),
    );
  });

  it('a lowercase continuation can merge the last two sentences and change the second-to-last passage', () => {
    const options = { maxTokens: 6, overlapTokens: 0 };
    expect(chunkText('Go now. Hi there. 1', count, options).map((c) => c.text)).toEqual(['Go now. Hi there.', '1']);
    expect(chunkText('Go now. Hi there. 1 lower', count, options).map((c) => c.text)).toEqual(['Go now.', 'Hi there. 1 lower']);
  });

  it('appending without a separator can change more than the last passage (documented limit)', () => {
    // A word's prefix can cost more WordPiece tokens than the whole word ("unbeliev" > "unbelievable"). Text "a <prefix>"
    // over a budget of count(word)+1 tokens is two passages; completing the word shrinks the last unit, and "a <word>"
    // fits one passage: the first passage changes. This pins the behaviour the previous property excludes.
    const witness = findPrefixCostlierThanWord();
    expect(witness, 'expected a word with a prefix one token costlier than the word').toBeDefined();
    const { prefix, word: whole } = witness!;
    const options = { maxTokens: count(whole) + 1, overlapTokens: 0 };
    const doc = { id: 'doc', title: 't', metadata: {} };
    const before = chunkDocument({ ...doc, text: `a ${prefix}` }, count, options);
    const after = chunkDocument({ ...doc, text: `a ${whole}` }, count, options);
    expect(before.map((p) => p.text)).toEqual(['a', prefix]);
    expect(after.map((p) => p.text)).toEqual([`a ${whole}`]);
  });
});

/** A word with a prefix that costs exactly one token more than the word, searched in a small fixed list. */
function findPrefixCostlierThanWord(): { prefix: string; word: string } | undefined {
  const candidates = [
    'unbelievable',
    'photosynthesis',
    'international',
    'transformation',
    'philosophy',
    'mathematics',
    'electroencephalography',
  ];
  for (const w of candidates) {
    const whole = count(w);
    for (let i = 1; i < w.length; i++) {
      if (count(w.slice(0, i)) === whole + 1) return { prefix: w.slice(0, i), word: w };
    }
  }
  return undefined;
}

// ---------------------------------------------------------------- FTS5 query escaping

describe('BM25 query escaping properties (SQLite FTS5, porter unicode61)', () => {
  let db: Database.Database;
  let insert: Database.Statement;
  let match: Database.Statement;
  let clear: Database.Statement;

  beforeAll(() => {
    db = new Database(':memory:');
    // The same tokenizer as the store's passages_fts table.
    db.exec("CREATE VIRTUAL TABLE docs USING fts5(title, text, tokenize='porter unicode61')");
    db.exec("CREATE VIRTUAL TABLE docs_terms USING fts5vocab(docs, 'instance')");
    insert = db.prepare('INSERT INTO docs(rowid, title, text) VALUES (?, ?, ?)');
    match = db.prepare('SELECT rowid FROM docs WHERE docs MATCH ? ORDER BY rowid');
    clear = db.prepare('DELETE FROM docs');
  });

  afterAll(() => db?.close());

  const FTS_SYNTAX = [
    '"',
    '""',
    '*',
    'NEAR',
    'NEAR(',
    'AND',
    'OR',
    'NOT',
    '^',
    ':',
    '(',
    ')',
    '-',
    '+',
    '{',
    '}',
    'title:',
    'text :',
    'NEAR(a b, 2)',
    '{title text}:x',
    "'",
    ';',
    '--',
    '\\',
    '\u0000',
  ];
  /** Arbitrary code points and lone surrogates, with FTS5 syntax mixed in. */
  const hostile = fc
    .array(
      fc.oneof(
        fc.string({ unit: 'binary', maxLength: 8 }),
        fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 4 }),
        fc.constantFrom(...FTS_SYNTAX),
        fc.constantFrom(...WORDS),
      ),
      { maxLength: 30 },
    )
    .map((parts) => parts.join(' '));

  it('the generated expression never throws in a real FTS5 MATCH, and is empty only when there is nothing to search', () => {
    clear.run();
    insert.run(1, 'title', 'some text with words');
    fc.assert(
      fc.property(hostile, (query) => {
        const expression = toFtsQuery(query);
        if (expression === '') {
          // The store skips MATCH for ''; that must mean the text has no letter or digit at all.
          expect(/[\p{L}\p{N}]/u.test(query)).toBe(false);
          return;
        }
        expect(() => match.all(expression)).not.toThrow();
      }),
      runs(1000),
    );
  });

  /** Terms FTS5 itself indexes from a text (stemmed, case-folded), read back through fts5vocab. */
  function indexedTerms(text: string): string[] {
    insert.run(99, '', text);
    const terms = (db.prepare('SELECT term FROM docs_terms WHERE doc = 99').all() as Array<{ term: string }>).map((r) => r.term);
    db.prepare('DELETE FROM docs WHERE rowid = 99').run();
    return terms;
  }

  /**
   * A word: a run of characters that both JavaScript and unicode61 count as token characters, from every script
   * plus compatibility forms (ligatures, fullwidth), combining marks, private-use and unassigned code points.
   */
  const tokenChar = fc
    .oneof(
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
      fc.constantFrom('ﬁ', 'ﬂ', 'Ａ', 'ｂ', '１', 'é', 'e\u0301', 'ß', 'İ', 'ǅ', '²', '½', 'Ⅻ', '\ue000', '東', 'ж', 'a', 'Z', '7'),
    )
    .filter((c) => /^[\p{L}\p{N}\p{M}\p{Co}\p{Cn}]+$/u.test(c));
  const tokenWord = fc.oneof(
    fc.constantFrom(...WORDS.filter((w) => /^[\p{L}\p{N}\p{M}]+$/u.test(w))),
    fc.array(tokenChar, { minLength: 1, maxLength: 10 }).map((cs) => cs.join('')),
  );
  /** Characters both sides treat as separators (assigned as space, punctuation or symbol before Unicode 6.1). */
  const wordSeparator = fc.constantFrom(
    ' ',
    '  ',
    '\n',
    '\t',
    '\u3000',
    '. ',
    ', ',
    '-',
    '/',
    '"',
    '(',
    ')',
    '*',
    ':',
    '^',
    '+',
    '😀',
    '€',
    '→',
    ' AND ',
    ' NEAR ',
  );

  it('a document containing the query words is found, whatever the script or normal form', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(tokenWord, wordSeparator), { minLength: 1, maxLength: 12 }), fc.nat(), (pairs, pick) => {
        const words = pairs.map(([w]) => w);
        const body = pairs.map(([w, sep]) => w + sep).join('');
        clear.run();
        insert.run(1, '', body);
        insert.run(2, '', 'unrelated filler passage');
        const matches = (query: string) => match.all(toFtsQuery(query)).map((r) => (r as { rowid: number }).rowid);
        if (indexedTerms(body).length > 0) expect(matches(body)).toContain(1);
        // One word of the document, and the same word in another normal form, find it too.
        const word = words[pick % words.length]!;
        for (const variant of [word, word.normalize('NFKC'), word.normalize('NFD'), word.toUpperCase()]) {
          if (indexedTerms(variant).length > 0 && indexedTerms(word).length > 0 && sameTerms(variant, word)) {
            expect(matches(variant), `${JSON.stringify(variant)} in ${JSON.stringify(body)}`).toContain(1);
          }
        }
      }),
      runs(1000),
    );
  });

  /** Whether FTS5 reduces two spellings to the same terms (then a query in one must find a document in the other). */
  function sameTerms(a: string, b: string): boolean {
    return JSON.stringify(indexedTerms(a).sort()) === JSON.stringify(indexedTerms(b).sort());
  }

  it('finds ligature and fullwidth words as written in the document, and NFKC spellings of plain words', () => {
    clear.run();
    insert.run(1, '', 'The ﬁsh market of ＴＯＫＹＯ');
    insert.run(2, '', 'fish in tokyo');
    const rows = (q: string) => match.all(toFtsQuery(q)).map((r) => (r as { rowid: number }).rowid);
    expect(rows('ﬁsh')).toEqual([1, 2]);
    expect(rows('ＴＯＫＹＯ')).toEqual([1, 2]);
    expect(rows('fish')).toEqual([2]);
  });

  it('FTS5 operators in the input are searched as plain words, never interpreted', () => {
    clear.run();
    insert.run(1, '', 'alpha beta gamma delta');
    insert.run(2, 'near', 'title words');
    const rows = (q: string) => match.all(toFtsQuery(q)).map((r) => (r as { rowid: number }).rowid);
    // Interpreted, each of these would exclude row 1 (or fail); as words (AND, NOT are stopwords) they find it.
    expect(rows('alpha NOT beta')).toContain(1);
    expect(rows('alpha AND zeta')).toContain(1);
    expect(rows('NEAR(alpha delta, 0)')).toContain(1);
    // A column filter would search only titles; as words "title" finds row 2's text.
    expect(rows('title:zeta')).toEqual([2]);
    // A prefix query would match "gamma".
    expect(rows('gam*')).toEqual([]);
    expect(rows('"alpha')).toEqual([1]);
  });
});
