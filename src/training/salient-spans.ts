/**
 * Salient-span questions, the pre-training task of REALM and Atlas readers: take a sentence of a passage, remove a
 * salient span (a year, a number, a name), and ask for it with the sentence turned into a question. The answer is a
 * span of the passage, so the reader learns to find the sentence a question restates and copy what it lacks — the
 * skill SQuAD questions need — from text that has no human questions at all.
 */
import { hashString, mulberry32 } from '../fixtures/prng.js';

export interface SourcePassage {
  id: string;
  title: string;
  text: string;
}

export type SpanKind = 'date' | 'year' | 'number' | 'name';

export interface SalientQuestion {
  id: string;
  passageId: string;
  question: string;
  answer: string;
  /** Character offset of the answer in the passage's text. */
  answerStart: number;
  kind: SpanKind;
}

export interface SalientOptions {
  /** Questions per passage at most (each from a different sentence when the passage has enough). */
  perPassage: number;
  seed: number;
}

interface Candidate {
  kind: SpanKind;
  start: number;
  end: number;
}

const WH: Record<SpanKind, string> = { date: 'what date', year: 'what year', number: 'how many', name: 'what' };
const MIN_WORDS = 6;
const MAX_WORDS = 40;
/** Capitalised words that start clauses rather than name things: a span made of them alone is not salient. */
const FUNCTION_WORDS = new Set(
  'The A An This That These Those It Its He She They His Her Their In On At For From By With Of And But Or As After Before When While I We'.split(
    ' ',
  ),
);
const MONTHS = 'January|February|March|April|May|June|July|August|September|October|November|December';
const DATE = new RegExp(`\\b(?:(?:${MONTHS})\\s+\\d{1,2},?\\s+\\d{4}|\\d{1,2}\\s+(?:${MONTHS})\\s+\\d{4})\\b`, 'g');
const MONTH = new RegExp(`^(?:${MONTHS})$`);

/** Sentences of a text with their offsets: a break after . ! or ? followed by space and a capital or a quote. */
export function sentencesOf(text: string): { start: number; text: string }[] {
  const out: { start: number; text: string }[] = [];
  const breaks = /[.!?](?=\s+["'“A-Z0-9])/g;
  let start = 0;
  for (let m = breaks.exec(text); m; m = breaks.exec(text)) {
    out.push({ start, text: text.slice(start, m.index + 1) });
    start = m.index + 1;
    while (start < text.length && /\s/.test(text[start]!)) start++;
  }
  if (start < text.length) out.push({ start, text: text.slice(start) });
  return out.filter((s) => s.text.trim().length > 0);
}

/**
 * Candidate spans of one sentence: dates, years, other numbers before a word, and runs of capitalised words past the
 * first word. A span inside a date (its year, its month) is not a candidate of its own.
 */
export function salientSpans(sentence: string): Candidate[] {
  const dates: Candidate[] = [...sentence.matchAll(DATE)].map((m) => ({ kind: 'date', start: m.index!, end: m.index! + m[0].length }));
  const spans: Candidate[] = [];
  for (const m of sentence.matchAll(/\b(1[0-9]{3}|20[0-9]{2})\b/g)) {
    spans.push({ kind: 'year', start: m.index!, end: m.index! + m[0].length });
  }
  for (const m of sentence.matchAll(/(?<![\w.,])\d{1,3}(?:,\d{3})*(?:\.\d+)?(?![\w,.]?\d)(?=\s+[a-z])/g)) {
    const text = m[0];
    if (/^(1[0-9]{3}|20[0-9]{2})$/.test(text)) continue;
    spans.push({ kind: 'number', start: m.index!, end: m.index! + text.length });
  }
  for (const m of sentence.matchAll(/\b[A-Z][\p{L}'-]*(?:\s+(?:of\s+|de\s+|the\s+)?[A-Z][\p{L}'-]*)*/gu)) {
    if (m.index === 0) continue; // a sentence's first word is capitalised whatever it is
    const words = m[0].split(/\s+/);
    if (m[0].length < 3 || words.every((w) => FUNCTION_WORDS.has(w) || MONTH.test(w))) continue;
    spans.push({ kind: 'name', start: m.index!, end: m.index! + m[0].length });
  }
  const inDate = (c: Candidate) => dates.some((d) => c.start < d.end && d.start < c.end);
  return [...dates, ...spans.filter((c) => !inDate(c))];
}

/** The sentence asked as a question: the span replaced by its question phrase, the closing stop by '?'. */
export function askFor(sentence: string, span: Candidate): string {
  const before = sentence.slice(0, span.start);
  const after = sentence.slice(span.end).replace(/[\s.!;:,]+$/, '');
  return `${before}${WH[span.kind]}${after}?`.replace(/\s+/g, ' ').trim();
}

function wordCount(text: string): number {
  return text.split(/\s+/).filter(Boolean).length;
}

/**
 * Up to `perPassage` questions per passage, deterministic for a seed. A sentence qualifies when it is of moderate
 * length and keeps at least four words besides its span, so the question still says which sentence it restates.
 */
export function salientSpanQuestions(passages: readonly SourcePassage[], opts: SalientOptions): SalientQuestion[] {
  const out: SalientQuestion[] = [];
  for (const passage of passages) {
    const rng = mulberry32(hashString(passage.id) ^ Math.imul(opts.seed >>> 0, 0x9e3779b1));
    const sentences = sentencesOf(passage.text).filter((s) => {
      const n = wordCount(s.text);
      return n >= MIN_WORDS && n <= MAX_WORDS;
    });
    const order = sentences
      .map((s) => ({ s, r: rng() }))
      .sort((a, b) => a.r - b.r)
      .map((x) => x.s);
    let made = 0;
    for (const sentence of order) {
      if (made >= opts.perPassage) break;
      const spans = salientSpans(sentence.text).filter(
        (c) => wordCount(sentence.text) - wordCount(sentence.text.slice(c.start, c.end)) >= 4,
      );
      if (spans.length === 0) continue;
      // A kind first, then a span of it: names outnumber the rest several times over in running text.
      const kinds = [...new Set(spans.map((c) => c.kind))];
      const kind = kinds[Math.floor(rng() * kinds.length)]!;
      const ofKind = spans.filter((c) => c.kind === kind);
      const span = ofKind[Math.floor(rng() * ofKind.length)]!;
      const answer = sentence.text.slice(span.start, span.end);
      out.push({
        id: `${passage.id}#salient${made}`,
        passageId: passage.id,
        question: askFor(sentence.text, span),
        answer,
        answerStart: sentence.start + span.start,
        kind: span.kind,
      });
      made++;
    }
  }
  return out;
}

/**
 * The questions in the official SQuAD JSON format: one article per title (an untitled passage is titled with its id),
 * one paragraph per passage that has questions, in passage order.
 */
export function salientAsSquad(passages: readonly SourcePassage[], questions: readonly SalientQuestion[]): Record<string, unknown> {
  const byPassage = new Map<string, SalientQuestion[]>();
  for (const q of questions) byPassage.set(q.passageId, [...(byPassage.get(q.passageId) ?? []), q]);
  const articles = new Map<string, { context: string; qas: unknown[] }[]>();
  for (const p of passages) {
    const qs = byPassage.get(p.id);
    if (!qs) continue;
    const title = p.title || p.id;
    const paragraphs = articles.get(title) ?? [];
    paragraphs.push({
      context: p.text,
      qas: qs.map((q) => ({ id: q.id, question: q.question, answers: [{ text: q.answer, answer_start: q.answerStart }] })),
    });
    articles.set(title, paragraphs);
  }
  return { version: 'salient-spans-1', data: [...articles].map(([title, paragraphs]) => ({ title, paragraphs })) };
}

interface SquadArticleJson {
  title: string;
  paragraphs: unknown[];
}

/**
 * Whole articles of SQuAD files split into a training and a validation set: `validArticles` articles chosen by a
 * seeded hash of their titles, so the split does not depend on file order and no article is in both.
 */
export function splitSquadArticles(
  files: readonly { data: SquadArticleJson[] }[],
  opts: { validArticles: number; seed: number },
): { train: { version: string; data: SquadArticleJson[] }; valid: { version: string; data: SquadArticleJson[] } } {
  const articles = files.flatMap((f) => f.data);
  const titles = articles.map((a) => a.title);
  if (new Set(titles).size !== titles.length) throw new Error('split: an article title occurs twice across the files');
  if (opts.validArticles >= articles.length) throw new Error(`split: ${opts.validArticles} validation articles of ${articles.length}`);
  const ranked = [...titles].sort((a, b) => hashString(`${opts.seed}:${a}`) - hashString(`${opts.seed}:${b}`) || a.localeCompare(b));
  const valid = new Set(ranked.slice(0, opts.validArticles));
  return {
    train: { version: 'split-train', data: articles.filter((a) => !valid.has(a.title)) },
    valid: { version: 'split-valid', data: articles.filter((a) => valid.has(a.title)) },
  };
}
