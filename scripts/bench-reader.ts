/**
 * The FiD reader in fp32 and int8 side by side, in one run, on full-size fixtures: for every encoder strategy
 * (reader.encoding) the encode time and whether a passage's encoding and the answer depend on the batch around it
 * (passage order, unrelated passages appended, encoder batch size); the int8 logits' distance from fp32; and the same
 * question for beams (a beam's logits alone vs. in its batch, and what running each beam alone would cost).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { loadSeq2SeqModel } from '../src/models/index.js';
import { FidReader, fidDecoderRewrite, type ReaderPassage } from '../src/reader/index.js';
import { CachedStepRunner, UncachedStepRunner } from '../src/reader/step-runners.js';
import type { EncodeOptions, EncodingStrategy, FusedMemory } from '../src/reader/fusion.js';
import { OnnxClock } from '../src/reader/onnx-run.js';
import { formatTable, intOption, runCli } from './lib/cli.js';
import { ensureFullFixtures, T5_FULL } from './lib/full-fixtures.js';
import { median } from './lib/stats.js';

const program = new Command()
  .name('bench:reader')
  .description('FiD reader: encoder strategies (speed, batch-composition invariance), int8 vs fp32 logits, beams')
  .option('--models <dir>', 'models folder holding fixture-t5-full (default: built on first use)')
  .option('--model <name>', 'reader model folder name', T5_FULL)
  .option('--k <n>', 'passages per question', intOption('--k'), 10)
  .option('--questions <n>', 'questions', intOption('--questions'), 3)
  .option('--new-tokens <n>', 'answer tokens (forced)', intOption('--new-tokens'), 12)
  .option('--runs <n>', 'timed encodes per question', intOption('--runs'), 3)
  .option('--threads <n>', 'intra-op threads', intOption('--threads'), 2)
  .option('--data <dir>', 'BEIR folder for passages and questions', '../shared/data/beir-msmarco-mini');

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

runCli(async () => {
  const opts = program.parse().opts<{
    models?: string;
    model: string;
    k: number;
    questions: number;
    newTokens: number;
    runs: number;
    threads: number;
    data: string;
  }>();
  const modelsDir = opts.models ? path.resolve(opts.models) : await ensureFullFixtures();
  const readJsonl = (f: string) =>
    readFileSync(path.join(opts.data, f), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { text: string; title?: string });
  const corpus = readJsonl('corpus.jsonl');
  const queries = readJsonl('queries.jsonl');
  const passage = (i: number): ReaderPassage => {
    const doc = corpus[i % corpus.length]!;
    return { passageId: `p${i}`, docId: `d${i}`, title: doc.title ?? '', text: doc.text, retrievalScore: 0 };
  };
  const cases = Array.from({ length: opts.questions }, (_, q) => ({
    question: queries[q * 7]!.text,
    passages: Array.from({ length: opts.k }, (_, i) => passage(q * 101 + i * 13)),
    unrelated: Array.from({ length: 3 }, (_, i) => passage(q * 101 + 5000 + i * 17)),
  }));
  const threads = { intraOp: opts.threads, interOp: 1 };
  const base = { modelsDir, allowRemote: false, threads, decoderRewrite: fidDecoderRewrite() };
  const readers = {
    fp32: await FidReader.create(await loadSeq2SeqModel(opts.model, { ...base, quantized: false }), {
      encoding: 'per-passage',
      crossCache: 'per-passage',
    }),
    int8: await FidReader.create(await loadSeq2SeqModel(opts.model, { ...base, quantized: true }), {
      encoding: 'per-passage',
      crossCache: 'per-passage',
    }),
    int8FloatEncoder: await FidReader.create(await loadSeq2SeqModel(opts.model, { ...base, quantized: true, floatEncoder: true }), {
      encoding: 'float-encoder',
      crossCache: 'per-passage',
    }),
  };
  const start = readers.fp32.model.config.decoder_start_token_id;

  const greedy = async (reader: FidReader, memory: FusedMemory) => {
    const runner = new CachedStepRunner(reader.decoder, memory, new OnnxClock(), { broadcastMemory: reader.broadcastMemory });
    const tokens: number[] = [];
    for (let t = 0; t < opts.newTokens; t++) {
      const step = await runner.step([[start, ...tokens]], 1);
      tokens.push(step.topCandidates(0, 1)[0]!.token);
    }
    return tokens;
  };
  const logitsOf = async (reader: FidReader, memory: FusedMemory, tokens: number[]) =>
    (await new UncachedStepRunner(reader.decoder, memory, new OnnxClock(), 'logits').step([[start, ...tokens.slice(0, -1)]])).logits!;

  // The float reference: per-passage fp32 encoding and its greedy answer, teacher-forced logits.
  const reference = [];
  for (const c of cases) {
    const memory = await readers.fp32.encode(c.question, c.passages, 'fid', new OnnxClock(), { strategy: 'per-passage' });
    const tokens = await greedy(readers.fp32, memory);
    reference.push({ tokens, logits: await logitsOf(readers.fp32, memory, tokens) });
  }

  const rows: Array<Array<string | number>> = [
    [
      'precision',
      'encoding',
      'encode ms (median)',
      'state dev. order',
      'state dev. +3 unrelated',
      'state dev. batch 2',
      'cross K/V dev. +3 unrelated',
      'same answer (order / batch 2)',
      'answer changed by +3 unrelated',
      'max |logit − fp32|',
      'argmax = fp32',
    ],
  ];
  const variants: Array<{ label: string; strategies: EncodingStrategy[]; reader: FidReader; precision: string }> = [
    { label: 'fp32', precision: 'fp32', reader: readers.fp32, strategies: ['batch', 'by-length', 'per-passage'] },
    { label: 'int8', precision: 'int8', reader: readers.int8, strategies: ['batch', 'by-length', 'per-passage'] },
    { label: 'int8', precision: 'int8 + fp32 encoder', reader: readers.int8FloatEncoder, strategies: ['float-encoder'] },
  ];
  for (const v of variants) {
    for (const strategy of v.strategies) {
      const encodeMs: number[] = [];
      const dev = { order: 0, extra: 0, batch: 0, crossKv: 0 };
      let sameAnswers = 0;
      let changedByExtra = 0;
      let logitDiff = 0;
      let argmaxAgree = 0;
      let positions = 0;
      for (const [ci, c] of cases.entries()) {
        const encode = (ps: ReaderPassage[], debug: Partial<EncodeOptions> = {}) =>
          v.reader.encode(c.question, ps, 'fid', new OnnxClock(), { strategy, ...debug });
        for (let r = 0; r < opts.runs; r++) {
          const t0 = performance.now();
          await encode(c.passages);
          encodeMs.push(performance.now() - t0);
        }
        const alone = await Promise.all(
          c.passages.map((p) => v.reader.encode(c.question, [p], 'fid', new OnnxClock(), { strategy: 'per-passage' })),
        );
        const deviation = (m: FusedMemory, indexOf: (i: number) => number) =>
          Math.max(
            ...alone.map((a, i) => {
              const s = m.spans[indexOf(i)]!;
              return maxAbsDiff(m.states.subarray(s.start * m.dModel, s.end * m.dModel), a.states);
            }),
          );
        const order = c.passages.map((_, i) => i).reverse();
        const memory = await encode(c.passages);
        const reordered = await encode(order.map((i) => c.passages[i]!));
        const extra = await encode([...c.passages, ...c.unrelated]);
        const batched = await encode(c.passages, { batchSize: 2 });
        dev.order = Math.max(
          dev.order,
          deviation(reordered, (i) => order.indexOf(i)),
        );
        dev.extra = Math.max(
          dev.extra,
          deviation(extra, (i) => i),
        );
        dev.batch = Math.max(
          dev.batch,
          deviation(batched, (i) => i),
        );
        // The decoder's cross-attention keys of the original passages, computed over the memory with and without extras.
        const crossKeys = async (m: FusedMemory) =>
          (await new CachedStepRunner(v.reader.decoder, m, new OnnxClock(), { fetch: 'all' }).step([[start]], 1)).outputs[
            'present.0.encoder.key'
          ]!;
        const [keys, keysExtra] = [await crossKeys(memory), await crossKeys(extra)];
        const [heads, , dKv] = [keys.dims[1]!, keys.dims[2]!, keys.dims[3]!];
        for (let hd = 0; hd < heads; hd++) {
          const a = (keys.data as Float32Array).subarray(hd * memory.length * dKv, (hd + 1) * memory.length * dKv);
          const b = (keysExtra.data as Float32Array).subarray(hd * extra.length * dKv, hd * extra.length * dKv + memory.length * dKv);
          dev.crossKv = Math.max(dev.crossKv, maxAbsDiff(a, b));
        }
        const answer = await greedy(v.reader, memory);
        for (const m of [reordered, batched]) if ((await greedy(v.reader, m)).join() === answer.join()) sameAnswers++;
        if ((await greedy(v.reader, extra)).join() !== answer.join()) changedByExtra++;
        const logits = await logitsOf(v.reader, memory, reference[ci]!.tokens);
        logitDiff = Math.max(logitDiff, maxAbsDiff(logits, reference[ci]!.logits));
        const vocab = logits.length / opts.newTokens;
        for (let t = 0; t < opts.newTokens; t++) {
          const argmax = (l: Float32Array) => l.subarray(t * vocab, (t + 1) * vocab).reduce((b, x, i, a) => (x > a[b]! ? i : b), 0);
          if (argmax(logits) === argmax(reference[ci]!.logits)) argmaxAgree++;
          positions++;
        }
      }
      rows.push([
        v.precision,
        strategy,
        median(encodeMs).toFixed(0),
        dev.order.toExponential(1),
        dev.extra.toExponential(1),
        dev.batch.toExponential(1),
        dev.crossKv.toExponential(1),
        `${sameAnswers}/${2 * cases.length}`,
        `${changedByExtra}/${cases.length}`,
        logitDiff.toFixed(3),
        `${((100 * argmaxAgree) / positions).toFixed(0)}%`,
      ]);
      console.error(rows.at(-1)!.join(' | '));
    }
  }
  console.log(
    `k=${opts.k}, ${opts.questions} questions (MS MARCO mini), ${opts.newTokens} greedy tokens, ${opts.threads} threads; state dev. = largest |Δ| of a passage's encoder states vs. that passage encoded alone`,
  );
  console.log(formatTable(rows));

  // Beams: a beam's logits in its batch vs. alone, and the cost of giving each beam a run of its own.
  const beamRows: Array<Array<string | number>> = [
    ['precision', 'max |Δ logit| beam in batch vs alone', 'cached step, 4 beams in one run (ms)', '4 runs of 1 beam (ms)', 'ratio'],
  ];
  for (const [name, reader] of [
    ['fp32', readers.fp32],
    ['int8', readers.int8],
  ] as const) {
    let diff = 0;
    const batchMs: number[] = [];
    const aloneMs: number[] = [];
    for (const [ci, c] of cases.entries()) {
      const memory = await reader.encode(c.question, c.passages, 'fid', new OnnxClock());
      const prefix = reference[ci]!.tokens.slice(0, 6);
      const rows4 = [0, 1, 2, 3].map((b) => [start, ...prefix.slice(0, 5), prefix[5]! + b]);
      const together = await new UncachedStepRunner(reader.decoder, memory, new OnnxClock(), 'logits').step(rows4);
      for (let b = 0; b < 4; b++) {
        const single = await new UncachedStepRunner(reader.decoder, memory, new OnnxClock(), 'logits').step([rows4[b]!]);
        diff = Math.max(diff, maxAbsDiff(together.lastLogits(b), single.lastLogits(0)));
      }
      const timeSteps = async (batch: number) => {
        const runner = new CachedStepRunner(reader.decoder, memory, new OnnxClock(), { broadcastMemory: reader.broadcastMemory });
        await runner.step([[start]], 8);
        runner.reorder(new Array<number>(batch).fill(0));
        const prefixes = Array.from({ length: batch }, () => [start]);
        const t0 = performance.now();
        for (let t = 0; t < 6; t++) {
          prefixes.forEach((p, b) => p.push(100 + b + t));
          await runner.step(prefixes, 8);
          runner.reorder(prefixes.map((_, b) => b));
        }
        return (performance.now() - t0) / 6;
      };
      batchMs.push(await timeSteps(4));
      aloneMs.push(4 * (await timeSteps(1)));
    }
    beamRows.push([
      name,
      diff.toFixed(3),
      median(batchMs).toFixed(1),
      median(aloneMs).toFixed(1),
      (median(aloneMs) / median(batchMs)).toFixed(2),
    ]);
  }
  console.log('beams (numBeams 4): logits of one beam computed with 3 others vs alone; cost per cached decoder step');
  console.log(formatTable(beamRows));
});
