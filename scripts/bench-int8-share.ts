/**
 * How much of each model's run is int8 compute. onnxruntime-node 1.14 writes no profile, so the share is measured by
 * timing, at the same input size, a graph holding only the model's weight MatMuls (shapes from config.json) quantized
 * by the same quantizer (DynamicQuantizeLinear → MatMulInteger → Cast → Mul) against the whole int8 model; the float
 * version of the same graph gives the fp32 MatMul time. Each MatMul output is reduced to a scalar (ReduceMax), so the
 * figures slightly overstate the MatMul time.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import ort from 'onnxruntime-node';
import { attr, encodeModel, GraphBuilder } from '../src/fixtures/onnx-builder.js';
import { quantizeDynamic } from '../src/fixtures/quantize.js';
import { fillGaussian } from '../src/fixtures/prng.js';
import { formatTable, intOption, runCli } from './lib/cli.js';
import { BERT_FULL, ensureFullFixtures, T5_FULL } from './lib/full-fixtures.js';
import { median } from './lib/stats.js';

const program = new Command()
  .name('bench:int8')
  .description('Share of int8 MatMul compute in each model run (embedding batch, encoder passage, decoder step)')
  .option('--models <dir>', 'models folder (default: full-size fixtures)')
  .option('--runs <n>', 'timed runs', intOption('--runs'), 5)
  .option('--threads <n>', 'intra-op threads', intOption('--threads'), 2);

/** A graph of independent weight MatMuls [K, N] over inputs x_K [rows, K], each reduced to a scalar, summed. */
function linearOnly(shapes: Array<[number, number]>): Uint8Array {
  const g = new GraphBuilder('linear_only');
  const inputs = new Map<number, string>();
  const scalars: string[] = [];
  shapes.forEach(([k, n], i) => {
    if (!inputs.has(k)) inputs.set(k, g.addInput(`x_${k}`, 'float32', ['rows', k]));
    const w = g.addInitializer(`w${i}`, [k, n], fillGaussian(new Float32Array(k * n), i + 1, 0, 1 / Math.sqrt(k)));
    const y = g.node('MatMul', [inputs.get(k)!, w], {}, `/l${i}/MatMul`);
    scalars.push(g.node('ReduceMax', [y], { keepdims: attr.int(0) }, `/l${i}/ReduceMax`));
  });
  g.node('Sum', scalars, {}, '/Sum', 'out');
  g.addOutput('out', 'float32', []);
  return encodeModel(g, 'weight MatMuls only').bytes;
}

runCli(async () => {
  const opts = program.parse().opts<{ models?: string; runs: number; threads: number }>();
  const dir = opts.models ? path.resolve(opts.models) : await ensureFullFixtures();
  const so = { intraOpNumThreads: opts.threads, interOpNumThreads: 1 };
  const cfg = (m: string) => JSON.parse(readFileSync(path.join(dir, m, 'config.json'), 'utf8')) as Record<string, number>;
  const bert = cfg(BERT_FULL);
  const t5 = cfg(T5_FULL);
  const time = async (session: ort.InferenceSession, feeds: Record<string, ort.Tensor>) => {
    await session.run(feeds);
    const ms: number[] = [];
    for (let r = 0; r < opts.runs; r++) {
      const t0 = performance.now();
      await session.run(feeds);
      ms.push(performance.now() - t0);
    }
    return median(ms);
  };
  const ids = (rows: number, cols: number, vocab: number) =>
    new ort.Tensor(
      'int64',
      BigInt64Array.from({ length: rows * cols }, (_, i) => BigInt((i * 7919) % vocab)),
      [rows, cols],
    );
  const ones = (rows: number, cols: number) => new ort.Tensor('int64', new BigInt64Array(rows * cols).fill(1n), [rows, cols]);
  const xs = (rows: number, shapes: Array<[number, number]>) =>
    Object.fromEntries(
      [...new Set(shapes.map(([k]) => k))].map((k) => [
        `x_${k}`,
        new ort.Tensor('float32', fillGaussian(new Float32Array(rows * k), k, 0, 1), [rows, k]),
      ]),
    );

  const h = bert.hidden_size!;
  const ff = bert.intermediate_size!;
  const bertShapes: Array<[number, number]> = [];
  for (let l = 0; l < bert.num_hidden_layers!; l++) bertShapes.push([h, h], [h, h], [h, h], [h, h], [h, ff], [ff, h]);
  const d = t5.d_model!;
  const inner = t5.num_heads! * t5.d_kv!;
  const dff = t5.d_ff!;
  const encShapes: Array<[number, number]> = [];
  for (let l = 0; l < t5.num_layers!; l++) encShapes.push([d, inner], [d, inner], [d, inner], [inner, d], [d, dff], [d, dff], [dff, d]);
  const decShapes: Array<[number, number]> = [];
  for (let l = 0; l < t5.num_decoder_layers!; l++) {
    decShapes.push([d, inner], [d, inner], [d, inner], [inner, d], [d, inner], [inner, d], [d, dff], [d, dff], [dff, d]);
  }
  decShapes.push([d, t5.vocab_size!]);

  const cases = [
    {
      name: 'embedding batch [8 × 200 tokens]',
      file: path.join(dir, BERT_FULL, 'onnx', 'model'),
      rows: 8 * 200,
      shapes: bertShapes,
      feeds: () => ({
        input_ids: ids(8, 200, bert.vocab_size!),
        attention_mask: ones(8, 200),
        token_type_ids: new ort.Tensor('int64', new BigInt64Array(1600), [8, 200]),
      }),
    },
    {
      name: 'T5 encoder, one passage [1 × 160 tokens]',
      file: path.join(dir, T5_FULL, 'onnx', 'encoder_model'),
      rows: 160,
      shapes: encShapes,
      feeds: () => ({ input_ids: ids(1, 160, t5.vocab_size!), attention_mask: ones(1, 160) }),
    },
  ];
  const rows: Array<Array<string | number>> = [
    [
      'run',
      'int8 model ms',
      'its weight MatMuls (int8) ms',
      'int8 compute share',
      'fp32 model ms',
      'its weight MatMuls (fp32) ms',
      'fp32 MatMul share',
    ],
  ];
  for (const c of cases) {
    const shapes = c.shapes;
    const floatLinear = linearOnly(shapes);
    const [int8Model, fp32Model] = [
      await ort.InferenceSession.create(readFileSync(`${c.file}_quantized.onnx`), so),
      await ort.InferenceSession.create(readFileSync(`${c.file}.onnx`), so),
    ];
    const [int8Lin, fp32Lin] = [
      await ort.InferenceSession.create(quantizeDynamic(floatLinear).bytes, so),
      await ort.InferenceSession.create(floatLinear, so),
    ];
    const [mi, li, mf, lf] = [
      await time(int8Model, c.feeds()),
      await time(int8Lin, xs(c.rows, shapes)),
      await time(fp32Model, c.feeds()),
      await time(fp32Lin, xs(c.rows, shapes)),
    ];
    rows.push([
      c.name,
      mi.toFixed(1),
      li.toFixed(1),
      `${((100 * li) / mi).toFixed(0)}%`,
      mf.toFixed(1),
      lf.toFixed(1),
      `${((100 * lf) / mf).toFixed(0)}%`,
    ]);
    console.error(rows.at(-1)!.join(' | '));
  }
  // A cached decoder step: one row, one token (the reader's per-token cost; cross-attention K/V are cached).
  const floatDec = linearOnly(decShapes);
  const [i8, f32] = [
    await ort.InferenceSession.create(quantizeDynamic(floatDec).bytes, so),
    await ort.InferenceSession.create(floatDec, so),
  ];
  const [li, lf] = [await time(i8, xs(1, decShapes)), await time(f32, xs(1, decShapes))];
  rows.push(['decoder step, weight MatMuls only [1 row]', '(see bench:reader)', li.toFixed(2), '', '', lf.toFixed(2), '']);
  console.log(`threads=${opts.threads}, medians of ${opts.runs} runs`);
  console.log(formatTable(rows));
});
