import path from 'node:path';
import { Command, Option } from 'commander';
import { indexDir, loadConfig } from '../src/config/index.js';
import { loadBeirDataset, evaluateRun, passagesToDocRun, percentile, recallAgainst, RETRIEVAL_METRICS, type ScoredDoc } from '../src/eval/index.js';
import { contentHash, ingestDocuments, type SourceDocument } from '../src/ingest/index.js';
import { loadEmbedder } from '../src/models/index.js';
import { Retriever, type SearchMode } from '../src/retrieval/index.js';
import { IndexStore, readManifest } from '../src/store/index.js';
import { evalIndexName, fail, formatTable, intOption, runCli, writeJsonReport } from './lib/cli.js';

const program = new Command()
  .name('eval')
  .description('BEIR-style retrieval evaluation: nDCG@10, Recall@10/100, MRR@10, MAP@100, HNSW recall@10 vs exact, latency')
  .requiredOption('--dataset <dir>', 'BEIR folder with corpus.jsonl, queries.jsonl, qrels/test.tsv')
  .addOption(new Option('--mode <mode>', 'retrieval mode').choices(['bm25', 'dense', 'hybrid', 'exact']).default('hybrid'))
  .option('--k <n>', 'passages retrieved per query', intOption('--k'), 100)
  .option('--split <name>', 'qrels split', 'test')
  .option('--index <name>', 'index name (default: derived from dataset and embedding model)')
  .option('--json <file>', 'write the results as JSON');

runCli(async () => {
  const opts = program.parse().opts<{ dataset: string; mode: SearchMode; k: number; split: string; index?: string; json?: string }>();
  const config = loadConfig();
  const dataset = await loadBeirDataset(opts.dataset, { split: opts.split });
  const datasetName = path.basename(path.resolve(opts.dataset));
  const dir = indexDir(config, opts.index ?? evalIndexName('beir', datasetName, config.embedModel));

  // BM25 needs no query embeddings: an index that already holds the whole dataset is searched without loading the
  // embedding model. Otherwise building (or updating) the index is part of the eval, and later runs reuse it.
  let store = opts.mode === 'bm25' ? openIfComplete(dir, dataset.corpus, config) : undefined;
  let embedder: Awaited<ReturnType<typeof loadEmbedder>> | undefined;
  if (store) {
    const stats = store.stats();
    console.log(`index ${dir}: ${stats.documents} documents, ${stats.passages} passages (reused; bm25 needs no embedding model)`);
  } else {
    embedder = await loadEmbedder(config);
    store = IndexStore.open(dir, { embedModel: config.embedModel, dim: embedder.dim, hnsw: config.hnsw });
  }
  try {
    if (embedder) {
      const ingest = await ingestDocuments(dataset.corpus, { store, embedder, chunk: config.chunk, progress: 'auto' });
      const stats = store.stats();
      const built = ingest.passagesAdded > 0;
      console.log(
        `index ${dir}: ${stats.documents} documents, ${stats.passages} passages` +
          (built ? `; embedded ${ingest.passagesAdded} passages in ${ingest.seconds.toFixed(1)} s (${(ingest.passagesAdded / ingest.seconds).toFixed(1)} passages/s)` : ' (reused)'),
      );
      if (ingest.errors.length > 0) console.error(`${ingest.errors.length} corpus records skipped, first: ${JSON.stringify(ingest.errors[0])}`);
    }
    const stats = store.stats();

    const retriever = new Retriever(store, embedder, { ...config.retrieval, maxK: Math.max(opts.k, config.retrieval.maxK) });
    const run = new Map<string, ScoredDoc[]>();
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
      // HNSW recall is measured passage-wise on the same queries whenever the embedding model is loaded.
      if (embedder) {
        approx.push((await retriever.search(text, { k: 10, mode: 'dense' })).hits.map((h) => h.passageId));
        exact.push((await retriever.search(text, { k: 10, mode: 'exact' })).hits.map((h) => h.passageId));
      }
    }

    const evaluation = evaluateRun(run, dataset.qrels);
    const hnswRecallAt10 = embedder ? recallAgainst(approx, exact, 10) : null;
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
    };

    console.log(`\n${datasetName}, mode ${opts.mode}, ${evaluation.queries} queries with judgments, k=${opts.k}`);
    console.log(
      formatTable([
        ['metric', 'value'],
        ...RETRIEVAL_METRICS.map((m) => [m, evaluation.mean[m].toFixed(4)]),
        ['hnsw recall@10 vs exact', hnswRecallAt10 === null ? 'not measured (bm25 on a reused index)' : hnswRecallAt10.toFixed(4)],
        ['search latency p50 / p95 (ms)', `${report.latencyMs.p50.toFixed(2)} / ${report.latencyMs.p95.toFixed(2)}`],
        ...(report.queryEmbeddingMs
          ? [['query embedding p50 / p95 (ms)', `${report.queryEmbeddingMs.p50.toFixed(2)} / ${report.queryEmbeddingMs.p95.toFixed(2)}`]]
          : []),
      ]),
    );
    if (evaluation.skipped.notInRun.length > 0) console.log(`(${evaluation.skipped.notInRun.length} judged queries returned nothing)`);
    if (opts.json) {
      writeJsonReport(opts.json, report);
    }
  } finally {
    store.close();
  }
});

/**
 * The index at `dir` opened with the model it was built with, if it holds every document of the corpus unchanged;
 * undefined (and nothing opened) otherwise.
 */
function openIfComplete(dir: string, corpus: SourceDocument[], config: ReturnType<typeof loadConfig>): IndexStore | undefined {
  const manifest = readManifest(dir);
  if (!manifest || manifest.embedModel !== config.embedModel) return undefined;
  const store = IndexStore.open(dir, { embedModel: manifest.embedModel, dim: manifest.dim, hnsw: config.hnsw, readonly: true });
  const states = store.documentStates(corpus.map((d) => d.id));
  if (corpus.every((d) => states.get(d.id)?.contentHash === contentHash(d))) return store;
  store.close();
  return undefined;
}
