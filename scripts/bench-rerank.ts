/**
 * Cross-encoder reranking cost on the full-size fixture (ms-marco-MiniLM-L-6-v2's dimensions): per query, scoring topN
 * (query, passage) pairs for topN = 20, 50, 100, on MS MARCO passages and on passages of the product's default chunk size
 * (200 tokens), plus batch sizes and token budgets per run at topN = 50. Medians over the queries. onnxruntime-node runs a session on the
 * event loop's thread, so the longest single batch is how long a reranking request can hold up every other request.
 */
import path from 'node:path';
import { Command } from 'commander';
import { loadConfig } from '../src/config/index.js';
import { readBeirCorpus, readBeirQueries } from '../src/eval/index.js';
import { chunkText, tokenCounter } from '../src/ingest/chunker.js';
import { loadCrossEncoder } from '../src/models/index.js';
import { CrossEncoderReranker, type PairScorer } from '../src/retrieval/index.js';
import { findRepoRoot } from '../src/fixtures/index.js';
import { formatTable, intOption, runCli } from './lib/cli.js';
import { CROSS_ENCODER_FULL, ensureFullFixtures } from './lib/full-fixtures.js';
import { median } from './lib/stats.js';

const program = new Command()
  .name('bench:rerank')
  .description('Cross-encoder reranking latency for topN = 20/50/100 on the full-size fixture')
  .option('--top-n <list>', 'candidates scored per query', '20,50,100')
  .option('--batch-sizes <list>', 'pairs per model run (no token budget), compared at the middle topN', '1,4,16')
  .option('--batch-tokens <list>', 'token budgets per model run (batch size 16), compared at the middle topN', '128,256,512')
  .option('--queries <n>', 'timed queries per setting (after 1 warm-up)', intOption('--queries'), 5)
  .option(
    '--dataset <dir>',
    'BEIR folder whose corpus and queries are used',
    path.join(findRepoRoot(process.cwd()), '..', 'shared', 'data', 'beir-msmarco-mini'),
  )
  .option('--models <dir>', 'models folder holding fixture-cross-encoder-full (default: built on first use)');

runCli(async () => {
  const opts = program
    .parse()
    .opts<{ topN: string; batchSizes: string; batchTokens: string; queries: number; dataset: string; models?: string }>();
  const topNs = opts.topN.split(',').map((n) => Number.parseInt(n, 10));
  const batchSizes = opts.batchSizes.split(',').map((n) => Number.parseInt(n, 10));
  const budgets = opts.batchTokens.split(',').map((n) => Number.parseInt(n, 10));
  const modelsDir = opts.models ? path.resolve(opts.models) : await ensureFullFixtures();
  const config = loadConfig({ env: {}, overrides: { modelsDir, rerankModel: CROSS_ENCODER_FULL, quantized: false, allowRemote: false } });
  const model = await loadCrossEncoder(config);

  const maxN = Math.max(...topNs);
  const short: string[] = [];
  for await (const doc of readBeirCorpus(path.join(opts.dataset, 'corpus.jsonl'))) {
    short.push(doc.text);
    if (short.length >= 10 * maxN) break;
  }
  // Passages as the product cuts them by default: 200-token chunks of the same text run together.
  const count = tokenCounter(model.tokenizer);
  const long = chunkText(short.slice(0, 8 * maxN).join(' '), count, { maxTokens: 200, overlapTokens: 0 }).map((c) => c.text);
  const queries = [...(await readBeirQueries(path.join(opts.dataset, 'queries.jsonl'))).values()].slice(0, opts.queries + 1);
  const tokens = (texts: string[]) => median(texts.slice(0, 200).map((t) => model.tokenize(t).length));

  // The real model, timed per batch: the longest run is the longest the event loop is blocked.
  let longestBatch = 0;
  const timed: PairScorer = {
    modelId: model.modelId,
    tokenize: (text) => model.tokenize(text),
    pair: (q, p) => model.pair(q, p),
    scoreBatch: async (pairs) => {
      const started = performance.now();
      const scores = await model.scoreBatch(pairs);
      longestBatch = Math.max(longestBatch, performance.now() - started);
      return scores;
    },
  };
  const measure = async (passages: string[], topN: number, batchSize: number, batchTokens: number) => {
    const reranker = new CrossEncoderReranker(timed, { batchSize, batchTokens });
    const times: number[] = [];
    const blocks: number[] = [];
    for (const [i, query] of queries.entries()) {
      const offset = (i * topN) % Math.max(passages.length - topN, 1);
      longestBatch = 0;
      const started = performance.now();
      await reranker.score(query, passages.slice(offset, offset + topN));
      if (i > 0) {
        times.push(performance.now() - started);
        blocks.push(longestBatch);
      }
    }
    return { ms: median(times), block: median(blocks) };
  };

  const rows: Array<Array<string | number>> = [
    ['passages', 'median tokens/pair', 'topN', 'batch pairs / tokens', 'median ms/query', 'ms/pair', 'longest run ms (median)'],
  ];
  const { batchSize: defaultBatch, batchTokens: defaultTokens } = config.rerank;
  const batching = (pairs: number, tokens: number) => `${pairs} / ${Number.isSafeInteger(tokens) ? tokens : 'any'}`;
  for (const [name, passages] of [
    ['MS MARCO', short],
    ['200-token chunks', long],
  ] as const) {
    for (const topN of topNs) {
      const { ms, block } = await measure(passages, topN, defaultBatch, defaultTokens);
      rows.push([
        name,
        tokens(passages),
        topN,
        batching(defaultBatch, defaultTokens),
        ms.toFixed(0),
        (ms / topN).toFixed(2),
        block.toFixed(0),
      ]);
      console.error(`${name} topN=${topN} done`);
    }
  }
  const middle = topNs[Math.floor(topNs.length / 2)]!;
  const unbounded = Number.POSITIVE_INFINITY;
  for (const [name, passages] of [
    ['MS MARCO', short],
    ['200-token chunks', long],
  ] as const) {
    for (const batch of batchSizes) {
      const { ms, block } = await measure(passages, middle, batch, unbounded);
      rows.push([name, tokens(passages), middle, batching(batch, unbounded), ms.toFixed(0), (ms / middle).toFixed(2), block.toFixed(0)]);
    }
    for (const budget of budgets.filter((b) => b !== defaultTokens)) {
      const { ms, block } = await measure(passages, middle, defaultBatch, budget);
      rows.push([
        name,
        tokens(passages),
        middle,
        batching(defaultBatch, budget),
        ms.toFixed(0),
        (ms / middle).toFixed(2),
        block.toFixed(0),
      ]);
    }
  }
  console.log(
    `cross-encoder ${CROSS_ENCODER_FULL} (22.7M parameters, 6 layers, 384 hidden), ${opts.queries} queries per row (after 1 warm-up), medians`,
  );
  console.log(formatTable(rows));
});
