/**
 * The fusion-in-decoder reader on the tiny random-weight T5 fixture. Generated text is meaningless, so every test
 * checks an exact property: equivalences between decoding paths, invariances, sums, shapes.
 */
import { Tensor } from '@xenova/transformers';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSession, loadSeq2SeqModel, onnxFile, type Seq2SeqModel } from '../src/models/index.js';
import { FidReader, fidDecoderRewrite, type GenerateOptions, type ReaderPassage } from '../src/reader/index.js';
import { CrossAttentionTracer, traceRows } from '../src/reader/attribution.js';
import { MergedDecoder, logSumExp } from '../src/reader/decoder-session.js';
import {
  beamSearch,
  greedySearch,
  repeatedNgramTokens,
  type GenerationOptions as SearchOptions,
  type GenerationResult as SearchResult,
} from '../src/reader/generation.js';
import { teacherForcedLogProbs } from '../src/reader/rescoring.js';
import { CachedStepRunner, UncachedStepRunner, type StepRunner } from '../src/reader/step-runners.js';
import {
  buildConcatPlan,
  buildFidPlan,
  concatEncoderText,
  encoderRuns,
  fidEncoderText,
  memoryWithoutPassage,
  PieceTokenizer,
  tokenizeTruncated,
  type FusedMemory,
} from '../src/reader/fusion.js';
import { OnnxClock } from '../src/reader/onnx-run.js';
import { FIXTURES_DIR, T5_TINY } from './helpers/fixtures.js';

const { onnx } = onnxProto;

/** int8 tolerances: measured maxima on the tiny fixtures (see docs/benchmarks.md, int8 tolerances), with headroom. */
const INT8_TOL = { state: 1, logit: 1, logProb: 1, attention: 1 };

const QUESTION = 'Which river flows through the old town of Heidelberg?';

const PASSAGES: ReaderPassage[] = [
  {
    passageId: 'p0',
    docId: 'd0',
    title: 'Heidelberg',
    text: 'Heidelberg is a city on the river Neckar in south-west Germany.',
    retrievalScore: 0.9,
  },
  {
    passageId: 'p1',
    docId: 'd1',
    title: 'Neckar',
    text: 'The Neckar is a 362 km long river, mainly flowing through Baden-Württemberg.',
    retrievalScore: 0.7,
  },
  {
    passageId: 'p2',
    docId: 'd2',
    title: 'Old Bridge',
    text: 'The Old Bridge crosses the Neckar and connects the old town with the other bank.',
    retrievalScore: 0.5,
  },
  { passageId: 'p3', docId: 'd3', title: 'Castle', text: 'Heidelberg Castle is a famous ruin above the old town.', retrievalScore: 0.3 },
];

const BASE: GenerateOptions = { maxNewTokens: 8, numBeams: 1, lengthPenalty: 1, noRepeatNgramSize: 0, fusion: 'fid' };

let model: Seq2SeqModel;
let reader: FidReader;
let original: MergedDecoder;

/** The merged decoder file's own graph, unmodified, in a session of its own. */
function originalDecoder(): MergedDecoder {
  return original;
}

function searchOptions(overrides: Partial<SearchOptions> = {}): SearchOptions {
  return {
    maxNewTokens: 8,
    minNewTokens: 0,
    numBeams: 1,
    lengthPenalty: 1,
    noRepeatNgramSize: 0,
    decoderStartTokenId: model.config.decoder_start_token_id,
    eosTokenId: model.config.eos_token_id,
    ...overrides,
  };
}

function sum(values: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i]!;
  return s;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let s = 0;
  for (const v of row) s += Math.exp(v - max);
  const lse = max + Math.log(s);
  return Float64Array.from(row, (v) => v - lse);
}

async function decodeWith(
  memory: FusedMemory,
  opts: Partial<SearchOptions>,
  make: (m: FusedMemory) => StepRunner = (m) =>
    new CachedStepRunner(reader.decoder, m, new OnnxClock(), { broadcastMemory: reader.broadcastMemory }),
): Promise<SearchResult> {
  const o = searchOptions({ tracer: new CrossAttentionTracer(), ...opts });
  return o.numBeams > 1 ? beamSearch(make(memory), o) : greedySearch(make(memory), o);
}

/**
 * Every test runs on the float fixture and on its int8 `_quantized` twin (dynamic quantization, as the hub's files).
 * `tol` holds the tolerances of comparisons between two computations that are equal in exact arithmetic: float32
 * rounding for fp32; for int8 the largest difference measured on these fixtures (see docs/benchmarks.md, int8
 * tolerances) with headroom, because DynamicQuantizeLinear picks its scale per tensor and so depends on batch shape.
 * Tests of exact invariants that int8 does not keep are marked `fp32Exact` and run in fp32 only; their int8 counterpart
 * checks the same computation step by step within `tol`.
 */
const PRECISIONS = [
  { precision: 'fp32', quantized: false, tol: { logit: 1e-4, attention: 1e-5 } },
  { precision: 'int8', quantized: true, tol: INT8_TOL },
] as const;

/** Largest difference seen per precision and kind (`PRINT_TOLERANCES=1` prints them: how INT8_TOL was measured). */
const measured: Record<string, Record<string, number>> = {};
afterAll(() => {
  if (process.env.PRINT_TOLERANCES) console.log(JSON.stringify(measured));
});

describe.each(PRECISIONS)('$precision', ({ precision, quantized, tol }) => {
  const fp32Exact = precision === 'fp32';
  /** Asserts |difference| < tol[kind] and records it. */
  const close = (kind: keyof typeof tol, difference: number) => {
    const seen = (measured[precision] ??= {});
    seen[kind] = Math.max(seen[kind] ?? 0, Math.abs(difference));
    expect(Math.abs(difference)).toBeLessThan(tol[kind]);
  };
  beforeAll(async () => {
    model = await loadSeq2SeqModel(T5_TINY, {
      modelsDir: FIXTURES_DIR,
      allowRemote: false,
      quantized,
      decoderRewrite: fidDecoderRewrite(),
    });
    reader = await FidReader.create(model, { encoding: 'per-passage', crossCache: 'per-passage' });
    const file = onnxFile('decoder_model_merged', quantized);
    original = new MergedDecoder(await createSession(await model.readModelFile(file), file), model.config.num_heads, model.config.d_kv);
  });

  describe('reader set-up', () => {
    it('rewrites the merged decoder to expose cross-attention of every layer and the logits normaliser', () => {
      expect(reader.attributionMethod).toBe('cross-attention');
      expect(reader.decoder.layers).toBe(model.config.num_decoder_layers);
      expect(reader.decoder.outputs.crossAttentionLayers).toHaveLength(model.config.num_decoder_layers);
      expect(reader.decoder.outputs.crossAttentionMean).toBeDefined();
      expect(reader.decoder.outputs.logSumExp).toBeDefined();
      // The fixture's attention broadcasts like torch-exported T5, so beams share one memory copy.
      expect(reader.broadcastMemory).toBe(true);
    });

    it('loads the file of its precision: int8 graphs use MatMulInteger, and one decoder session serves generate() too', async () => {
      expect(model.decoderFile.endsWith(onnxFile('decoder_model_merged', quantized))).toBe(true);
      const graph = onnx.ModelProto.decode(await model.readModelFile(onnxFile('decoder_model_merged', quantized))).graph!;
      const ops = (g: OnnxTypes.IGraphProto): string[] =>
        (g.node ?? []).flatMap((n) => [n.opType ?? '', ...(n.attribute ?? []).flatMap((a) => (a.g ? ops(a.g) : []))]);
      expect(ops(graph).includes('MatMulInteger')).toBe(quantized);
      expect(reader.decoder.session).toBe(model.decoder);
    });

    it('the rewritten graph computes the same logits and caches as the original one', async () => {
      const original = originalDecoder();
      expect(original.computesTopK).toBe(false);
      const memory = await reader.encode(QUESTION, PASSAGES.slice(0, 2), 'fid');
      const patched = new CachedStepRunner(reader.decoder, memory, new OnnxClock(), { fetch: 'logits' });
      const plain = new CachedStepRunner(original, memory, new OnnxClock());
      const prefix = [model.config.decoder_start_token_id];
      for (const next of [37, 1000, 5]) {
        const [a, b] = [await patched.step([prefix], 5), await plain.step([prefix], 5)];
        expect(maxAbsDiff(a.logits!, b.logits!)).toBeLessThan(1e-6);
        for (let i = 0; i < reader.decoder.layers; i++) {
          const name = `present.${i}.decoder.key`;
          expect(maxAbsDiff(a.outputs[name]!.data as Float32Array, b.outputs[name]!.data as Float32Array)).toBeLessThan(1e-6);
        }
        // Graph TopK and log-sum-exp against the JS scan of the original logits.
        expect(a.topCandidates(0, 5).map((c) => c.token)).toEqual(b.topCandidates(0, 5).map((c) => c.token));
        close('logit', Math.abs(a.lastLogSumExp(0) - b.lastLogSumExp(0)));
        expect(a.meanCrossAttention).not.toBeNull();
        expect(b.meanCrossAttention).toBeNull();
        prefix.push(next);
      }
    });

    it("the graph's mean cross-attention, log-sum-exp and top logits equal computing them from its raw outputs", async () => {
      const memory = await reader.encode(QUESTION, PASSAGES, 'fid');
      const runner = new UncachedStepRunner(reader.decoder, memory, new OnnxClock(), 'all');
      const step = await runner.step(
        [
          [0, 11, 12, 13],
          [0, 21, 22, 23],
        ],
        12,
      );
      const { crossAttentionLayers } = reader.decoder.outputs;
      const heads = model.config.num_heads;
      for (let row = 0; row < 2; row++) {
        for (let pos = 0; pos < 4; pos++) {
          const logits = step.logitsAt(row, pos);
          close('logit', Math.abs(step.logSumExpAt(row, pos) - logSumExp(logits)));
          const expected = new Float64Array(memory.length);
          for (const name of crossAttentionLayers) {
            const layer = step.outputs[name]!;
            expect(layer.dims).toEqual([2, heads, 4, memory.length]);
            const data = layer.data as Float32Array;
            for (let h = 0; h < heads; h++) {
              const off = ((row * heads + h) * 4 + pos) * memory.length;
              for (let i = 0; i < memory.length; i++) expected[i]! += data[off + i]! / (heads * crossAttentionLayers.length);
            }
          }
          expect(maxAbsDiff(step.meanAttentionAt(row, pos), expected)).toBeLessThan(1e-6);
        }
        const sorted = Array.from(step.lastLogits(row).keys()).sort((a, b) => step.lastLogits(row)[b]! - step.lastLogits(row)[a]! || a - b);
        const banned = [sorted[1]!, sorted[4]!];
        const top = step.topCandidates(row, 10, banned);
        expect(top.map((c) => c.token)).toEqual(sorted.filter((t) => !banned.includes(t)).slice(0, 10));
        top.forEach((c) => expect(c.logit).toBe(step.lastLogits(row)[c.token]));
      }
    });
  });

  describe('fusion', () => {
    it('truncates a long encoder input to the limit and keeps the closing EOS', () => {
      const limits = { maxInputTokens: 16, eosTokenId: model.config.eos_token_id };
      const ids = tokenizeTruncated(model.tokenizer, `question: ${QUESTION} context: ${PASSAGES[1]!.text}`, limits);
      expect(ids).toHaveLength(16);
      expect(ids[15]).toBe(model.config.eos_token_id);
      expect(ids.slice(0, 15)).toEqual(model.tokenizer.encode(`question: ${QUESTION} context: ${PASSAGES[1]!.text}`).slice(0, 15));
    });

    it('inputs tokenised piece by piece equal tokenising the whole string (FiD and concat, cached or not)', () => {
      const limits = { maxInputTokens: 512, eosTokenId: model.config.eos_token_id };
      const pieces = new PieceTokenizer(model.tokenizer, 3);
      for (let round = 0; round < 2; round++) {
        const fid = buildFidPlan(pieces, QUESTION, PASSAGES, limits);
        fid.sequences.forEach((seq, i) => expect(seq).toEqual(model.tokenizer.encode(fidEncoderText(QUESTION, PASSAGES[i]!))));
        const concat = buildConcatPlan(pieces, QUESTION, PASSAGES, limits);
        expect(concat.sequences).toHaveLength(1);
        expect(concat.sequences[0]).toEqual(model.tokenizer.encode(concatEncoderText(QUESTION, PASSAGES)));
        // Spans tile the passage part of the input in order.
        for (let i = 1; i < concat.spans.length; i++) expect(concat.spans[i]!.start).toBe(concat.spans[i - 1]!.end);
        expect(concat.spans.at(-1)!.end).toBe(concat.sequences[0]!.length - 1);
      }
      const short = { maxInputTokens: 20, eosTokenId: model.config.eos_token_id };
      expect(buildFidPlan(pieces, QUESTION, PASSAGES, short).sequences[1]).toEqual(
        tokenizeTruncated(model.tokenizer, fidEncoderText(QUESTION, PASSAGES[1]!), short),
      );
    });

    it('FiD memory is the concatenation of the per-passage encodings, one span per passage', async () => {
      const memory = await reader.encode(QUESTION, PASSAGES, 'fid');
      const plan = buildFidPlan(new PieceTokenizer(model.tokenizer), QUESTION, PASSAGES, {
        maxInputTokens: model.config.maxInputTokens,
        eosTokenId: model.config.eos_token_id,
      });
      expect(memory.length).toBe(sum(plan.sequences.map((s) => s.length)));
      expect(memory.states).toHaveLength(memory.length * model.config.d_model);
      expect(memory.spans.map((s) => s.end - s.start)).toEqual(plan.sequences.map((s) => s.length));
      expect(Array.from(memory.tokenIds)).toEqual(plan.sequences.flat());
    });

    // fp32-exact: under int8 padding changes the activation scales; the int8 default never pads (see 'batch composition').
    it.runIf(fp32Exact)('padding the encoder batch further changes neither the memory nor the answer', async () => {
      const tight = await reader.encode(QUESTION, PASSAGES, 'fid');
      const padded = await reader.encode(QUESTION, PASSAGES, 'fid', new OnnxClock(), { padToLength: 96 });
      expect(padded.length).toBe(tight.length);
      close('logit', maxAbsDiff(tight.states, padded.states));
      const [a, b] = [await decodeWith(tight, { minNewTokens: 6 }), await decodeWith(padded, { minNewTokens: 6 })];
      expect(b.tokenIds).toEqual(a.tokenIds);
      close('logit', Math.abs(a.logProb - b.logProb));
    });

    it('removing a passage from the FiD memory equals encoding without it', async () => {
      const memory = await reader.encode(QUESTION, PASSAGES, 'fid');
      const cut = memoryWithoutPassage(memory, 1);
      const direct = await reader.encode(QUESTION, [PASSAGES[0]!, PASSAGES[2]!, PASSAGES[3]!], 'fid');
      expect(cut.length).toBe(direct.length);
      close('logit', maxAbsDiff(cut.states, direct.states));
      expect(Array.from(cut.tokenIds)).toEqual(Array.from(direct.tokenIds));
      expect(cut.spans[1]).toEqual({ start: cut.spans[0]!.end, end: cut.spans[0]!.end });
    });
  });

  /**
   * FiD's premise is that each passage is encoded on its own. Under int8 that holds only if nothing else shares the
   * passage's encoder run (one activation scale per run): these tests pin down which strategies keep it.
   */
  describe('batch composition', () => {
    const UNRELATED: ReaderPassage[] = [
      {
        passageId: 'u0',
        docId: 'u',
        title: 'Volcanoes',
        text: 'Basaltic lava flows are fluid and can travel tens of kilometres from the vent before they cool.',
        retrievalScore: 0.1,
      },
      {
        passageId: 'u1',
        docId: 'u',
        title: 'Tea',
        text: 'Green tea leaves are steamed or pan-fired soon after picking.',
        retrievalScore: 0.1,
      },
      { passageId: 'u2', docId: 'u', title: 'Chess', text: 'Castling moves the king two squares towards a rook.', retrievalScore: 0.1 },
    ];

    /** Largest difference between each of PASSAGES' memory spans and that passage encoded alone. */
    async function deviationFromAlone(memory: FusedMemory, indexOf: (i: number) => number): Promise<number> {
      let worst = 0;
      for (let i = 0; i < PASSAGES.length; i++) {
        const alone = await reader.encode(QUESTION, [PASSAGES[i]!], 'fid', new OnnxClock(), { strategy: 'per-passage' });
        const span = memory.spans[indexOf(i)]!;
        const d = memory.dModel;
        worst = Math.max(worst, maxAbsDiff(memory.states.subarray(span.start * d, span.end * d), alone.states));
      }
      return worst;
    }

    const variants = [
      { name: 'passage order', passages: () => [2, 0, 3, 1].map((i) => PASSAGES[i]!), indexOf: (i: number) => [1, 3, 0, 2][i]!, debug: {} },
      { name: 'k unrelated passages appended', passages: () => [...PASSAGES, ...UNRELATED], indexOf: (i: number) => i, debug: {} },
      { name: 'padding', passages: () => PASSAGES, indexOf: (i: number) => i, debug: { padToLength: 96 } },
      { name: 'encoder batch size 2', passages: () => [...PASSAGES, ...UNRELATED], indexOf: (i: number) => i, debug: { batchSize: 2 } },
    ];

    it("per-passage encoding: every passage's memory is bit-identical to encoding it alone, whatever the batch", async () => {
      // Nothing is padded: every run holds one sequence at its own length (padToLength, a debug knob, would add some).
      expect(encoderRuns([5, 9, 5, 7], { strategy: 'per-passage', batchSize: 2 })).toEqual([[0], [1], [2], [3]]);
      for (const v of variants.filter((x) => x.name !== 'padding')) {
        const memory = await reader.encode(QUESTION, v.passages(), 'fid', new OnnxClock(), { ...v.debug, strategy: 'per-passage' });
        expect(await deviationFromAlone(memory, v.indexOf), v.name).toBe(0);
      }
    });

    it('per-passage encoding: the answer does not change with passage order, padding or encoder batch size', async () => {
      for (const numBeams of [1, 3]) {
        const opts = { ...BASE, numBeams, minNewTokens: 6 };
        const a = await reader.answer(QUESTION, PASSAGES, opts);
        const reordered = await reader.answer(
          QUESTION,
          [2, 0, 3, 1].map((i) => PASSAGES[i]!),
          opts,
        );
        expect(reordered.tokenIds).toEqual(a.tokenIds);
        const batched = await FidReader.create(model, { encoding: 'per-passage', crossCache: 'per-passage', encoderBatchSize: 2 });
        expect((await batched.answer(QUESTION, PASSAGES, opts)).tokenIds).toEqual(a.tokenIds);
      }
    });

    it("per-passage cross-attention cache: equals the shared one in fp32 (within int8 tolerance), and a passage's keys and values do not depend on the others", async () => {
      const memory = await reader.encode(QUESTION, PASSAGES, 'fid');
      const runner = (m: FusedMemory, crossCachePerSpan: boolean) =>
        new CachedStepRunner(reader.decoder, m, new OnnxClock(), { crossCachePerSpan, fetch: 'logits' });
      const [perSpan, shared] = [runner(memory, true), runner(memory, false)];
      const prefix = [model.config.decoder_start_token_id];
      for (const next of [37, 1000, 5]) {
        const [a, b] = [await perSpan.step([prefix], 1), await shared.step([prefix], 1)];
        close('logit', maxAbsDiff(a.logits!, b.logits!));
        close('attention', maxAbsDiff(a.lastMeanAttention(0), b.lastMeanAttention(0)));
        prefix.push(next);
      }
      for (const [name, t] of Object.entries(perSpan.crossAttentionCache!)) {
        close('logit', maxAbsDiff(t.data as Float32Array, shared.crossAttentionCache![name]!.data as Float32Array));
      }
      // Appending passages leaves the original passages' cache rows bit-identical (per head: the first memory.length rows).
      const extended = await reader.encode(QUESTION, [...PASSAGES, ...UNRELATED], 'fid');
      const longer = runner(extended, true);
      await longer.step([[model.config.decoder_start_token_id]], 1);
      const heads = model.config.num_heads;
      const dKv = model.config.d_kv;
      for (const [name, t] of Object.entries(perSpan.crossAttentionCache!)) {
        const [a, b] = [t.data as Float32Array, longer.crossAttentionCache![name]!.data as Float32Array];
        for (let h = 0; h < heads; h++) {
          const rowsA = a.subarray(h * memory.length * dKv, (h + 1) * memory.length * dKv);
          expect(maxAbsDiff(rowsA, b.subarray(h * extended.length * dKv, h * extended.length * dKv + memory.length * dKv)), name).toBe(0);
        }
      }
    });

    it('shared-run strategies follow the other passages within tolerance only under int8 (exact in fp32)', async () => {
      for (const strategy of ['batch', 'by-length'] as const) {
        for (const v of variants) {
          const memory = await reader.encode(QUESTION, v.passages(), 'fid', new OnnxClock(), { ...v.debug, strategy });
          const deviation = await deviationFromAlone(memory, v.indexOf);
          const seen = (measured[`${precision} ${strategy}`] ??= {});
          seen[v.name] = Math.max(seen[v.name] ?? 0, deviation);
          expect(deviation, `${strategy}, ${v.name}`).toBeLessThan(fp32Exact ? 1e-4 : 1);
        }
      }
    });
  });

  describe('decoding', () => {
    it('FiD with one passage yields exactly the ids of transformers.js generate() on the same encoder input', async () => {
      for (const passage of PASSAGES.slice(0, 3)) {
        const ids = tokenizeTruncated(model.tokenizer, `question: ${QUESTION} title: ${passage.title} context: ${passage.text}`, {
          maxInputTokens: model.config.maxInputTokens,
          eosTokenId: model.config.eos_token_id,
        });
        const input = new Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]);
        // transformers.js counts the decoder start token in min_length, as HF does: min_length = minNewTokens + 1.
        const generated = (await model.model.generate(input, {
          max_new_tokens: 10,
          min_length: 5,
          num_beams: 1,
          do_sample: false,
        } as never)) as number[][];
        const ours = await reader.answer(QUESTION, [passage], { ...BASE, maxNewTokens: 10, minNewTokens: 4 });
        expect(generated[0]![0]).toBe(model.config.decoder_start_token_id);
        expect(ours.tokenIds).toEqual(generated[0]!.slice(1).map(Number));
      }
    });

    // fp32-exact: int8 quantizes a cached step's one-token activations with other scales than a whole prefix's, so the
    // token paths can part; the next test compares the two step by step within int8 tolerance.
    it.runIf(fp32Exact)('decoding with the cache equals recomputing every prefix without it (greedy and beam)', async () => {
      const memory = await reader.encode(QUESTION, PASSAGES, 'fid');
      const uncached = (m: FusedMemory) => new UncachedStepRunner(reader.decoder, m, new OnnxClock());
      for (const numBeams of [1, 3]) {
        const opts = { numBeams, minNewTokens: 5, maxNewTokens: 7, noRepeatNgramSize: 2 };
        const [a, b] = [await decodeWith(memory, opts), await decodeWith(memory, opts, uncached)];
        expect(a.hypotheses.map((h) => h.tokenIds)).toEqual(b.hypotheses.map((h) => h.tokenIds));
        a.hypotheses.forEach((h, i) => close('logit', Math.abs(h.logProb - b.hypotheses[i]!.logProb)));
        const [rowsA, rowsB] = [traceRows(a.trace), traceRows(b.trace)];
        expect(rowsA).toHaveLength(a.tokenIds.length);
        rowsA.forEach((row, i) => close('attention', maxAbsDiff(row, rowsB[i]!)));
      }
    });

    it('reordering the cache by beam origin equals recomputing the reordered prefixes (every row, every step)', async () => {
      const memory = await reader.encode(QUESTION, PASSAGES, 'fid');
      expect(reader.decoder.reordersCache).toBe(true);
      // The rewritten graph reorders the cache itself (Gather on beam_origins); the original graph needs JS to copy it.
      const original = originalDecoder();
      expect(original.reordersCache).toBe(false);
      const variants = [
        { decoder: reader.decoder, broadcastMemory: false },
        { decoder: reader.decoder, broadcastMemory: true },
        { decoder: original, broadcastMemory: false },
      ];
      for (const { decoder, broadcastMemory } of variants) {
        let steps = 0;
        let reorders = 0;
        const cached = new CachedStepRunner(decoder, memory, new OnnxClock(), { broadcastMemory });
        const uncached = new UncachedStepRunner(decoder, memory, new OnnxClock(), 'logits');
        // Runs a real beam search on the cache and checks each step's logits, for all rows, against a from-scratch run.
        const checking: StepRunner = {
          async step(prefixes, topK) {
            const [a, b] = [await cached.step(prefixes, topK), await uncached.step(prefixes, topK)];
            for (let row = 0; row < prefixes.length; row++) {
              const [topA, topB] = [a.topCandidates(row, topK), b.topCandidates(row, topK)];
              // Near-ties may swap under int8; the logits of the cached step's top tokens must still agree.
              if (fp32Exact) expect(topA.map((c) => c.token)).toEqual(topB.map((c) => c.token));
              close(
                'logit',
                maxAbsDiff(
                  topA.map((c) => c.logit),
                  topA.map((c) => b.lastLogits(row)[c.token]!),
                ),
              );
              close(
                'logit',
                maxAbsDiff(
                  topA.map((c) => c.logit),
                  topB.map((c) => c.logit),
                ),
              );
              close('logit', Math.abs(a.lastLogSumExp(row) - b.lastLogSumExp(row)));
              if (decoder.hasCrossAttention) {
                close('attention', maxAbsDiff(a.lastMeanAttention(row), b.lastMeanAttention(row)));
              }
            }
            steps++;
            return a;
          },
          reorder(origins) {
            if (origins.some((o, i) => o !== i)) reorders++;
            cached.reorder(origins);
          },
        };
        const result = await beamSearch(checking, searchOptions({ numBeams: 4, minNewTokens: 8, maxNewTokens: 8 }));
        expect(result.tokenIds).toHaveLength(8);
        expect(steps).toBe(8);
        expect(reorders).toBeGreaterThan(1);
      }
    });

    it('beam search with one beam is greedy search', async () => {
      const memory = await reader.encode(QUESTION, PASSAGES, 'fid');
      for (const extra of [{ lengthPenalty: 1 }, { lengthPenalty: 2, noRepeatNgramSize: 2, minNewTokens: 4 }, { minNewTokens: 8 }]) {
        const runner = () => new CachedStepRunner(reader.decoder, memory, new OnnxClock());
        const greedy = await greedySearch(runner(), searchOptions({ maxNewTokens: 8, ...extra }));
        const beam = await beamSearch(runner(), searchOptions({ maxNewTokens: 8, numBeams: 1, ...extra }));
        expect(beam.tokenIds).toEqual(greedy.tokenIds);
        expect(Math.abs(beam.logProb - greedy.logProb)).toBeLessThan(1e-9);
      }
    });

    it("every beam hypothesis's log-probability is the model's log-probability of its tokens (re-scored)", async () => {
      const memory = await reader.encode(QUESTION, PASSAGES, 'fid');
      // Beams that reach maxNewTokens descend from every cache row, so a wrong cache reordering shows up here.
      for (const [lengthPenalty, minNewTokens] of [
        [0, 3],
        [1, 9],
        [2, 5],
      ] as const) {
        const result = await decodeWith(memory, { numBeams: 4, minNewTokens, maxNewTokens: 9, lengthPenalty });
        expect(result.hypotheses.length).toBeGreaterThan(1);
        expect(result.hypotheses[0]!.tokenIds).toEqual(result.tokenIds);
        for (const h of result.hypotheses) {
          const rescored = await teacherForcedLogProbs(
            reader.decoder,
            memory,
            model.config.decoder_start_token_id,
            h.tokenIds,
            new OnnxClock(),
          );
          close('logit', Math.abs(sum(rescored) - h.logProb));
          expect(h.score).toBeCloseTo(h.logProb / h.tokenIds.length ** lengthPenalty, 9);
          expect(h.score).toBeLessThanOrEqual(result.score);
        }
      }
    });

    /**
     * "Beam search finds a sequence at least as likely as greedy" is false in general: the greedy prefix can be pruned
     * and its pruners can later end in unlikely tokens. What does hold: beam search is exact over its frontier. For two
     * tokens with EOS forbidden, it returns the best continuation among the numBeams most likely first tokens, which
     * includes greedy's first token; so here, and only here, beam >= greedy is guaranteed.
     */
    it('beam search over two tokens returns the best pair whose first token is among the top numBeams', async () => {
      const memory = await reader.encode(QUESTION, PASSAGES, 'fid');
      const numBeams = 4;
      const eos = model.config.eos_token_id;
      const start = model.config.decoder_start_token_id;
      const reference = new UncachedStepRunner(reader.decoder, memory, new OnnxClock(), 'logits');
      const first = logSoftmax((await reference.step([[start]])).lastLogits(0));
      first[eos] = -Infinity;
      const topFirst = Array.from(first.keys())
        .sort((a, b) => first[b]! - first[a]!)
        .slice(0, numBeams);
      let best = { logProb: -Infinity, tokens: [] as number[] };
      for (const t1 of topFirst) {
        const second = logSoftmax((await reference.step([[start, t1]])).lastLogits(0));
        second[eos] = -Infinity;
        const t2 = Array.from(second.keys()).reduce((a, b) => (second[b]! > second[a]! ? b : a));
        if (first[t1]! + second[t2]! > best.logProb) best = { logProb: first[t1]! + second[t2]!, tokens: [t1, t2] };
      }
      const opts = { maxNewTokens: 2, minNewTokens: 2, lengthPenalty: 0 };
      const beam = await decodeWith(memory, { ...opts, numBeams });
      const greedy = await decodeWith(memory, opts);
      expect(beam.tokenIds).toEqual(best.tokens);
      close('logit', Math.abs(beam.logProb - best.logProb));
      // Under int8 a beam's logits depend on the other beams of its batch, so the bound holds within tolerance only.
      expect(beam.logProb).toBeGreaterThanOrEqual(greedy.logProb - (fp32Exact ? 1e-6 : tol.logit));
    });

    it('honours noRepeatNgramSize', async () => {
      // This input makes the fixture loop, so the constraint has something to prevent.
      const memory = await reader.encode('a', PASSAGES.slice(0, 2), 'fid');
      const repeatedBigrams = (ids: number[]) => {
        const seq = [model.config.decoder_start_token_id, ...ids];
        const bigrams = seq.slice(1).map((t, i) => `${seq[i]},${t}`);
        return bigrams.length - new Set(bigrams).size;
      };
      for (const numBeams of [1, 3]) {
        const free = await decodeWith(memory, { numBeams, maxNewTokens: 24, minNewTokens: 24 });
        // The float fixture loops on this input (the int8 one happens not to), so there the constraint has work to do.
        if (fp32Exact) expect(repeatedBigrams(free.tokenIds)).toBeGreaterThan(0);
        const constrained = await decodeWith(memory, { numBeams, maxNewTokens: 24, minNewTokens: 24, noRepeatNgramSize: 2 });
        expect(constrained.tokenIds).toHaveLength(24);
        expect(repeatedBigrams(constrained.tokenIds)).toBe(0);
      }
      expect(repeatedNgramTokens([0, 5, 6, 5, 7, 5], 2).sort()).toEqual([6, 7]);
      expect(repeatedNgramTokens([0, 5, 6, 5], 3)).toEqual([]);
      expect(repeatedNgramTokens([0, 5, 6, 5], 1).sort()).toEqual([0, 5, 5, 6]);
    });

    it('stops at EOS, and honours minNewTokens', async () => {
      // The fixture rarely ends on its own, so its greedy second token plays EOS here.
      const memory = await reader.encode(QUESTION, PASSAGES, 'fid');
      const unconstrained = await decodeWith(memory, { maxNewTokens: 8, minNewTokens: 8 });
      const eosTokenId = unconstrained.tokenIds[1]!;
      const greedy = await decodeWith(memory, { maxNewTokens: 8, eosTokenId });
      expect(greedy.tokenIds).toEqual(unconstrained.tokenIds.slice(0, 2));
      const delayed = await decodeWith(memory, { maxNewTokens: 8, minNewTokens: 4, eosTokenId });
      expect(delayed.tokenIds.slice(0, 4)).not.toContain(eosTokenId);
      // Beam search may prefer longer running beams to a finished one, so check its hypotheses instead; without length
      // normalisation (lengthPenalty 0) a short finished hypothesis stays among them.
      const beam = await decodeWith(memory, { numBeams: 3, maxNewTokens: 8, eosTokenId, lengthPenalty: 0 });
      expect(beam.hypotheses.some((h) => h.tokenIds.at(-1) === eosTokenId)).toBe(true);
      for (const h of beam.hypotheses) expect(h.tokenIds.slice(0, -1)).not.toContain(eosTokenId);
      const beamDelayed = await decodeWith(memory, { numBeams: 3, maxNewTokens: 8, minNewTokens: 4, eosTokenId, lengthPenalty: 0 });
      for (const h of beamDelayed.hypotheses) {
        expect(h.tokenIds.length).toBeGreaterThanOrEqual(5);
        expect(h.tokenIds.slice(0, 4)).not.toContain(eosTokenId);
      }
    });

    it('gives the same answer when the passages come in another order', async () => {
      const order = [2, 0, 3, 1];
      for (const numBeams of [1, 3]) {
        const opts = { ...BASE, numBeams, minNewTokens: 6 };
        const a = await reader.answer(QUESTION, PASSAGES, opts);
        const b = await reader.answer(
          QUESTION,
          order.map((i) => PASSAGES[i]!),
          opts,
        );
        expect(b.tokenIds).toEqual(a.tokenIds);
        close('logit', Math.abs(a.logProb - b.logProb));
        order.forEach((from, to) => close('attention', Math.abs(b.passageScores[to]! - a.passageScores[from]!)));
      }
    });
  });

  describe('attribution', () => {
    it('passage scores are a distribution and token attention is aligned with the answer', async () => {
      for (const [fusion, numBeams] of [
        ['fid', 1],
        ['fid', 4],
        ['concat', 1],
        ['concat', 3],
      ] as const) {
        const result = await reader.answer(QUESTION, PASSAGES, { ...BASE, fusion, numBeams, minNewTokens: 3 });
        expect(result.attribution).toBe('cross-attention');
        expect(result.passageScores).toHaveLength(PASSAGES.length);
        for (const s of result.passageScores) expect(s >= 0 && s <= 1).toBe(true);
        close('attention', Math.abs(sum(result.passageScores) - 1));
        expect(result.tokenAttention).toHaveLength(result.tokenIds.length);
        for (const t of result.tokenAttention) {
          expect(t.passages.length).toBeGreaterThan(0);
          expect(t.passages.length).toBeLessThanOrEqual(3);
          const weights = t.passages.map((p) => p.weight);
          expect([...weights].sort((a, b) => b - a)).toEqual(weights);
          for (const p of t.passages) expect(p.topTokens.length).toBeGreaterThan(0);
        }
      }
    });

    it('every token attention row sums to 1, and FiD passage masses sum to 1 without renormalising', async () => {
      const memory = await reader.encode(QUESTION, PASSAGES, 'fid');
      const result = await decodeWith(memory, { numBeams: 3, minNewTokens: 4 });
      for (const row of traceRows(result.trace)) {
        close('attention', Math.abs(sum(row) - 1));
        const mass = memory.spans.map((s) => sum(row.subarray(s.start, s.end)));
        close('attention', Math.abs(sum(mass) - 1));
      }
    });

    it("beam search's attention trace is each hypothesis's own attention (checked by teacher forcing)", async () => {
      const memory = await reader.encode(QUESTION, PASSAGES, 'fid');
      // The check needs hypotheses that come from different cache rows (different first tokens). Which beam width
      // gives them depends on the weights' rounding (int8 differs between CPUs), so take the first width that does.
      let result: Awaited<ReturnType<typeof decodeWith>> | undefined;
      for (const numBeams of [4, 5, 6, 3]) {
        const candidate = await decodeWith(memory, { numBeams, minNewTokens: 6, maxNewTokens: 6 });
        if (new Set(candidate.hypotheses.map((h) => h.tokenIds[0])).size > 1) {
          result = candidate;
          break;
        }
      }
      if (!result) throw new Error('no beam width gave hypotheses with different first tokens');
      const start = model.config.decoder_start_token_id;
      for (const h of result.hypotheses) {
        const step = await new UncachedStepRunner(reader.decoder, memory, new OnnxClock()).step([[start, ...h.tokenIds.slice(0, -1)]]);
        const rows = traceRows(h.trace);
        expect(rows).toHaveLength(h.tokenIds.length);
        rows.forEach((row, position) => close('attention', maxAbsDiff(row, step.meanAttentionAt(0, position))));
      }
    });

    it('concat attribution gives 0 to passages truncated out of the input', async () => {
      const short = await FidReader.create(
        { ...model, config: { ...model.config, maxInputTokens: 40 } },
        { encoding: 'per-passage', crossCache: 'per-passage' },
      );
      const memory = await short.encode(QUESTION, PASSAGES, 'concat');
      expect(memory.length).toBe(40);
      const cutOff = memory.spans.map((s) => s.end === s.start);
      expect(cutOff.some(Boolean)).toBe(true);
      expect(cutOff[0]).toBe(false);
      const result = await short.answer(QUESTION, PASSAGES, { ...BASE, fusion: 'concat', minNewTokens: 3 });
      cutOff.forEach((cut, i) => cut && expect(result.passageScores[i]).toBe(0));
      close('attention', Math.abs(sum(result.passageScores) - 1));
    });

    it('falls back to leave-one-out when patching is disabled; its scores sum to 1', async () => {
      const loo = await FidReader.create(model, { attribution: 'leave-one-out', encoding: 'per-passage', crossCache: 'per-passage' });
      expect(loo.attributionMethod).toBe('leave-one-out');
      expect(loo.decoder.hasCrossAttention).toBe(false);
      for (const fusion of ['fid', 'concat'] as const) {
        const opts = { ...BASE, fusion, minNewTokens: 4, maxNewTokens: 6 };
        const [a, b] = [await loo.answer(QUESTION, PASSAGES, opts), await reader.answer(QUESTION, PASSAGES, opts)];
        expect(a.attribution).toBe('leave-one-out');
        expect(a.tokenIds).toEqual(b.tokenIds);
        expect(a.passageScores).toHaveLength(PASSAGES.length);
        for (const s of a.passageScores) expect(s >= 0 && s <= 1).toBe(true);
        expect(Math.abs(sum(a.passageScores) - 1)).toBeLessThan(1e-9);
        expect(a.tokenAttention).toHaveLength(a.tokenIds.length);
        if (fusion === 'fid') {
          // Independently: the drop in teacher-forced log-likelihood when each passage is left out of the encoder input.
          const score = async (ps: ReaderPassage[]) =>
            sum(await teacherForcedLogProbs(loo.decoder, await loo.encode(QUESTION, ps, 'fid'), 0, a.tokenIds, new OnnxClock()));
          const full = await score(PASSAGES);
          const drops = await Promise.all(
            PASSAGES.map(async (_, i) => Math.max(0, full - (await score(PASSAGES.filter((__, j) => j !== i))))),
          );
          const total = sum(drops);
          expect(total).toBeGreaterThan(0);
          drops.forEach((d, i) => close('logit', Math.abs(a.passageScores[i]! - d / total)));
        }
      }
    });
  });

  describe('fallbacks and edge cases', () => {
    /** The fixture decoder with its cross-attention Softmax nodes renamed, as an export with other node names would be. */
    function withRenamedSoftmax(base: Seq2SeqModel): Seq2SeqModel {
      return {
        ...base,
        decoderRewrite: undefined,
        decoder: originalDecoder().session,
        readModelFile: async (relPath) => {
          const decoded = onnx.ModelProto.decode(await base.readModelFile(relPath));
          const rename = (g: OnnxTypes.IGraphProto | null | undefined): void => {
            for (const n of g?.node ?? []) {
              n.name = (n.name ?? '').replace('/EncDecAttention/Softmax', '/EncDecAttention/Normalize');
              for (const a of n.attribute ?? []) rename(a.g);
            }
          };
          rename(decoded.graph);
          return onnx.ModelProto.encode(decoded).finish();
        },
      };
    }

    it('falls back to leave-one-out automatically when no cross-attention node can be found, and says why', async () => {
      const warnings: Array<Record<string, unknown>> = [];
      const logger = { info: () => {}, warn: (obj: Record<string, unknown>) => warnings.push(obj) };
      const fallback = await FidReader.create(withRenamedSoftmax(model), { logger, encoding: 'per-passage', crossCache: 'per-passage' });
      expect(fallback.attributionMethod).toBe('leave-one-out');
      expect(String(warnings[0]?.reason)).toMatch(/EncDecAttention\/Softmax/);
      const result = await fallback.answer(QUESTION, PASSAGES, { ...BASE, minNewTokens: 3, maxNewTokens: 4 });
      expect(result.attribution).toBe('leave-one-out');
      expect(Math.abs(sum(result.passageScores) - 1)).toBeLessThan(1e-9);
      await expect(
        FidReader.create(withRenamedSoftmax(model), { attribution: 'cross-attention', encoding: 'per-passage', crossCache: 'per-passage' }),
      ).rejects.toThrow(/cross-attention attribution is unavailable/);
    });

    it('answers from the question alone when there are no passages', async () => {
      for (const fusion of ['fid', 'concat'] as const) {
        const result = await reader.answer(QUESTION, [], { ...BASE, fusion, minNewTokens: 2, maxNewTokens: 3 });
        expect(result.tokenIds.length).toBeGreaterThanOrEqual(2);
        expect(result.passageScores).toEqual([]);
        expect(result.tokenAttention.every((t) => t.passages.length === 0)).toBe(true);
      }
    });

    it('rejects invalid generation options', async () => {
      await expect(reader.answer(QUESTION, PASSAGES, { ...BASE, maxNewTokens: 0 })).rejects.toThrow(RangeError);
      await expect(reader.answer(QUESTION, PASSAGES, { ...BASE, numBeams: 1.5 })).rejects.toThrow(/numBeams/);
      await expect(reader.answer(QUESTION, PASSAGES, { ...BASE, fusion: 'mix' as never })).rejects.toThrow(/fusion/);
    });
  });

  describe('streaming and aborting', () => {
    it('streamed tokens concatenate to the final answer ids and text', async () => {
      for (const numBeams of [1, 3]) {
        const streamed: Array<{ id: number; text: string; index: number }> = [];
        const result = await reader.answer(QUESTION, PASSAGES, {
          ...BASE,
          numBeams,
          minNewTokens: 6,
          onToken: (t) => streamed.push(t),
        });
        expect(streamed.map((t) => t.id)).toEqual(result.tokenIds);
        expect(streamed.map((t) => t.index)).toEqual(result.tokenIds.map((_, i) => i));
        expect(streamed.map((t) => t.text).join('')).toBe(result.answer);
      }
    });

    it('aborting after the 2nd token stops decoding with an AbortError', async () => {
      const controller = new AbortController();
      let tokens = 0;
      const run = reader.answer(QUESTION, PASSAGES, {
        ...BASE,
        maxNewTokens: 20,
        minNewTokens: 20,
        signal: controller.signal,
        onToken: () => {
          if (++tokens === 2) controller.abort();
        },
      });
      await expect(run).rejects.toMatchObject({ name: 'AbortError' });
      expect(tokens).toBe(2);

      await expect(reader.answer(QUESTION, PASSAGES, { ...BASE, signal: AbortSignal.abort() })).rejects.toMatchObject({
        name: 'AbortError',
      });
    });

    it('reports decoder steps and time spent inside onnxruntime', async () => {
      const result = await reader.answer(QUESTION, PASSAGES, { ...BASE, maxNewTokens: 5, minNewTokens: 5 });
      expect(result.timings.decoderSteps).toBe(5);
      expect(result.timings.onnxMs).toBeCloseTo(result.timings.onnxEncoderMs + result.timings.onnxDecoderMs, 9);
      expect(result.timings.onnxEncoderMs).toBeGreaterThan(0);
      expect(result.timings.onnxDecoderMs).toBeLessThanOrEqual(result.timings.totalMs);
    });
  });
});
