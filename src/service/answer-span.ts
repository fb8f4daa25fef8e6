/**
 * Where an extractive answer sits in a passage. The reader copies spans, but T5's SentencePiece round trip does not
 * give the characters back as written: it applies NFKC, and its detokeniser moves spaces around punctuation ("1,200"
 * can come back as "1, 200", "(1858)" as "( 1858 )"). So the answer and the passage are compared in a normalised form
 * that forgets exactly those differences, with a map from every normalised character back to the original offsets.
 */

/** Character offsets into the passage text as the API returns it: `text.slice(start, end)` is the quoted answer. */
export interface AnswerSpan {
  start: number;
  end: number;
}

/** A normalised copy of a text; `starts[i]`/`ends[i]` bound the original characters `text[i]` came from. */
export interface MatchForm {
  text: string;
  starts: number[];
  ends: number[];
}

const MARK = /\p{M}/u;
const SPACE = /\s/u;
const WORD = /[\p{L}\p{N}\p{M}]/u;
/** Soft hyphens, zero-width spaces and joiners: the tokeniser drops them, so matching does too. */
const INVISIBLE = /\p{Cf}/u;
/** Typographic quotes and dashes outside T5's vocabulary, as the ASCII characters a reader would write instead. */
const FOLDED: Readonly<Record<string, string>> = {
  '\u2018': "'",
  '\u2019': "'",
  '\u201a': "'",
  '\u201b': "'",
  '\u201c': '"',
  '\u201d': '"',
  '\u201e': '"',
  '\u201f': '"',
  '\u2010': '-',
  '\u2011': '-',
  '\u2012': '-',
  '\u2013': '-',
  '\u2014': '-',
  '\u2212': '-',
};
/** Combining marks start at U+0300: below it a code point never extends the one before (the common, ASCII case). */
const FIRST_MARK = 0x300;

type Kind = 'word' | 'punct';

/**
 * Accumulates the normalised form: words keep their inner letters together, every punctuation mark becomes a token of
 * its own, and tokens are separated by exactly one space. Thus "1,200 km", "1, 200 km" and "1 , 200  KM" all read
 * "1 , 200 km", and a space in the normalised form always marks a token boundary.
 */
class MatchFormBuilder {
  private readonly parts: string[] = [];
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private previous: Kind | undefined;
  private gap = false;

  /** One normalised character `ch` that came from the original characters [start, end). */
  push(ch: string, start: number, end: number): void {
    if (SPACE.test(ch)) {
      this.gap = true;
      return;
    }
    if (INVISIBLE.test(ch)) return;
    const folded = FOLDED[ch] ?? ch;
    const kind: Kind = WORD.test(folded) ? 'word' : 'punct';
    const separate = this.previous !== undefined && (kind === 'punct' || this.previous === 'punct' || this.gap);
    // The separator maps to the character after it; a match never starts or ends on one (see answerSpan).
    if (separate) this.append(' ', start, start);
    this.append(folded, start, end);
    this.previous = kind;
    this.gap = false;
  }

  build(): MatchForm {
    return { text: this.parts.join(''), starts: this.starts, ends: this.ends };
  }

  private append(s: string, start: number, end: number): void {
    this.parts.push(s);
    // An astral character is two UTF-16 units; both map to the same original range.
    for (let i = 0; i < s.length; i++) {
      this.starts.push(start);
      this.ends.push(end);
    }
  }
}

function isMarkAt(text: string, i: number): boolean {
  const cp = text.codePointAt(i)!;
  return cp >= FIRST_MARK && MARK.test(String.fromCodePoint(cp));
}

function codePointLength(text: string, i: number): number {
  return text.codePointAt(i)! > 0xffff ? 2 : 1;
}

/**
 * The form answers and passages are compared in (lower case, NFKC, one space between tokens, punctuation marks as
 * tokens), with offsets back into `text`. NFKC is applied per base character with its combining marks, so composed and
 * decomposed accents agree and every normalised character still knows where it came from. Linear in `text`.
 */
export function matchForm(text: string): MatchForm {
  const out = new MatchFormBuilder();
  let i = 0;
  while (i < text.length) {
    const start = i;
    i += codePointLength(text, i);
    while (i < text.length && isMarkAt(text, i)) i += codePointLength(text, i);
    const cluster = text.slice(start, i);
    const ascii = i - start === 1 && cluster.charCodeAt(0) < 0x80;
    const normal = ascii ? cluster.toLowerCase() : cluster.normalize('NFKC').toLowerCase();
    for (const ch of normal) out.push(ch, start, i);
  }
  return out.build();
}

/** The normalised text alone: two strings match when these are equal. */
export function normaliseForMatch(text: string): string {
  return matchForm(text).text;
}

/**
 * Where `answer` occurs in `passageText`, as offsets into `passageText`, or undefined when it does not occur (or is
 * blank). An occurrence bounded by token boundaries on both sides is preferred ("Paris" in "Paris." rather than in
 * "Parisian" earlier on); failing that, the first occurrence anywhere.
 */
export function answerSpan(passageText: string, answer: string): AnswerSpan | undefined {
  const needle = normaliseForMatch(answer);
  if (needle === '') return undefined;
  const haystack = matchForm(passageText);
  // A space marks every token boundary in the normalised form, so padding both sides finds whole-token occurrences;
  // the match at `i` in the padded text starts at `i` in the unpadded one.
  const bounded = ` ${haystack.text} `.indexOf(` ${needle} `);
  const at = bounded !== -1 ? bounded : haystack.text.indexOf(needle);
  if (at === -1) return undefined;
  // The needle neither starts nor ends with a separator, so both ends map to real characters.
  return { start: haystack.starts[at]!, end: haystack.ends[at + needle.length - 1]! };
}
