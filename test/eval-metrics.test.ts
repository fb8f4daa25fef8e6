import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DatasetFormatError,
  citationThresholds,
  compareCodePoints,
  evaluateQuery,
  evaluateRun,
  loadBeirDataset,
  parseQrels,
  passagesToDocRun,
  percentile,
  readBeirCorpus,
  readBeirQueries,
  recallAgainst,
  summarizeAttribution,
  type ScoredDoc,
} from '../src/eval/index.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SHARED_DATA = path.resolve(REPO_ROOT, '../shared/data');

const judgments = (entries: Record<string, number>) => new Map(Object.entries(entries));
const docs = (entries: Array<[string, number]>): ScoredDoc[] => entries.map(([docId, score]) => ({ docId, score }));

// Query "graded": judged d1:3 d2:2 d3:1 d4:0 d5:2 (d5 is never retrieved; dX is unjudged).
// Ranking: 1 d1(3), 2 d4(0), 3 d2(2), 4 dX(0), 5 d3(1).
const GRADED_QRELS = judgments({ d1: 3, d2: 2, d3: 1, d4: 0, d5: 2 });
const GRADED_RUN = docs([
  ['d1', 0.9],
  ['d4', 0.8],
  ['d2', 0.7],
  ['dX', 0.6],
  ['d3', 0.5],
]);

describe('evaluateQuery (hand-computed)', () => {
  it('graded nDCG@10, recall and MAP with a relevant document never retrieved', () => {
    const m = evaluateQuery(GRADED_RUN, GRADED_QRELS);
    // DCG  = 3/log2(2) + 2/log2(4) + 1/log2(6) = 3 + 1 + 0.38685280723454163 = 4.386852807234542
    // IDCG = gains [3,2,2,1]: 3/log2(2) + 2/log2(3) + 2/log2(4) + 1/log2(5)
    //      = 3 + 1.261859507142915 + 1 + 0.43067655807339306 = 5.692536065216308
    // nDCG = 4.386852807234542 / 5.692536065216308 = 0.7706324135634347
    expect(m['ndcg@10']).toBeCloseTo(0.7706324135634347, 12);
    // 4 relevant (d1, d2, d3, d5); d1, d2, d3 retrieved → 3/4.
    expect(m['recall@10']).toBe(0.75);
    expect(m['recall@100']).toBe(0.75);
    // First relevant at rank 1.
    expect(m['mrr@10']).toBe(1);
    // AP = (P@1 + P@3 + P@5) / 4 = (1/1 + 2/3 + 3/5) / 4 = 0.5666666666666667 (d5 counts in the denominator).
    expect(m['map@100']).toBeCloseTo(0.5666666666666667, 12);
  });

  it('MRR@10 when the first relevant document is at rank 3', () => {
    const m = evaluateQuery(
      docs([
        ['a', 3],
        ['b', 2],
        ['r', 1],
      ]),
      judgments({ r: 1 }),
    );
    expect(m['mrr@10']).toBeCloseTo(1 / 3, 15);
    // nDCG = (1/log2(4)) / (1/log2(2)) = 0.5; AP = (1/3) / 1.
    expect(m['ndcg@10']).toBeCloseTo(0.5, 15);
    expect(m['map@100']).toBeCloseTo(1 / 3, 15);
  });

  it('MRR@10 is 0 when the only relevant document is at rank 11; recall@100 still finds it', () => {
    const run = docs(Array.from({ length: 10 }, (_, i): [string, number] => [`n${i}`, 20 - i]));
    run.push({ docId: 'r', score: 1 });
    const m = evaluateQuery(run, judgments({ r: 2 }));
    expect(m['mrr@10']).toBe(0);
    expect(m['ndcg@10']).toBe(0);
    expect(m['recall@10']).toBe(0);
    expect(m['recall@100']).toBe(1);
    // AP@100 = (1/11) / 1 = 0.09090909090909091.
    expect(m['map@100']).toBeCloseTo(0.09090909090909091, 15);
  });

  it('breaks score ties by document id descending, ignoring input order', () => {
    // All tied at 0.5: trec_eval order is c, b, a → relevant "a" is at rank 3 (ascending or input order would put it first).
    const m = evaluateQuery(
      docs([
        ['a', 0.5],
        ['b', 0.5],
        ['c', 0.5],
      ]),
      judgments({ a: 1 }),
    );
    expect(m['mrr@10']).toBeCloseTo(1 / 3, 15);
    // nDCG = (1/log2(4)) / 1 = 0.5.
    expect(m['ndcg@10']).toBeCloseTo(0.5, 15);
  });

  it('ties across the cut-off: 11 tied documents push "d00" (smallest id) to rank 11', () => {
    const run = docs(Array.from({ length: 11 }, (_, i): [string, number] => [`d${String(i).padStart(2, '0')}`, 1]));
    const m = evaluateQuery(run, judgments({ d00: 1 }));
    expect(m['recall@10']).toBe(0);
    expect(m['recall@100']).toBe(1);
    expect(m['mrr@10']).toBe(0);
  });

  it('compares tied ids by code point (strcmp on UTF-8), not UTF-16 code units', () => {
    // U+1F600 (UTF-8 F0 9F 98 80) > U+FFFD (EF BF BD), though its UTF-16 lead surrogate 0xD83D < 0xFFFD.
    expect(compareCodePoints('\u{1F600}', '\uFFFD')).toBeGreaterThan(0);
    expect(compareCodePoints('b', 'a')).toBeGreaterThan(0);
    expect(compareCodePoints('ab', 'a')).toBeGreaterThan(0);
    expect(compareCodePoints('x', 'x')).toBe(0);
    // Descending: 😀 first, U+FFFD second → MRR 1/2.
    const m = evaluateQuery(
      docs([
        ['\uFFFD', 1],
        ['\u{1F600}', 1],
      ]),
      judgments({ '\uFFFD': 1 }),
    );
    expect(m['mrr@10']).toBe(0.5);
  });

  it('result is independent of the order the run lists documents in', () => {
    expect(evaluateQuery([...GRADED_RUN].reverse(), GRADED_QRELS)).toEqual(evaluateQuery(GRADED_RUN, GRADED_QRELS));
  });

  it('a query whose judgments are all 0 scores 0 everywhere (ideal DCG 0 → nDCG 0)', () => {
    const m = evaluateQuery(
      docs([
        ['x', 1],
        ['y', 0.5],
      ]),
      judgments({ x: 0, y: 0 }),
    );
    expect(m).toEqual({ 'ndcg@10': 0, 'recall@10': 0, 'recall@100': 0, 'mrr@10': 0, 'map@100': 0 });
  });

  it('an empty result list scores 0', () => {
    const m = evaluateQuery([], judgments({ x: 1 }));
    expect(m).toEqual({ 'ndcg@10': 0, 'recall@10': 0, 'recall@100': 0, 'mrr@10': 0, 'map@100': 0 });
  });

  it('rejects duplicate documents and NaN scores (trec_eval refuses duplicates)', () => {
    expect(() =>
      evaluateQuery(
        docs([
          ['a', 1],
          ['a', 0.5],
        ]),
        judgments({ a: 1 }),
        'q9',
      ),
    ).toThrow(/q9.*duplicate document a/);
    expect(() => evaluateQuery(docs([['a', Number.NaN]]), judgments({ a: 1 }))).toThrow(/NaN/);
  });
});

describe('evaluateRun', () => {
  it('averages over queries in both run and qrels; all-zero-judged query counts, others are skipped', () => {
    const run = new Map<string, ScoredDoc[]>([
      ['graded', GRADED_RUN],
      [
        'rank3',
        docs([
          ['a', 3],
          ['b', 2],
          ['r', 1],
        ]),
      ],
      ['allZero', docs([['x', 1]])],
      ['noQrels', docs([['z', 1]])],
    ]);
    const qrels = new Map([
      ['graded', GRADED_QRELS],
      ['rank3', judgments({ r: 1 })],
      ['allZero', judgments({ x: 0 })],
      ['notRetrieved', judgments({ w: 1 })],
    ]);
    const result = evaluateRun(run, qrels);
    expect(result.queries).toBe(3);
    expect([...result.perQuery.keys()]).toEqual(['graded', 'rank3', 'allZero']);
    expect(result.skipped).toEqual({ notInQrels: ['noQrels'], notInRun: ['notRetrieved'] });
    // nDCG mean = (0.7706324135634347 + 0.5 + 0) / 3 = 0.4235441378544782
    expect(result.mean['ndcg@10']).toBeCloseTo(0.4235441378544782, 12);
    // MRR mean = (1 + 1/3 + 0) / 3 = 0.4444444444444444
    expect(result.mean['mrr@10']).toBeCloseTo(4 / 9, 12);
    // recall@10 mean = (0.75 + 1 + 0) / 3
    expect(result.mean['recall@10']).toBeCloseTo(1.75 / 3, 12);
    // MAP mean = (0.5666666666666667 + 1/3 + 0) / 3 = 0.3
    expect(result.mean['map@100']).toBeCloseTo(0.3, 12);
  });

  it('an empty run evaluates no query and reports NaN means', () => {
    const result = evaluateRun(new Map(), new Map([['q', judgments({ d: 1 })]]));
    expect(result.queries).toBe(0);
    expect(result.skipped.notInRun).toEqual(['q']);
    expect(Number.isNaN(result.mean['ndcg@10'])).toBe(true);
    expect(Number.isNaN(result.mean['map@100'])).toBe(true);
  });

  it('a query present with an empty list is evaluated as 0', () => {
    const result = evaluateRun(
      new Map([
        ['q1', []],
        ['q2', docs([['d', 1]])],
      ]),
      new Map([
        ['q1', judgments({ d: 1 })],
        ['q2', judgments({ d: 1 })],
      ]),
    );
    expect(result.queries).toBe(2);
    expect(result.mean['ndcg@10']).toBe(0.5);
  });
});

describe('recallAgainst, percentile, passagesToDocRun', () => {
  it('recallAgainst is the mean top-k overlap with the exact lists', () => {
    // q1: {1,2,3} ∩ {1,2,4} = 2 → 2/3; q2: {4,5,9} ∩ {4,5,6} = 2 → 2/3.
    expect(
      recallAgainst(
        [
          [1, 2, 3],
          [4, 5, 9],
        ],
        [
          [1, 2, 4],
          [4, 5, 6],
        ],
        3,
      ),
    ).toBeCloseTo(2 / 3, 15);
    // k = 2: both top-2 agree.
    expect(
      recallAgainst(
        [
          [1, 2, 3],
          [4, 5, 9],
        ],
        [
          [1, 2, 4],
          [4, 5, 6],
        ],
        2,
      ),
    ).toBe(1);
    // Exact list shorter than k: denominator is its length; empty exact lists are skipped.
    expect(recallAgainst([['b', 'a'], ['z']], [['a'], []], 10)).toBe(1);
    expect(Number.isNaN(recallAgainst([[]], [[]], 10))).toBe(true);
    expect(() => recallAgainst([[1]], [], 1)).toThrow(/1 approximate.*0 exact/);
  });

  it('percentile: linear interpolation (numpy default) and nearest rank', () => {
    const values = [50, 15, 40, 20, 35];
    // Sorted 15 20 35 40 50. Linear: position p/100·4.
    expect(percentile(values, 50)).toBe(35);
    expect(percentile(values, 95)).toBeCloseTo(48, 12); // position 3.8 → 40 + 0.8·10
    expect(percentile(values, 40)).toBeCloseTo(29, 12); // position 1.6 → 20 + 0.6·15
    expect(percentile(values, 0)).toBe(15);
    expect(percentile(values, 100)).toBe(50);
    // Nearest rank: ⌈p/100·5⌉-th smallest.
    expect(percentile(values, 95, 'nearest-rank')).toBe(50); // ⌈4.75⌉ = 5
    expect(percentile(values, 40, 'nearest-rank')).toBe(20); // ⌈2⌉ = 2
    expect(percentile(values, 0, 'nearest-rank')).toBe(15);
    expect(Number.isNaN(percentile([], 50))).toBe(true);
    expect(() => percentile(values, 101)).toThrow(RangeError);
  });

  it('passagesToDocRun keeps each document best passage at that passage position', () => {
    const sorted = [
      { passageId: 'A#0', docId: 'A', score: 0.9 },
      { passageId: 'B#1', docId: 'B', score: 0.8 },
      { passageId: 'A#2', docId: 'A', score: 0.7 },
      { passageId: 'C#0', docId: 'C', score: 0.6 },
    ];
    expect(passagesToDocRun(sorted).map((h) => h.passageId)).toEqual(['A#0', 'B#1', 'C#0']);
    const unsorted = [
      { passageId: 'A#0', docId: 'A', score: 0.5 },
      { passageId: 'B#0', docId: 'B', score: 0.8 },
      { passageId: 'A#1', docId: 'A', score: 0.9 },
    ];
    expect(passagesToDocRun(unsorted).map((h) => h.passageId)).toEqual(['B#0', 'A#1']);
    expect(passagesToDocRun([])).toEqual([]);
  });
});

describe('BEIR loaders', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'eval-beir-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('parseQrels detects the optional header and handles CRLF', () => {
    const withHeader = parseQrels('query-id\tcorpus-id\tscore\r\nq1\td1\t2\r\nq1\td2\t0\r\nq2\td1\t1\r\n', 'x.tsv');
    expect(withHeader).toEqual(
      new Map([
        [
          'q1',
          new Map([
            ['d1', 2],
            ['d2', 0],
          ]),
        ],
        ['q2', new Map([['d1', 1]])],
      ]),
    );
    expect(parseQrels('q1\td1\t2\nq1\td2\t0\nq2\td1\t1\n', 'x.tsv')).toEqual(withHeader);
  });

  it('parseQrels names the file and line of malformed lines', () => {
    expect(() => parseQrels('q1\td1\t1\nq1 d2 1\n', 'qrels/test.tsv')).toThrow('qrels/test.tsv:2: expected 3 tab-separated');
    expect(() => parseQrels('q1\td1\thigh\n', 'a.tsv')).toThrow('a.tsv:1: score "high" is not an integer');
    expect(() => parseQrels('q1\td1\t1\nq1\td1\t2\n', 'a.tsv')).toThrow(/a\.tsv:2: .*already judged 1 on line 1/);
    expect(() => parseQrels('q1\td1\t1.5\n', 'a.tsv')).toThrow(DatasetFormatError);
  });

  it('corpus and query readers report bad JSONL lines with file and line', async () => {
    const corpusFile = path.join(dir, 'corpus.jsonl');
    await writeFile(corpusFile, '{"_id":"a","title":"A","text":"alpha","metadata":{"k":1}}\n\n{"_id":7,"text":"seven"}\n{"_id":"b",\n');
    const seen: string[] = [];
    const consume = async () => {
      for await (const doc of readBeirCorpus(corpusFile)) seen.push(`${doc.id}|${doc.title}|${doc.text}`);
    };
    await expect(consume()).rejects.toThrow(`${corpusFile}:4: invalid JSON`);
    expect(seen).toEqual(['a|A|alpha', '7||seven']);

    const queriesFile = path.join(dir, 'queries.jsonl');
    await writeFile(queriesFile, '{"_id":"q1","text":"one"}\n{"_id":"q2"}\n');
    await expect(readBeirQueries(queriesFile)).rejects.toThrow(`${queriesFile}:2: query "q2" has no "text" string`);
  });
});

describe('bundled evaluation data (../shared/data)', () => {
  it('beir-msmarco-mini: 50 queries, 5000 documents, 43 judged queries; an oracle run scores 1', async () => {
    const data = await loadBeirDataset(path.join(SHARED_DATA, 'beir-msmarco-mini'));
    expect(data.corpus).toHaveLength(5000);
    expect(data.queries.size).toBe(50);
    expect(data.qrels.size).toBe(43);
    const judgedPairs = [...data.qrels.values()].reduce((n, m) => n + m.size, 0);
    expect(judgedPairs).toBe(4102); // file has no header: every line is a judgment
    const corpusIds = new Set(data.corpus.map((d) => d.id));
    for (const qrel of data.qrels.values()) for (const docId of qrel.keys()) expect(corpusIds.has(docId)).toBe(true);

    // Ranking the judged documents by grade is an ideal ranking: nDCG@10 = MRR@10 = 1.
    const oracle = new Map<string, ScoredDoc[]>();
    for (const queryId of data.queries.keys()) {
      const judged = data.qrels.get(queryId) ?? new Map<string, number>();
      oracle.set(
        queryId,
        [...judged].map(([docId, grade]) => ({ docId, score: grade })),
      );
    }
    const result = evaluateRun(oracle, data.qrels);
    expect(result.queries).toBe(43);
    expect(result.skipped.notInQrels).toHaveLength(7);
    expect(result.mean['ndcg@10']).toBeCloseTo(1, 12);
    expect(result.mean['mrr@10']).toBe(1);
  });

  it('beir-dbpedia-mini: header line detected, grades 0-2', async () => {
    const data = await loadBeirDataset(path.join(SHARED_DATA, 'beir-dbpedia-mini'));
    expect(data.corpus).toHaveLength(5000);
    expect(data.queries.size).toBe(50);
    const grades = [...data.qrels.values()].flatMap((m) => [...m.values()]);
    expect(grades).toHaveLength(3709); // 3710 lines minus the header
    expect(new Set(grades)).toEqual(new Set([0, 1, 2]));
  });
});

describe('summarizeAttribution and citationThresholds (hand-computed)', () => {
  const cases = [
    { gold: [false, true, false], scores: { m: [0.2, 0.7, 0.1] }, ms: { m: 1 } },
    { gold: [true, false, false], scores: { m: [0.3, 0.6, 0.1] }, ms: { m: 3 } },
    // No gold passage retrieved: counted apart.
    { gold: [false, false, false], scores: { m: [0.5, 0.3, 0.2] }, ms: { m: 2 } },
  ];

  it('citation@1 over the questions with a gold passage; median cost over all', () => {
    expect(summarizeAttribution(cases, ['m'])).toEqual({
      questions: 3,
      withGold: 2,
      methods: [{ method: 'm', citationAt1: 0.5, msP50: 2 }],
    });
  });

  it('cites the top passage always and every other one at or above the share', () => {
    const [low, mid, high] = citationThresholds(cases, 'm', [0.15, 0.25, 0.9]);
    // 0.15: {0.2, 0.7} and {0.3, 0.6}; both golds cited, 2 of 4 citations gold.
    expect(low).toMatchObject({ minShare: 0.15, goldCited: 1, citedPerAnswer: 2, precision: 0.5 });
    // 0.25: {0.7} and {0.3, 0.6}.
    expect(mid).toMatchObject({ goldCited: 1, citedPerAnswer: 1.5, precision: 2 / 3 });
    expect(mid!.f1).toBeCloseTo(0.8, 10);
    // 0.9: the top passage only.
    expect(high).toMatchObject({ goldCited: 0.5, citedPerAnswer: 1, precision: 0.5 });
  });
});
