import path from 'node:path';
import { Command, Option } from 'commander';
import { loadConfig } from '../src/config/index.js';
import {
  loadBeirDataset,
  evaluateRun,
  passagesToDocRun,
  percentile,
  recallAgainst,
  RETRIEVAL_METRICS,
  type ScoredDoc,
} from '../src/eval/index.js';
import type { SearchMode } from '../src/retrieval/index.js';
import { openSystem } from '../src/service/index.js';
import { evalIndexName, fail, formatTable, intOption, runCli, writeJsonReport } from './lib/cli.js';

const program = new Command()
  .name('eval')
  .description('BEIR-style retrieval evaluation: nDCG@10, Recall@10/100, MRR@10, MAP@100, HNSW recall@10 vs exact, latency')
  .requiredOption('--dataset <dir>', 'BEIR folder with corpus.jsonl, queries.jsonl, qrels/test.tsv')
  .addOption(new Option('--mode <mode>', 'retrieval mode').choices(['bm25', 'dense', 'hybrid', 'exact']).default('hybrid'))
  .option('--k <n>', 'passages retrieved per query', intOption('--k'), 100)
  .option('--split <name>', 'qrels split', 'test')
  .option('--collection <name>', 'collection to evaluate in, built on first run (default: derived from dataset and embedding model)')
  .option('--index <name>', 'same as --collection (older name)')
  .option(
    '--rerank <topN>',
    'also rerank the top N candidates with the cross-encoder (RAG_RERANK_MODEL) and report both',
    intOption('--rerank'),
  )
  .option('--json <file>', 'write the results as JSON');

runCli(async () => {
  const opts = program.parse().opts<{
    dataset: string;
    mode: SearchMode;
    k: number;
    split: string;
    collection?: string;
    index?: string;
    json?: string;
    rerank?: number;
  }>();
  const base = loadConfig();
  const config = loadConfig({ overrides: { retrieval: { ...base.retrieval, maxK: Math.max(opts.k, base.retrieval.maxK) } } });
  const dataset = await loadBeirDataset(opts.dataset, { split: opts.split });
  const datasetName = path.basename(path.resolve(opts.dataset));
  const collection = opts.collection ?? opts.index ?? evalIndexName('beir', datasetName, config.embedModel);

  // The embedding model loads only when needed: to build the collection, and for query embeddings. A BM25 evaluation
  // of a complete collection runs without it.
  const service = await openSystem(config, {
    writable: true,
    verify: false,
    reader: false,
    loadEmbedder: 'lazy',
    prepareDefaultCollection: false,
  });
  const embedsQueries = opts.mode !== 'bm25';
  try {
    // Building the collection is part of the eval on first run; later runs find every document unchanged and reuse it.
    if (!(await service.hasCollection(collection))) await service.createCollection(collection);
    const ingest = await service.ingestDocuments(dataset.corpus, { collection, progress: 'auto' });
    const stats = await service.stats({ collection });
    const built = ingest.passagesAdded > 0;
    console.log(
      `collection ${collection}: ${stats.documents} documents, ${stats.passages} passages` +
        (built
          ? `; embedded ${ingest.passagesAdded} passages in ${ingest.seconds.toFixed(1)} s (${(ingest.passagesAdded / ingest.seconds).toFixed(1)} passages/s)`
          : ' (reused)'),
    );
    if (ingest.errors.length > 0)
      console.error(`${ingest.errors.length} corpus records skipped, first: ${JSON.stringify(ingest.errors[0])}`);

    const search = async (query: string, k: number, mode: SearchMode) => service.search({ collection, query, k, mode });
    const run = new Map<string, ScoredDoc[]>();
    const rerankedRun = new Map<string, ScoredDoc[]>();
    const rerankMs: number[] = [];
    const plainMs: number[] = [];
    const rerankedMs: number[] = [];
    const searchMs: number[] = [];
    const embedMs: number[] = [];
    const approx: string[][] = [];
    const exact: string[][] = [];
    const judged = [...dataset.queries].filter(([qid]) => dataset.qrels.has(qid));
    if (judged.length === 0) fail(`no query of ${opts.dataset} has relevance judgments in qrels/${opts.split}.tsv`);
    // One untimed query first, so that loading the model (and onnxruntime's first run) is not measured as latency.
    if (embedsQueries) await search(judged[0]![1], 1, opts.mode);

    for (const [qid, text] of judged) {
      const result = await search(text, opts.k, opts.mode);
      searchMs.push(result.timings.searchMs);
      if (embedsQueries) embedMs.push(result.timings.embedMs);
      run.set(qid, passagesToDocRun(result.results));
      plainMs.push(result.timings.embedMs + result.timings.searchMs);
      if (opts.rerank) {
        // The service's own rerank path with k = topN: all N candidates kept, reordered by the cross-encoder, so the
        // metrics at 10 see the reranked head and Recall@100 cannot exceed the candidates' recall.
        const reranked = await service.search({ collection, query: text, k: opts.rerank, mode: opts.mode, rerank: { topN: opts.rerank } });
        const t = reranked.timings;
        rerankMs.push(t.rerankMs ?? 0);
        rerankedMs.push(t.embedMs + t.searchMs + (t.rerankMs ?? 0));
        rerankedRun.set(qid, passagesToDocRun(reranked.results.map((h) => ({ ...h, score: h.rerankScore ?? h.score }))));
      }
      // HNSW recall is measured passage-wise on the same queries, in every mode that loads the embedding model anyway.
      if (embedsQueries) {
        approx.push((await search(text, 10, 'dense')).results.map((h) => h.passageId));
        exact.push((await search(text, 10, 'exact')).results.map((h) => h.passageId));
      }
    }

    const evaluation = evaluateRun(run, dataset.qrels);
    const rerankEvaluation = opts.rerank ? evaluateRun(rerankedRun, dataset.qrels) : undefined;
    const hnswRecallAt10 = embedsQueries ? recallAgainst(approx, exact, 10) : null;
    const report = {
      dataset: datasetName,
      mode: opts.mode,
      queries: evaluation.queries,
      metrics: evaluation.mean,
      hnswRecallAt10,
      latencyMs: { p50: percentile(searchMs, 50), p95: percentile(searchMs, 95) },
      queryEmbeddingMs: embedMs.length > 0 ? { p50: percentile(embedMs, 50), p95: percentile(embedMs, 95) } : null,
      embedModel: config.embedModel,
      passages: stats.passages,
      ...(rerankEvaluation && {
        rerank: {
          topN: opts.rerank,
          model: config.rerankModel,
          metrics: rerankEvaluation.mean,
          rerankMs: { p50: percentile(rerankMs, 50), p95: percentile(rerankMs, 95) },
          latencyMs: { p50: percentile(rerankedMs, 50), p95: percentile(rerankedMs, 95) },
        },
      }),
    };

    console.log(`\n${datasetName}, mode ${opts.mode}, ${evaluation.queries} queries with judgments, k=${opts.k}`);
    console.log(
      formatTable([
        ['metric', 'value'],
        ...RETRIEVAL_METRICS.map((m) => [m, evaluation.mean[m].toFixed(4)]),
        ...(hnswRecallAt10 !== null ? [['hnsw recall@10 vs exact', hnswRecallAt10.toFixed(4)]] : []),
        ['search latency p50 / p95 (ms)', `${report.latencyMs.p50.toFixed(2)} / ${report.latencyMs.p95.toFixed(2)}`],
        ...(report.queryEmbeddingMs
          ? [['query embedding p50 / p95 (ms)', `${report.queryEmbeddingMs.p50.toFixed(2)} / ${report.queryEmbeddingMs.p95.toFixed(2)}`]]
          : []),
      ]),
    );
    if (report.rerank && rerankEvaluation) {
      const r = report.rerank;
      console.log(`\nwithout and with reranking the top ${r.topN} by ${r.model} (same queries)`);
      console.log(
        formatTable([
          ['metric', `retrieval (k=${opts.k})`, `+ rerank top ${r.topN}`],
          ...RETRIEVAL_METRICS.map((m) => [m, evaluation.mean[m].toFixed(4), rerankEvaluation.mean[m].toFixed(4)]),
          [
            'latency p50 / p95 (ms, query embedding included)',
            `${percentile(plainMs, 50).toFixed(2)} / ${percentile(plainMs, 95).toFixed(2)}`,
            `${r.latencyMs.p50.toFixed(2)} / ${r.latencyMs.p95.toFixed(2)}`,
          ],
          ['of which cross-encoder p50 / p95 (ms)', '-', `${r.rerankMs.p50.toFixed(2)} / ${r.rerankMs.p95.toFixed(2)}`],
        ]),
      );
    }
    if (hnswRecallAt10 === null) console.log('bm25 needs no embedding model, so dense recall (HNSW recall@10 vs exact) was not measured');
    if (evaluation.skipped.notInRun.length > 0) console.log(`(${evaluation.skipped.notInRun.length} judged queries returned nothing)`);
    if (opts.json) writeJsonReport(opts.json, report);
  } finally {
    await service.close();
  }
});
