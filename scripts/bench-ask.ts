import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { pino } from 'pino';
import { loadConfig } from '../src/config/index.js';
import { findRepoRoot } from '../src/fixtures/index.js';
import { startServer } from '../src/main.js';
import { percentile } from '../src/eval/index.js';
import { CORPUS_QUESTIONS } from './lib/questions.js';
import { formatTable, intOption, runCli } from './lib/cli.js';
import { BERT_FULL, ensureFullFixtures, T5_FULL } from './lib/full-fixtures.js';
import { median } from './lib/stats.js';

const QUESTIONS = CORPUS_QUESTIONS;

const program = new Command()
  .name('bench:ask')
  .description('POST /v1/ask latency on full-size fixture models, and the share of time spent outside onnxruntime run()')
  .option('--ks <list>', 'passages per question', '5,10,20')
  .option('--new-tokens <n>', 'tokens generated per answer (forced: EOS is suppressed until then)', intOption('--new-tokens'), 20)
  .option('--requests <n>', 'timed requests per k', intOption('--requests'), 10)
  .option('--models <dir>', 'models folder holding fixture-bert-full and fixture-t5-full (default: built on first use)');

runCli(async () => {
  const opts = program.parse().opts<{ ks: string; newTokens: number; requests: number; models?: string }>();
  const ks = opts.ks.split(',').map((k) => Number.parseInt(k, 10));
  const modelsDir = opts.models ? path.resolve(opts.models) : await ensureFullFixtures();
  const config = loadConfig({
    env: {},
    overrides: {
      modelsDir,
      embedModel: BERT_FULL,
      readerModel: T5_FULL,
      quantized: false,
      allowRemote: false,
      indexesDir: mkdtempSync(path.join(os.tmpdir(), 'bench-ask-')),
      corpusDir: path.join(findRepoRoot(process.cwd()), 'corpus'),
      port: 0,
      host: '127.0.0.1',
      logLevel: 'silent',
    },
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

  const rows: Array<Array<string | number>> = [['k', 'p50 ms', 'p95 ms', 'outside onnxruntime (median)', 'outside onnxruntime (total)']];
  try {
    for (const k of ks) {
      const latencies: number[] = [];
      const outsideShares: number[] = [];
      let outsideSum = 0;
      let totalSum = 0;
      for (let i = -2; i < opts.requests; i++) {
        const question = QUESTIONS[(i + QUESTIONS.length) % QUESTIONS.length]!;
        const embedBefore = service.embedOnnxMs;
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
        const onnxMs = readerOnnxMs + (service.embedOnnxMs - embedBefore);
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
  console.log(`/v1/ask, ${opts.newTokens} new tokens, greedy, fid, ${opts.requests} requests per k (after 2 warm-up), models ${BERT_FULL} + ${T5_FULL}`);
  console.log(formatTable(rows));
});
