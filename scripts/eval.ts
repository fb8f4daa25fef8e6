import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { indexDir, loadConfig } from '../src/config/index.js';
import { loadBeirDataset, evaluateRun, passagesToDocRun, percentile, recallAgainst, RETRIEVAL_METRICS, type ScoredDoc } from '../src/eval/index.js';
import { ingestDocuments } from '../src/ingest/index.js';
import { loadCrossEncoder, loadEmbedder } from '../src/models/index.js';
import { CrossEncoderReranker, rerankHits, Retriever, type Reranker, type SearchHit, type SearchMode } from '../src/retrieval/index.js';
import { IndexStore } from '../src/store/index.js';
import { evalIndexName, fail, formatTable, intOption, runCli } from './lib/cli.js';

const program = new Command()
  .name('eval')
  .description('BEIR-style retrieval evaluation: nDCG@10, Recall@10/100, MRR@10, MAP@100, HNSW recall@10 vs exact, latency')
  .requiredOption('--dataset <dir>', 'BEIR folder with corpus.jsonl, queries.jsonl, qrels/test.tsv')
  .addOption(new Option('--mode <mode>', 'retrieval mode').choices(['bm25', 'dense', 'hybrid', 'exact']).default('hybrid'))
  .option('--k <n>', 'passages retrieved per query', intOption('--k'), 100)
  .option('--split <name>', 'qrels split', 'test')
  .option('--index <name>', 'index name (default: derived from dataset and embedding model)')
  .option('--rerank <topN>', 'also rerank the top N candidates with the cross-encoder (RAG_RERANK_MODEL) and report both', intOption('--rerank'))
  .option('--json <file>', 'write the results as JSON');

runCli(async () => {
  const opts = program.parse().opts<{ dataset: string; mode: SearchMode; k: number; split: string; index?: string; json?: string; rerank?: number }>();
  const config = loadConfig();
  const dataset = await loadBeirDataset(opts.dataset, { split: opts.split });
  const datasetName = path.basename(path.resolve(opts.dataset));
  const embedder = await loadEmbedder(config);
  const reranker: Reranker | undefined = opts.rerank
    ? new CrossEncoderReranker(await loadCrossEncoder(config), { batchSize: config.rerank.batchSize })
    : undefined;
  const dir = indexDir(config, opts.index ?? evalIndexName('beir', datasetName, config.embedModel));

  // Building the index is part of the eval on first run; later runs find every document unchanged and reuse it.
  const store = IndexStore.open(dir, { embedModel: config.embedModel, dim: embedder.dim, hnsw: config.hnsw });
  try {
    const ingest = await ingestDocuments(dataset.corpus, { store, embedder, chunk: config.chunk, progress: 'auto' });
    const stats = store.stats();
    const built = ingest.passagesAdded > 0;
    console.log(
      `index ${dir}: ${stats.documents} documents, ${stats.passages} passages` +
        (built ? `; embedded ${ingest.passagesAdded} passages in ${ingest.seconds.toFixed(1)} s (${(ingest.passagesAdded / ingest.seconds).toFixed(1)} passages/s)` : ' (reused)'),
    );
    if (ingest.errors.length > 0) console.error(`${ingest.errors.length} corpus records skipped, first: ${JSON.stringify(ingest.errors[0])}`);

    const retriever = new Retriever(store, embedder, { ...config.retrieval, maxK: Math.max(opts.k, config.retrieval.maxK) });
    const run = new Map<string, ScoredDoc[]>();
    const rerankedRun = new Map<string, ScoredDoc[]>();
    const rerankMs: number[] = [];
    const rerankedSearchMs: number[] = [];
    const searchMs: number[] = [];
    const embedMs: number[] = [];
    const approx: string[][] = [];
    const exact: string[][] = [];
    const judged = [...dataset.queries].filter(([qid]) => dataset.qrels.has(qid));
    if (judged.length === 0) fail(`no query of ${opts.dataset} has relevance judgments in qrels/${opts.split}.tsv`);

    for (const [qid, text] of judged) {
      const result = await retriever.search(text, { k: opts.k, mode: opts.mode });
      searchMs.push(result.timings.searchMs);
      if (opts.mode !== 'bm25') embedMs.push(result.timings.embedMs);
      run.set(qid, passagesToDocRun(result.hits));
      if (reranker && opts.rerank) {
        // Rerank scores the top N and keeps them all, reordered: metrics at 10 see the reranked head, and Recall@100
        // cannot rise above the candidates' recall.
        const started = performance.now();
        const candidates = opts.rerank <= opts.k ? result.hits.slice(0, opts.rerank) : (await retriever.search(text, { k: opts.rerank, mode: opts.mode })).hits;
        const reranked = await rerankHits(reranker, text, candidates, candidates.length);
        rerankedSearchMs.push(performance.now() - started + (opts.rerank <= opts.k ? result.timings.searchMs + result.timings.embedMs : 0));
        rerankMs.push(reranked.rerankMs);
        rerankedRun.set(qid, passagesToDocRun(reranked.hits.map((h): SearchHit => ({ ...h, score: h.rerankScore }))));
      }
      // HNSW recall is measured passage-wise on the same queries, whatever mode is being evaluated.
      approx.push((await retriever.search(text, { k: 10, mode: 'dense' })).hits.map((h) => h.passageId));
      exact.push((await retriever.search(text, { k: 10, mode: 'exact' })).hits.map((h) => h.passageId));
    }

    const evaluation = evaluateRun(run, dataset.qrels);
    const rerankEvaluation = reranker ? evaluateRun(rerankedRun, dataset.qrels) : undefined;
    const hnswRecallAt10 = recallAgainst(approx, exact, 10);
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
          latencyMs: { p50: percentile(rerankedSearchMs, 50), p95: percentile(rerankedSearchMs, 95) },
        },
      }),
    };

    console.log(`\n${datasetName}, mode ${opts.mode}, ${evaluation.queries} queries with judgments, k=${opts.k}`);
    console.log(
      formatTable([
        ['metric', 'value'],
        ...RETRIEVAL_METRICS.map((m) => [m, evaluation.mean[m].toFixed(4)]),
        ['hnsw recall@10 vs exact', hnswRecallAt10.toFixed(4)],
        ['search latency p50 / p95 (ms)', `${report.latencyMs.p50.toFixed(2)} / ${report.latencyMs.p95.toFixed(2)}`],
        ...(report.queryEmbeddingMs
          ? [['query embedding p50 / p95 (ms)', `${report.queryEmbeddingMs.p50.toFixed(2)} / ${report.queryEmbeddingMs.p95.toFixed(2)}`]]
          : []),
      ]),
    );
    if (report.rerank && rerankEvaluation) {
      const r = report.rerank;
      const withoutMs = searchMs.map((ms, i) => ms + (embedMs[i] ?? 0));
      console.log(`\nwith and without reranking the top ${r.topN} by ${r.model} (same queries)`);
      console.log(
        formatTable([
          ['metric', 'retrieval', `+ rerank ${r.topN}`],
          ...RETRIEVAL_METRICS.map((m) => [m, evaluation.mean[m].toFixed(4), rerankEvaluation.mean[m].toFixed(4)]),
          ['latency p50 / p95 (ms, incl. query embedding)', `${percentile(withoutMs, 50).toFixed(2)} / ${percentile(withoutMs, 95).toFixed(2)}`, `${r.latencyMs.p50.toFixed(2)} / ${r.latencyMs.p95.toFixed(2)}`],
          ['cross-encoder scoring p50 / p95 (ms)', '-', `${r.rerankMs.p50.toFixed(2)} / ${r.rerankMs.p95.toFixed(2)}`],
        ]),
      );
    }
    if (evaluation.skipped.notInRun.length > 0) console.log(`(${evaluation.skipped.notInRun.length} judged queries returned nothing)`);
    if (opts.json) {
      writeFileSync(opts.json, JSON.stringify(report, null, 2) + '\n');
      console.log(`wrote ${opts.json}`);
    }
  } finally {
    store.close();
  }
});
