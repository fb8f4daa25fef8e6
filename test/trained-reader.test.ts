/**
 * The committed fact-lookup reader (test/models/fact-lookup-reader, trained by scripts/train; docs/training.md) asked
 * questions end to end: real BM25 retrieval over a generated corpus whose names it never saw in training, k = 10,
 * through POST /v1/ask. These tests assert content: right answers and right citations (EM and citation@1 >= 0.95 at
 * k = 10), the same answers in both precisions and in any passage order, and FiD reading what concatenation cuts off.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scoreAnswer } from '../src/eval/index.js';
import { committedReaderDir, FACT_LOOKUP_READER } from '../src/fixtures/trained-readers.js';
import { startServer } from '../src/main.js';
import { loadSeq2SeqModel, type Seq2SeqModel } from '../src/models/index.js';
import { FidReader, fidDecoderRewrite, type ReaderPassage } from '../src/reader/index.js';
import type { RagService } from '../src/service/index.js';
import { generateFactLookup, type FactQuestion } from '../src/training/fact-lookup.js';
import { FIXTURES_DIR } from './helpers/fixtures.js';
import { startFactLookupServer } from './helpers/fact-lookup-server.js';
import { readReply, request } from './helpers/http.js';
import { exportedLogits, readReference, type ReferenceCase } from './helpers/reference-parity.js';

/** Unseen names: the test split of the generator, with a seed of its own. */
const SET = generateFactLookup({ split: 'test', people: 120, questionsPerPerson: 2, seed: 2024 });
const QUESTIONS = SET.questions.slice(0, 120);
const K = 10;
const GENERATE = { maxNewTokens: 16, numBeams: 1, lengthPenalty: 1, noRepeatNgramSize: 0 };
/**
 * The levels the committed reader must reach on these questions: the bar (0.95) for answers and citations
 * through /v1/ask, and a margin of a few questions below what it measures elsewhere. A reader with random weights
 * scores 0 on the answers and ~1/k on the citations.
 */
// Measured on these 120 questions (docs/training.md): EM 0.967, citation@1 0.975, one passage EM 0.992; on the first 30,
// int8 = fp32 on all answers, FiD 0.93 vs concat 0.03 with the gold passage last. Parity: fp32 within 9.4e-6 of torch,
// int8 within 0.26 with every argmax kept (a CPU with AVX-512 VNNI; the previous, less trained reader moved by 2.4).
const MEASURED = { em: 0.95, citationAt1: 0.95, emOnePassage: 0.95, int8Agreement: 0.9, fid: 0.85 };

let base = '';
let server: Awaited<ReturnType<typeof startServer>>;
/** What this run measured, printed at the end (the figures docs/training.md quotes come from this line). */
const figures: Record<string, number> = {};
let service: RagService;

const ask = (body: Record<string, unknown>) => request(base, 'POST', '/v1/ask', { body: { k: K, mode: 'bm25', ...body } });
const passagesFor = async (q: FactQuestion): Promise<ReaderPassage[]> =>
  (await service.search({ query: q.question, k: K, mode: 'bm25' })).results.map((r) => ({ ...r, retrievalScore: r.score }));

beforeAll(async () => {
  ({ server, base, service } = await startFactLookupServer(SET.passages));
});

afterAll(async () => {
  await server?.close();
  console.log(`[trained-reader] ${JSON.stringify(figures)}`);
});

describe('the fact-lookup reader through POST /v1/ask (int8, BM25, k = 10)', () => {
  const outcomes: Array<{ q: FactQuestion; answer: string; cited: string | undefined; passages: string[] }> = [];
  beforeAll(async () => {
    for (const q of QUESTIONS) {
      const res = await ask({ question: q.question });
      expect(res.status).toBe(200);
      outcomes.push({
        q,
        answer: res.json.answer,
        cited: res.json.citations[0]?.docId,
        passages: res.json.passages.map((p: { docId: string }) => p.docId),
      });
    }
  });

  it('retrieval finds the passage that states the fact, among other people sharing its words', () => {
    for (const o of outcomes) {
      expect(o.passages.length).toBeLessThanOrEqual(K);
      expect(o.passages).toContain(o.q.passageId);
    }
    // BM25 ORs the question's words, so a question whose attribute noun ("profession") no passage uses can find
    // fewer than ten; most find ten, so the reader must pick the one passage out of many.
    const full = outcomes.filter((o) => o.passages.length === K).length / outcomes.length;
    expect(full).toBeGreaterThanOrEqual(0.75);
  });

  it(`answers held-out questions about unseen people (exact match >= ${MEASURED.em})`, () => {
    const em = outcomes.filter((o) => scoreAnswer(o.answer, [o.q.answer]).exactMatch === 1).length / outcomes.length;
    const misses = outcomes
      .filter((o) => scoreAnswer(o.answer, [o.q.answer]).exactMatch === 0)
      .map((o) => `${o.q.question} -> ${o.answer} (${o.q.answer})`);
    figures.em = em;
    expect(em, misses.join('\n')).toBeGreaterThanOrEqual(MEASURED.em);
  });

  it(`cites the passage that states the fact first (citation@1 >= ${MEASURED.citationAt1})`, () => {
    const hits = outcomes.filter((o) => o.cited === o.q.passageId).length / outcomes.length;
    figures.citationAt1 = hits;
    expect(hits).toBeGreaterThanOrEqual(MEASURED.citationAt1);
  });

  it(`copies the answer out of the one passage that states it (document filter; exact match >= ${MEASURED.emOnePassage})`, async () => {
    let em = 0;
    for (const q of QUESTIONS) {
      const res = await ask({ question: q.question, filter: { docIds: [q.passageId] } });
      expect(res.status).toBe(200);
      expect(res.json.citations[0]?.docId).toBe(q.passageId);
      em += scoreAnswer(res.json.answer, [q.answer]).exactMatch;
    }
    figures.emOnePassage = em / QUESTIONS.length;
    expect(em / QUESTIONS.length).toBeGreaterThanOrEqual(MEASURED.emOnePassage);
  });

  it('streams the same answer it returns without streaming', async () => {
    for (const o of outcomes.slice(0, 8)) {
      const res = await fetch(`${base}/v1/ask`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ question: o.q.question, k: K, mode: 'bm25', stream: true }),
      });
      const events = (await readReply(res)).text.split('\n\n').filter((b) => b.trim());
      const data = (name: string) =>
        events.filter((b) => b.startsWith(`event: ${name}\n`)).map((b) => JSON.parse(b.slice(b.indexOf('data: ') + 6)));
      expect(
        data('token')
          .map((t: { text: string }) => t.text)
          .join(''),
      ).toBe(o.answer);
      expect(data('answer')[0].answer).toBe(o.answer);
    }
  });
});

describe('the fact-lookup reader on retrieved passages', () => {
  const models: Partial<Record<'fp32' | 'int8', { model: Seq2SeqModel; reader: FidReader }>> = {};
  const readerOf = async (precision: 'fp32' | 'int8', maxInputTokens?: number) => {
    const model = await loadSeq2SeqModel(FACT_LOOKUP_READER, {
      modelsDir: FIXTURES_DIR,
      allowRemote: false,
      quantized: precision === 'int8',
      maxInputTokens,
      decoderRewrite: fidDecoderRewrite(),
    });
    return { model, reader: await FidReader.create(model, { encoding: 'per-passage', crossCache: 'per-passage' }) };
  };
  beforeAll(async () => {
    models.fp32 = await readerOf('fp32');
    models.int8 = await readerOf('int8');
  });

  it('gives the same answer whatever the order of the passages', async () => {
    const reader = models.int8!.reader;
    for (const q of QUESTIONS.slice(0, 15)) {
      const passages = await passagesFor(q);
      const inOrder = await reader.answer(q.question, passages, { ...GENERATE, fusion: 'fid' });
      const reversed = await reader.answer(q.question, [...passages].reverse(), { ...GENERATE, fusion: 'fid' });
      const rotated = await reader.answer(q.question, [...passages.slice(4), ...passages.slice(0, 4)], { ...GENERATE, fusion: 'fid' });
      expect(reversed.answer).toBe(inOrder.answer);
      expect(rotated.answer).toBe(inOrder.answer);
    }
  });

  it(`fp32 and int8 mostly give the same answers (>= ${MEASURED.int8Agreement} of them)`, async () => {
    let same = 0;
    let fp32Right = 0;
    let int8Right = 0;
    const questions = QUESTIONS.slice(0, 30);
    for (const q of questions) {
      const passages = await passagesFor(q);
      const [a, b] = [
        await models.fp32!.reader.answer(q.question, passages, { ...GENERATE, fusion: 'fid' }),
        await models.int8!.reader.answer(q.question, passages, { ...GENERATE, fusion: 'fid' }),
      ];
      if (a.answer === b.answer) same++;
      fp32Right += scoreAnswer(a.answer, [q.answer]).exactMatch;
      int8Right += scoreAnswer(b.answer, [q.answer]).exactMatch;
    }
    const n = questions.length;
    Object.assign(figures, { int8Agreement: same / n, emFp32: fp32Right / n, emInt8: int8Right / n });
    expect(same / questions.length).toBeGreaterThanOrEqual(MEASURED.int8Agreement);
  });

  it('FiD beats concatenation once the passages exceed the concatenation budget', async () => {
    // 256 tokens hold one FiD input (question + one passage) but not all ten passages in one concat input; with the
    // stating passage retrieved last, concatenation cuts it off while FiD reads every passage in full.
    const { reader } = await readerOf('int8', 256);
    let fid = 0;
    let concat = 0;
    const questions = QUESTIONS.slice(0, 30);
    for (const q of questions) {
      const passages = await passagesFor(q);
      const gold = passages.filter((p) => p.docId === q.passageId);
      const ordered = [...passages.filter((p) => p.docId !== q.passageId), ...gold];
      fid += scoreAnswer((await reader.answer(q.question, ordered, { ...GENERATE, fusion: 'fid' })).answer, [q.answer]).exactMatch;
      concat += scoreAnswer((await reader.answer(q.question, ordered, { ...GENERATE, fusion: 'concat' })).answer, [q.answer]).exactMatch;
    }
    Object.assign(figures, { fidGoldLast: fid / questions.length, concatGoldLast: concat / questions.length });
    expect(fid / questions.length).toBeGreaterThanOrEqual(MEASURED.fid);
    expect(fid).toBeGreaterThan(concat);
  });
});

describe('the exported graphs reproduce the trainer', () => {
  const reference = readReference(committedReaderDir(FACT_LOOKUP_READER));
  const modelDir = path.join(FIXTURES_DIR, FACT_LOOKUP_READER);
  const logitsOf = (quantized: boolean, c: ReferenceCase) => exportedLogits(modelDir, quantized, c);

  // Measured (docs/training.md, parity): fp32 within 1e-5 of torch (float rounding only); int8 within 0.26, every argmax
  // kept. int8 quantizes every activation with one scale per tensor, and this reader is small (d_model 64), so its
  // logits move and the top token could change where two are close; the check bounds the move (with room for other
  // CPUs' int8 kernels) and the share of unchanged argmaxes.
  it.each([
    { precision: 'fp32', quantized: false, tolerance: 2e-3, argmaxAgreement: 1 },
    { precision: 'int8', quantized: true, tolerance: 1.5, argmaxAgreement: 0.9 },
  ])('$precision logits match the reference', async ({ precision, quantized, tolerance, argmaxAgreement }) => {
    expect(reference.cases.length).toBeGreaterThan(0);
    let same = 0;
    let positions = 0;
    for (const c of reference.cases) {
      const logits = await logitsOf(quantized, c);
      let worst = 0;
      logits.forEach((row, t) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - c.logits[t]![j]!)))));
      expect(worst, c.id).toBeLessThan(tolerance);
      figures[`${precision}WorstLogitDiff`] = Math.max(figures[`${precision}WorstLogitDiff`] ?? 0, worst);
      const argmax = logits.map((row) => c.vocab_ids[row.indexOf(Math.max(...row))]);
      same += argmax.filter((id, t) => id === c.argmax[t]).length;
      positions += argmax.length;
    }
    figures[`${precision}ArgmaxKept`] = same / positions;
    expect(same / positions).toBeGreaterThanOrEqual(argmaxAgreement);
  });
});
