import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { Command } from 'commander';
import { pino } from 'pino';
import { startServer } from '../src/main.js';
import { percentile } from '../src/eval/index.js';
import { CORPUS_QUESTIONS } from './lib/questions.js';
import { formatTable, intOption, runCli } from './lib/cli.js';
import { BERT_FULL, ensureFullFixtures, fullFixtureServerConfig, T5_FULL } from './lib/full-fixtures.js';
import { median } from './lib/stats.js';

const QUESTIONS = CORPUS_QUESTIONS;

const program = new Command()
  .name('bench:ask')
  .description('POST /v1/ask latency on full-size fixture models, and the share of time spent outside onnxruntime run()')
  .option('--ks <list>', 'passages per question', '5,10,20')
  .option('--new-tokens <n>', 'tokens generated per answer (forced: EOS is suppressed until then)', intOption('--new-tokens'), 20)
  .option('--requests <n>', 'timed requests per k', intOption('--requests'), 10)
  .option('--models <dir>', 'models folder holding fixture-bert-full and fixture-t5-full (default: built on first use)')
  .option('--precisions <list>', 'fp32,int8: each measured in a process of its own, one after the other', 'int8,fp32')
  .option('--threads <n>', 'intra-op threads of every session (default: the config default)', intOption('--threads'))
  .option('--one <precision>', 'internal: measure one precision in this process and print a JSON line');

interface PrecisionResult {
  precision: string;
  rows: Array<Array<string | number>>;
  rssMb: number;
  peakRssMb: number;
}

type Options = { ks: string; newTokens: number; requests: number; models?: string; precisions: string; threads?: number; one?: string };

runCli(async () => {
  const opts = program.parse().opts<Options>();
  const modelsDir = opts.models ? path.resolve(opts.models) : await ensureFullFixtures();
  if (opts.one) {
    console.log(JSON.stringify(await measure(opts, modelsDir, opts.one)));
    return;
  }
  const results: PrecisionResult[] = [];
  for (const precision of opts.precisions.split(',')) {
    const args = [...process.execArgv, process.argv[1]!, '--one', precision, '--models', modelsDir, '--ks', opts.ks];
    args.push('--new-tokens', String(opts.newTokens), '--requests', String(opts.requests));
    if (opts.threads) args.push('--threads', String(opts.threads));
    const out = execFileSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    results.push(JSON.parse(out.trim().split('\n').at(-1)!) as PrecisionResult);
    console.error(JSON.stringify(results.at(-1)));
  }
  console.log(
    `/v1/ask, ${opts.newTokens} new tokens, greedy, fid, ${opts.requests} requests per k (after 2 warm-up), models ${BERT_FULL} + ${T5_FULL}`,
  );
  const header = ['precision', 'k', 'p50 ms', 'p95 ms', 'outside onnxruntime (median)', 'outside onnxruntime (total)'];
  const rows = results.flatMap((r) => r.rows.map((row) => [r.precision, ...row]));
  console.log(formatTable([header, ...rows]));
  const p50 = (precision: string, k: string) => Number(rows.find((r) => r[0] === precision && String(r[1]) === k)?.[2]);
  if (results.length === 2) {
    const [a, b] = results.map((r) => r.precision);
    console.log(
      `p50 ratio ${b}/${a}: ` +
        opts.ks
          .split(',')
          .map((k) => `k=${k} ${(p50(b!, k) / p50(a!, k)).toFixed(2)}`)
          .join(', '),
    );
  }
  console.log(
    formatTable([
      ['precision', 'server RSS after the run (MB)', 'peak RSS (MB)'],
      ...results.map((r) => [r.precision, r.rssMb.toFixed(0), r.peakRssMb.toFixed(0)]),
    ]),
  );
});

async function measure(opts: Options, modelsDir: string, precision: string): Promise<PrecisionResult> {
  const ks = opts.ks.split(',').map((k) => Number.parseInt(k, 10));
  const config = fullFixtureServerConfig(modelsDir, 'bench-ask', {
    quantized: precision === 'int8',
    ...(opts.threads ? { threads: { intraOp: opts.threads, interOp: 1 } } : {}),
  });
  const server = await startServer(config, pino({ level: 'silent' }));
  const service = await server.ready;
  const base = `http://127.0.0.1:${server.port}`;

  // Instrument, not replace: the real service runs; we read its onnx counters and force the answer length.
  let readerOnnxMs = 0;
  const ask = service.ask.bind(service);
  service.ask = async (params, hooks) => {
    const outcome = await ask({ ...params, minNewTokens: params.maxNewTokens }, hooks);
    readerOnnxMs = outcome.timings.onnxMs;
    return outcome;
  };

  const rows: Array<Array<string | number>> = [];
  try {
    for (const k of ks) {
      const latencies: number[] = [];
      const outsideShares: number[] = [];
      let outsideSum = 0;
      let totalSum = 0;
      for (let i = -2; i < opts.requests; i++) {
        const question = QUESTIONS[(i + QUESTIONS.length) % QUESTIONS.length]!;
        const embedBefore = service.diagnostics.embedOnnxMs;
        const started = performance.now();
        const res = await fetch(`${base}/v1/ask`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ question, k, maxNewTokens: opts.newTokens, mode: 'hybrid' }),
        });
        const body = (await res.json()) as { passages?: unknown[] };
        const elapsed = performance.now() - started;
        if (res.status !== 200) throw new Error(`ask failed with ${res.status}: ${JSON.stringify(body)}`);
        if (i < 0) continue; // warm-up requests
        const onnxMs = readerOnnxMs + (service.diagnostics.embedOnnxMs - embedBefore);
        latencies.push(elapsed);
        outsideShares.push((elapsed - onnxMs) / elapsed);
        outsideSum += elapsed - onnxMs;
        totalSum += elapsed;
      }
      rows.push([
        k,
        percentile(latencies, 50).toFixed(1),
        percentile(latencies, 95).toFixed(1),
        `${(100 * median(outsideShares)).toFixed(2)}%`,
        `${(100 * (outsideSum / totalSum)).toFixed(2)}%`,
      ]);
      console.error(`k=${k} done`);
    }
  } finally {
    await server.close();
  }
  const mb = (bytes: number) => bytes / 1024 / 1024;
  return { precision, rows, rssMb: mb(process.memoryUsage().rss), peakRssMb: mb(process.resourceUsage().maxRSS * 1024) };
}
