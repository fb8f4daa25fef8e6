/**
 * The reader's pre-training questions (salient spans removed from sentences) and the article split of SQuAD files:
 * every answer is a span of its passage at the stated offset, the question restates its sentence, and no article
 * is both trained on and validated on.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseSquad } from '../src/eval/index.js';
import {
  askFor,
  salientAsSquad,
  salientSpanQuestions,
  salientSpans,
  sentencesOf,
  splitSquadArticles,
  type SourcePassage,
} from '../src/training/salient-spans.js';

const SHARED_DATA = path.resolve(import.meta.dirname, '../../shared/data');
const msmarco: SourcePassage[] = readFileSync(path.join(SHARED_DATA, 'beir-msmarco-mini/corpus.jsonl'), 'utf8')
  .split('\n')
  .filter(Boolean)
  .slice(0, 400)
  .map((line) => JSON.parse(line) as { _id: string; title: string; text: string })
  .map((d) => ({ id: String(d._id), title: d.title, text: d.text }));

describe('salient-span questions', () => {
  it('finds dates whole, years, numbers before a word and names past the first word', () => {
    const sentence = 'Jörg Buttgereit (born December 20, 1963) directed 4 films in Berlin.';
    const spans = salientSpans(sentence).map((c) => `${c.kind}:${sentence.slice(c.start, c.end)}`);
    expect(spans).toEqual(['date:December 20, 1963', 'number:4', 'name:Berlin']);
    expect(salientSpans('In 1724 he introduced the scale.').map((c) => c.kind)).toEqual(['year']);
    expect(salientSpans('The results of This study.')).toEqual([]); // clause words alone are not names
  });

  it('asks for the span with a question phrase in its place', () => {
    const sentence = 'In 1724, he introduced the scale that bears his name.';
    const [year] = salientSpans(sentence);
    expect(askFor(sentence, year!)).toBe('In what year, he introduced the scale that bears his name?');
  });

  it('splits sentences with their offsets', () => {
    const text = 'It was cold. Snow fell in 1998! "Why?" she asked.';
    for (const s of sentencesOf(text)) expect(text.slice(s.start, s.start + s.text.length)).toBe(s.text);
    expect(sentencesOf(text).map((s) => s.text)).toEqual(['It was cold.', 'Snow fell in 1998!', '"Why?" she asked.']);
  });

  it('states each answer in its passage at the stated offset, within the per-passage bound, deterministically', () => {
    const questions = salientSpanQuestions(msmarco, { perPassage: 2, seed: 1 });
    expect(questions.length).toBeGreaterThan(msmarco.length);
    const byId = new Map(msmarco.map((p) => [p.id, p]));
    const perPassage = new Map<string, number>();
    for (const q of questions) {
      const passage = byId.get(q.passageId)!;
      expect(passage.text.slice(q.answerStart, q.answerStart + q.answer.length)).toBe(q.answer);
      expect(q.question).toMatch(/\?$/);
      expect(q.question).toContain({ date: 'what date', year: 'what year', number: 'how many', name: 'what' }[q.kind]);
      perPassage.set(q.passageId, (perPassage.get(q.passageId) ?? 0) + 1);
    }
    expect(Math.max(...perPassage.values())).toBeLessThanOrEqual(2);
    expect(new Set(questions.map((q) => q.kind))).toEqual(new Set(['date', 'year', 'number', 'name']));
    expect(salientSpanQuestions(msmarco, { perPassage: 2, seed: 1 })).toEqual(questions);
    expect(salientSpanQuestions(msmarco, { perPassage: 2, seed: 2 })).not.toEqual(questions);
  });

  it('writes SQuAD JSON that the product reads back with the same questions and answers', () => {
    const questions = salientSpanQuestions(msmarco.slice(0, 50), { perPassage: 1, seed: 1 });
    const squad = parseSquad(salientAsSquad(msmarco.slice(0, 50), questions), 'salient.json');
    expect(squad.questions.map((q) => [q.id, q.question, q.answers])).toEqual(questions.map((q) => [q.id, q.question, [q.answer]]));
    const twoOfOneArticle = [
      { id: 'x#0', title: 'X', text: 'The bridge opened in 1932 after six years.' },
      { id: 'x#1', title: 'X', text: 'It was painted red by the city in 1990.' },
    ];
    const asSquad = parseSquad(
      salientAsSquad(twoOfOneArticle, salientSpanQuestions(twoOfOneArticle, { perPassage: 1, seed: 1 })),
      'x.json',
    );
    expect(asSquad.paragraphs.map((p) => p.id)).toEqual(['X#0', 'X#1']);
  });
});

describe('the article split', () => {
  const article = (title: string) => ({ title, paragraphs: [{ context: `${title} text`, qas: [] }] });
  const a = { data: ['A', 'B', 'C', 'D'].map(article) };
  const b = { data: ['E', 'F', 'G'].map(article) };

  it('holds out whole articles, none in both sets, whatever the file order', () => {
    const { train, valid } = splitSquadArticles([a, b], { validArticles: 2, seed: 1 });
    const titles = (d: { data: { title: string }[] }) => d.data.map((x) => x.title);
    expect(valid.data).toHaveLength(2);
    expect([...titles(train), ...titles(valid)].sort()).toEqual(['A', 'B', 'C', 'D', 'E', 'F', 'G']);
    expect(titles(splitSquadArticles([b, a], { validArticles: 2, seed: 1 }).valid).sort()).toEqual(titles(valid).sort());
    const seeds = [1, 2, 3, 4, 5].map((seed) =>
      titles(splitSquadArticles([a, b], { validArticles: 2, seed }).valid)
        .sort()
        .join(),
    );
    expect(new Set(seeds).size).toBeGreaterThan(1);
  });

  it('refuses a title in two files and a split that leaves nothing to train on', () => {
    expect(() => splitSquadArticles([a, a], { validArticles: 1, seed: 1 })).toThrow(/occurs twice/);
    expect(() => splitSquadArticles([b], { validArticles: 3, seed: 1 })).toThrow(/3 validation articles of 3/);
  });
});
