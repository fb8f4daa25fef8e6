import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { quoteAround, splitAtSpan } from '../public/js/answer-span.js';
import { answerSpan, matchForm, normaliseForMatch } from '../src/service/answer-span.js';

/** The quoted text of the span `answerSpan` found, or undefined. */
function quoted(text: string, answer: string): string | undefined {
  const span = answerSpan(text, answer);
  return span ? text.slice(span.start, span.end) : undefined;
}

describe('answerSpan: where an extractive answer occurs in a passage', () => {
  it('finds the answer as written, with offsets into the original text', () => {
    const text = 'Ada Lovelace was born in London in 1815.';
    expect(answerSpan(text, 'London')).toEqual({ start: 25, end: 31 });
    expect(quoted(text, 'born in London')).toBe('born in London');
  });

  it('ignores case and runs of whitespace', () => {
    expect(quoted('The river  Thames\nflows east.', 'the RIVER thames')).toBe('The river  Thames');
    expect(quoted('Found in   Lake\tGeneva.', '  lake geneva ')).toBe('Lake\tGeneva');
  });

  it('ignores spaces around punctuation, both ways round', () => {
    expect(quoted('The road is 1,200 km long.', '1, 200 km')).toBe('1,200 km');
    expect(quoted('The road is 1, 200 km long.', '1,200 km')).toBe('1, 200 km');
    expect(quoted('Darwin (1809) wrote it.', '( 1809 )')).toBe('(1809)');
    expect(quoted('Darwin ( 1809 ) wrote it.', '(1809)')).toBe('( 1809 )');
    expect(quoted("It isn't far.", "isn ' t")).toBe("isn't");
  });

  it('matches across Unicode normalisation forms and typographic punctuation', () => {
    const decomposed = 'She lives in Zu\u0308rich now.';
    expect(quoted(decomposed, 'Z\u00fcrich')).toBe('Zu\u0308rich');
    expect(quoted('She lives in Z\u00fcrich now.', 'zu\u0308rich')).toBe('Z\u00fcrich');
    // NFKC: a ligature and a full-width digit read as their plain letters.
    expect(quoted('The \ufb01rst of \uff17 ships.', 'first of 7')).toBe('\ufb01rst of \uff17');
    expect(quoted('He said \u201cnever\u201d \u2013 twice.', '"never" - twice')).toBe('\u201cnever\u201d \u2013 twice');
  });

  it('prefers an occurrence bounded by word boundaries, else takes one inside a word', () => {
    // "red" occurs first inside "Fredrik"; the whole word comes later.
    const text = 'Fredrik likes the colour red best.';
    expect(answerSpan(text, 'red')).toEqual({ start: text.lastIndexOf('red'), end: text.lastIndexOf('red') + 3 });
    expect(answerSpan('Fredrik was here.', 'red')).toEqual({ start: 1, end: 4 });
  });

  it('keeps a leading or trailing punctuation mark of the answer inside the span', () => {
    const text = 'It was built in (about) 1858.';
    expect(quoted(text, '(about)')).toBe('(about)');
    expect(quoted(text, '1858.')).toBe('1858.');
  });

  it('gives undefined for a blank answer or one the passage does not contain', () => {
    expect(answerSpan('Some text.', '')).toBeUndefined();
    expect(answerSpan('Some text.', ' \n\t ')).toBeUndefined();
    expect(answerSpan('Some text.', 'other')).toBeUndefined();
    expect(answerSpan('', 'text')).toBeUndefined();
    // Words run together are another word, not a spacing difference.
    expect(answerSpan('New York', 'newyork')).toBeUndefined();
  });

  it('maps astral characters to both of their UTF-16 units', () => {
    const text = 'Emoji \u{1F600} then Paris.';
    expect(quoted(text, 'paris')).toBe('Paris');
    expect(quoted(text, '\u{1F600} then')).toBe('\u{1F600} then');
    const form = matchForm('\u{1F600}');
    expect(form.text).toBe('\u{1F600}');
    expect(form.starts).toEqual([0, 0]);
    expect(form.ends).toEqual([2, 2]);
  });

  // Texts of words (some with composed or decomposed accents), punctuation and whitespace runs; an answer is a run
  // of them from a word start to a word end, then changed the way a detokeniser changes it.
  const word = fc.oneof(
    fc.stringMatching(/^[a-zA-Z0-9]{1,7}$/),
    fc.constantFrom('caf\u00e9', 'cafe\u0301', 'Z\u00fcrich', '\u00c5ngstr\u00f6m', '\ufb01ne'),
  );
  const separator = fc.constantFrom(' ', '  ', '\n', ', ', ' , ', '. ', '(', ') ', ' - ', "'", '\t', ': ');
  const textParts = fc.array(fc.tuple(word, separator), { minLength: 1, maxLength: 25 });
  const respaced = (s: string, how: number) => {
    if (how === 0) return s;
    if (how === 1) return s.replace(/\s*([,.():'-])\s*/g, '$1');
    if (how === 2) return s.replace(/([,.():'-])/g, ' $1 ');
    return s.replace(/\s+/g, '   ');
  };
  const recased = (s: string, how: number) => (how === 0 ? s : how === 1 ? s.toUpperCase() : s.toLowerCase());

  it('finds every word-bounded run of a text, however the answer is cased, spaced or normalised', () => {
    fc.assert(
      fc.property(
        textParts,
        fc.nat(),
        fc.nat(),
        fc.nat({ max: 3 }),
        fc.nat({ max: 2 }),
        fc.constantFrom('NFC', 'NFD', 'NFKC') as fc.Arbitrary<'NFC' | 'NFD' | 'NFKC'>,
        (parts, a, b, spacing, casing, form) => {
          const text = parts.map(([w, s]) => w + s).join('');
          const first = a % parts.length;
          const last = first + (b % (parts.length - first));
          // From the first word's start to the last word's end: the separators in between, not the one after.
          const run = parts
            .slice(first, last + 1)
            .map(([w, s], i) => (i === last - first ? w : w + s))
            .join('');
          const answer = recased(respaced(run, spacing), casing).normalize(form);
          const span = answerSpan(text, answer);
          expect(span, `${JSON.stringify(answer)} in ${JSON.stringify(text)}`).toBeDefined();
          expect(span!.start).toBeLessThan(span!.end);
          expect(normaliseForMatch(text.slice(span!.start, span!.end))).toBe(normaliseForMatch(answer));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('never returns a span outside the text, for any text and answer', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 60 }), fc.string({ unit: 'grapheme', maxLength: 8 }), (text, answer) => {
        const span = answerSpan(text, answer);
        if (!span) return;
        expect(span.start).toBeGreaterThanOrEqual(0);
        expect(span.end).toBeLessThanOrEqual(text.length);
        expect(span.start).toBeLessThan(span.end);
      }),
      { numRuns: 300 },
    );
  });
});

describe('playground quote of the answer in its passage', () => {
  const text = `${'lorem ipsum '.repeat(20)}the answer is Thistleford, a town ${'dolor sit amet '.repeat(20)}`;
  const start = text.indexOf('Thistleford');
  const span = { start, end: start + 'Thistleford'.length };

  it('quotes up to `context` characters either side, cut at whitespace, with ellipses where it was cut', () => {
    const quote = quoteAround(text, span, 40);
    expect(quote.answer).toBe('Thistleford');
    expect(quote.before.startsWith('\u2026')).toBe(true);
    expect(quote.after.endsWith('\u2026')).toBe(true);
    expect(quote.before.length).toBeLessThanOrEqual(41);
    expect(quote.after.length).toBeLessThanOrEqual(41);
    expect(quote.before.endsWith('the answer is ')).toBe(true);
    expect(quote.after.startsWith(', a town')).toBe(true);
    // Whole words only: the quote starts and ends on word boundaries of the text.
    expect(text).toContain(quote.before.slice(1) + quote.answer + quote.after.slice(0, -1));
    expect(quote.before.slice(1, 2)).not.toBe(' ');
  });

  it('adds no ellipsis where the passage itself starts or ends', () => {
    const quote = quoteAround('Born in Thistleford.', { start: 8, end: 19 }, 120);
    expect(quote).toEqual({ before: 'Born in ', answer: 'Thistleford', after: '.' });
  });

  it('splits highlight segments at the span, keeping every segment and its weight', () => {
    const segments = [
      { text: 'Born ' },
      { text: 'in', weight: 0.2, token: 'in' },
      { text: ' Thistle' },
      { text: 'ford', weight: 0.5, token: 'ford' },
      { text: '.' },
    ];
    const split = splitAtSpan(segments, { start: 5, end: 19 });
    expect(split.inside).toEqual([
      { text: 'in', weight: 0.2, token: 'in' },
      { text: ' Thistle' },
      { text: 'ford', weight: 0.5, token: 'ford' },
    ]);
    expect(split.before).toEqual([{ text: 'Born ' }]);
    expect(split.after).toEqual([{ text: '.' }]);
    // A segment across a span boundary is cut in two that keep its weight.
    const cut = splitAtSpan(segments, { start: 9, end: 20 });
    expect(cut.before.map((s) => s.text).join('')).toBe('Born in T');
    expect(cut.inside[0]).toEqual({ text: 'histle' });
    expect(cut.inside.map((s) => s.text).join('')).toBe('histleford.');
    expect(cut.after).toEqual([]);
  });
});
