import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  answerInPassages,
  evaluateAnswers,
  exactMatch,
  firstPassageWithAnswer,
  loadSquad,
  matchTokens,
  normalizeAnswer,
  parseSquad,
  scoreAnswer,
  tokenF1,
} from '../src/eval/index.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SHARED_DATA = path.resolve(REPO_ROOT, '../shared/data');

describe('normalizeAnswer (official SQuAD normalisation)', () => {
  it('lower-cases and removes ASCII punctuation (string.punctuation) without inserting spaces', () => {
    expect(normalizeAnswer('The Quick, Brown Fox!')).toBe('quick brown fox');
    expect(normalizeAnswer('"Hello," she said.')).toBe('hello she said');
    expect(normalizeAnswer('U.S.A.')).toBe('usa');
    // '-' and '_' are punctuation: removed before article removal, so the article glues to the next word.
    expect(normalizeAnswer('A-team')).toBe('ateam');
    expect(normalizeAnswer('the_end')).toBe('theend');
  });

  it('keeps Unicode punctuation, which string.punctuation does not contain', () => {
    expect(normalizeAnswer('rock ’n’ roll — live')).toBe('rock ’n’ roll — live');
  });

  it('removes a/an/the only as whole words, with Unicode word boundaries', () => {
    expect(normalizeAnswer('an apple a day')).toBe('apple day');
    expect(normalizeAnswer('theory of Anthem')).toBe('theory of anthem');
    // 'é' and 'ç' are word characters for Python's \b, so these 'a's are not whole words (JS \b would strip them).
    expect(normalizeAnswer('Aéroport, ça va')).toBe('aéroport ça va');
    expect(normalizeAnswer('café a la carte')).toBe('café la carte');
  });

  it("collapses Python's Unicode whitespace set, not JavaScript's", () => {
    expect(normalizeAnswer('New\u00a0York\u3000City\u2003')).toBe('new york city');
    // \x1c and \x85 are whitespace for str.split() (not for JS \s).
    expect(normalizeAnswer('x\x1cy\x85z')).toBe('x y z');
    // U+FEFF is whitespace for JS \s but not for Python; U+200B is neither. 'a' before U+200B is still a whole word.
    expect(normalizeAnswer('new\ufeffyork')).toBe('new\ufeffyork');
    expect(normalizeAnswer('a\u200bb')).toBe('\u200bb');
    expect(normalizeAnswer('  \t\n ')).toBe('');
  });
});

describe('exact match and token F1', () => {
  it('EM compares normalised strings', () => {
    expect(exactMatch('The Denver Broncos!', 'denver broncos')).toBe(1);
    expect(exactMatch('Denver', 'Denver Broncos')).toBe(0);
  });

  it('F1 counts repeated tokens with multiset intersection', () => {
    // pred [cat cat cat], ref [cat sat cat]: common = min(3,2) = 2 → P = 2/3, R = 2/3, F1 = 2/3.
    expect(tokenF1('cat cat cat', 'cat sat cat')).toBeCloseTo(2 / 3, 15);
    // pred 'the cat sat on the mat' → [cat sat on mat]; ref 'a cat on a mat' → [cat on mat]:
    // common 3 → P = 3/4, R = 3/3, F1 = 2·0.75·1/1.75 = 0.8571428571428571.
    expect(tokenF1('the cat sat on the mat', 'a cat on a mat')).toBeCloseTo(0.8571428571428571, 15);
    expect(tokenF1('dog', 'cat')).toBe(0);
  });

  it('takes EM and F1 each as the maximum over the references', () => {
    // ref 1 'Denver Broncos': common 1 → P 1, R 1/2 → F1 2/3; ref 2 [broncos of denver city]: P 1, R 1/4 → F1 0.4.
    expect(scoreAnswer('Denver', ['Denver Broncos', 'Broncos of Denver city'])).toEqual({ exactMatch: 0, f1: 2 / 3 });
    const best = scoreAnswer('Denver Broncos', ['Broncos', 'the Denver Broncos']);
    expect(best).toEqual({ exactMatch: 1, f1: 1 });
  });

  it('unanswerable questions: the reference is the empty string', () => {
    expect(scoreAnswer('', [])).toEqual({ exactMatch: 1, f1: 1 });
    // 'the' normalises to '' and therefore counts as an empty prediction.
    expect(scoreAnswer('the', [])).toEqual({ exactMatch: 1, f1: 1 });
    expect(scoreAnswer('Paris', [])).toEqual({ exactMatch: 0, f1: 0 });
    // References normalising to '' are dropped (evaluate-v2.0.py), leaving [''] here.
    expect(scoreAnswer('', ['the', '!'])).toEqual({ exactMatch: 1, f1: 1 });
    // An empty prediction on an answerable question scores 0.
    expect(scoreAnswer('', ['Paris'])).toEqual({ exactMatch: 0, f1: 0 });
  });

  it('evaluateAnswers averages over questions', () => {
    const result = evaluateAnswers([
      { prediction: 'Denver Broncos', answers: ['Denver Broncos'] }, // EM 1, F1 1
      { prediction: 'cat cat cat', answers: ['cat sat cat'] }, // EM 0, F1 2/3
      { prediction: '', answers: [] }, // EM 1, F1 1
    ]);
    expect(result.count).toBe(3);
    expect(result.exactMatch).toBeCloseTo(2 / 3, 15);
    expect(result.f1).toBeCloseTo((1 + 2 / 3 + 1) / 3, 15);
    expect(Number.isNaN(evaluateAnswers([]).f1)).toBe(true);
  });
});

describe('answer in passages (hit@k)', () => {
  it('matches whole token sequences, ignoring case, punctuation and articles', () => {
    expect(matchTokens("The Manning's gold-themed U.S. team")).toBe('manning s gold themed u s team');
    expect(answerInPassages(['the Beatles'], ['I like Beatles music.'])).toBe(true);
    expect(answerInPassages(['gold'], ['a gold-themed game'])).toBe(true);
    expect(answerInPassages(['art'], ['a party'])).toBe(false);
    expect(answerInPassages(['New York'], ['new yorkshire'])).toBe(false);
  });

  it('treats composed and decomposed accents alike', () => {
    expect(answerInPassages(['Caf\u00e9'], ['at the cafe\u0301 downstairs'])).toBe(true);
  });

  it('returns the first passage index with any answer; unanswerable never hits', () => {
    expect(firstPassageWithAnswer(['Denver Broncos', 'Broncos'], ['no', 'The Broncos won', 'Denver Broncos'])).toBe(1);
    expect(firstPassageWithAnswer(['Denver'], ['no', 'none'])).toBe(-1);
    expect(answerInPassages([], ['anything'])).toBe(false);
    expect(answerInPassages(['the'], ['the cat'])).toBe(false);
  });
});

describe('SQuAD loader', () => {
  it('flattens official JSON; names the JSON path of malformed records', () => {
    const dataset = parseSquad(
      {
        version: 'v2.0',
        data: [
          {
            title: 'Normans',
            paragraphs: [
              {
                context: 'The Normans were in Normandy.',
                qas: [
                  { id: 'q1', question: 'Where?', answers: [{ text: 'Normandy', answer_start: 20 }], is_impossible: false },
                  { id: 'q2', question: 'When?', answers: [], plausible_answers: [{ text: 'x', answer_start: 0 }], is_impossible: true },
                ],
              },
            ],
          },
        ],
      },
      'mini.json',
    );
    expect(dataset.paragraphs).toEqual([{ id: 'Normans#0', title: 'Normans', context: 'The Normans were in Normandy.' }]);
    expect(dataset.questions).toEqual([
      { id: 'q1', question: 'Where?', answers: ['Normandy'], paragraphId: 'Normans#0', isImpossible: false },
      { id: 'q2', question: 'When?', answers: [], paragraphId: 'Normans#0', isImpossible: true },
    ]);
    expect(() =>
      parseSquad({ data: [{ title: 'T', paragraphs: [{ context: 'c', qas: [{ id: '1', answers: [] }] }] }] }, 'bad.json'),
    ).toThrow(/^bad\.json:data\[0\]\.paragraphs\[0\]\.qas\[0\]\.question: /);
  });

  it('squad-v1.1 dev-half: 4,961 questions; every answer is found in its own paragraph', async () => {
    const squad = await loadSquad(path.join(SHARED_DATA, 'squad-v1.1/dev-half.json'));
    expect(squad.questions).toHaveLength(4961);
    expect(squad.paragraphs).toHaveLength(913);
    const contexts = new Map(squad.paragraphs.map((p) => [p.id, p.context]));
    const misses = squad.questions.filter((q) => !answerInPassages(q.answers, [contexts.get(q.paragraphId) ?? '']));
    expect(misses).toEqual([]);
    // A paragraph's own answers score perfectly against themselves.
    const selfScore = evaluateAnswers(squad.questions.map((q) => ({ prediction: q.answers[0] ?? '', answers: q.answers })));
    expect(selfScore.exactMatch).toBe(1);
    expect(selfScore.f1).toBe(1);
  });

  it('squad-v2.0 dev-half: unanswerable questions have no reference answers', async () => {
    const squad = await loadSquad(path.join(SHARED_DATA, 'squad-v2.0/dev-half.json'));
    expect(squad.questions).toHaveLength(6078);
    const impossible = squad.questions.filter((q) => q.isImpossible);
    expect(impossible).toHaveLength(3168);
    expect(impossible.every((q) => q.answers.length === 0)).toBe(true);
  });
});
