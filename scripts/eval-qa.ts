import path from 'node:path';
import { Command, Option } from 'commander';
import { loadConfig } from '../src/config/index.js';
import { answerInPassages, loadSquad, percentile, scoreAnswer } from '../src/eval/index.js';
import type { FusionMode } from '../src/reader/index.js';
import type { SearchMode } from '../src/retrieval/index.js';
import { openSystem } from '../src/service/index.js';
import { evalIndexName, formatTable, intOption, runCli, writeJsonReport } from './lib/cli.js';

const program = new Command()
  .name('eval:qa')
  .description('SQuAD-style answer evaluation through the same code path as POST /v1/ask: EM, F1, answer hit@k, latency')
  .requiredOption('--dataset <file>', 'SQuAD-format JSON (v1.1 or v2.0)')
  .addOption(new Option('--fusion <mode>', 'reader input').choices(['fid', 'concat']).default('fid'))
  .addOption(new Option('--mode <mode>', 'retrieval mode').choices(['bm25', 'dense', 'hybrid', 'exact']).default('hybrid'))
  .option('--k <n>', 'passages given to the reader', intOption('--k'), 10)
  .option(
    '--gold',
    "the reader reads the question's own paragraph alone (retrieval filtered to its passages, at most k): reading without retrieval",
  )
  .option('--limit <n>', 'evaluate only the first N questions', intOption('--limit'))
  .option('--max-new-tokens <n>', 'answer length limit', intOption('--max-new-tokens'), 32)
  .option('--beams <n>', 'beam width', intOption('--beams'), 1)
  .option('--collection <name>', 'collection to answer from, built on first run (default: derived from dataset and embedding model)')
  .option('--index <name>', 'same as --collection (older name)')
  .option('--json <file>', 'write the results as JSON');

runCli(async () => {
  const opts = program.parse().opts<{
    dataset: string;
    fusion: FusionMode;
    mode: SearchMode;
    k: number;
    gold?: boolean;
    limit?: number;
    maxNewTokens: number;
    beams: number;
    collection?: string;
    index?: string;
    json?: string;
  }>();
  const datasetName = path.basename(path.resolve(opts.dataset), '.json');
  const base = loadConfig();
  const squad = await loadSquad(opts.dataset);
  const config = loadConfig({
    overrides: {
      defaultCollection:
        opts.collection ??
        opts.index ??
        evalIndexName('squad', `${path.basename(path.dirname(path.resolve(opts.dataset)))}-${datasetName}`, base.embedModel),
      server: { ...base.server, ingestCorpusOnStart: false },
      reader: { ...base.reader, maxK: Math.max(base.reader.maxK, opts.k) },
    },
  });
  // The evaluated collection is the default one of this run, so ask() addresses it exactly as /v1/ask does.
  const service = await openSystem(config, {
    writable: true,
    verify: false,
    reader: true,
    loadEmbedder: 'eager',
    prepareDefaultCollection: true,
  });
  try {
    // The paragraphs are the corpus; unchanged paragraphs make this a no-op on later runs.
    const ingest = await service.ingestDocuments(
      squad.paragraphs.map((p) => ({ id: p.id, title: p.title, text: p.context, metadata: {} })),
      { progress: 'auto' },
    );
    console.log(`collection ${config.defaultCollection}: ${(await service.stats()).passages} passages (${ingest.passagesAdded} new)`);

    const questions = opts.limit ? squad.questions.slice(0, opts.limit) : squad.questions;
    let em = 0;
    let f1 = 0;
    let hits = 0;
    const latencies: number[] = [];
    const f1s: number[] = [];
    for (const [i, q] of questions.entries()) {
      const outcome = await service.ask({
        question: q.question,
        k: opts.k,
        mode: opts.mode,
        ...(opts.gold ? { filter: { docIds: [q.paragraphId] } } : {}),
        fusion: opts.fusion,
        maxNewTokens: opts.maxNewTokens,
        numBeams: opts.beams,
      });
      const score = scoreAnswer(outcome.answer, q.answers);
      em += score.exactMatch;
      f1 += score.f1;
      f1s.push(score.f1);
      if (
        q.answers.length > 0 &&
        answerInPassages(
          q.answers,
          outcome.passages.map((p) => p.text),
        )
      )
        hits++;
      latencies.push(outcome.timings.totalMs);
      if (process.stderr.isTTY && (i + 1) % 10 === 0) process.stderr.write(`\r${i + 1}/${questions.length} questions`);
    }
    if (process.stderr.isTTY) process.stderr.write('\n');

    const answerable = questions.filter((q) => q.answers.length > 0).length;
    const n = questions.length;
    const report = {
      dataset: datasetName,
      fusion: opts.fusion,
      k: opts.k,
      gold: opts.gold === true,
      questions: n,
      em: em / n,
      f1: f1 / n,
      // The spread of one question's F1: what a threshold on the mean of a sample of questions is derived from.
      f1Sd: Math.sqrt(f1s.reduce((sum, x) => sum + (x - f1 / n) ** 2, 0) / Math.max(1, n - 1)),
      hitAtK: answerable > 0 ? hits / answerable : null,
      latencyMs: { p50: percentile(latencies, 50), p95: percentile(latencies, 95) },
      readerModel: config.readerModel,
      embedModel: config.embedModel,
      retrievalMode: opts.mode,
    };
    const reading = opts.gold ? 'the gold paragraph alone' : `k=${opts.k}, retrieval ${opts.mode}`;
    console.log(`\n${opts.dataset}: ${n} questions, fusion ${opts.fusion}, ${reading}, reader ${config.readerModel}`);
    console.log(
      formatTable([
        ['metric', 'value'],
        ['exact match (%)', (100 * report.em).toFixed(2)],
        ['F1 (%)', (100 * report.f1).toFixed(2)],
        ['F1 standard deviation per question (%)', (100 * report.f1Sd).toFixed(2)],
        [`answer in top-${opts.k} passages (%)`, report.hitAtK === null ? 'n/a' : (100 * report.hitAtK).toFixed(2)],
        ['latency p50 / p95 (ms)', `${report.latencyMs.p50.toFixed(1)} / ${report.latencyMs.p95.toFixed(1)}`],
      ]),
    );
    if (opts.json) {
      writeJsonReport(opts.json, report);
    }
  } finally {
    await service.close();
  }
});
