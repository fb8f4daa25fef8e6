/**
 * How often each attribution method names the passage that holds the answer (citation@1), and what it costs:
 * the decoder's cross-attention mass, leave-one-passage-out re-scoring, and the retrieval rank as the baseline.
 * Default: the committed fact-lookup reader on a generated fact-lookup set (no download needed); with --dataset, a
 * SQuAD-format file (the gold paragraph is known) read by the configured reader.
 */
import path from 'node:path';
import { Command, Option } from 'commander';
import { loadConfig, type AppConfig } from '../src/config/index.js';
import {
  citationThresholds,
  isGoldPassage,
  loadSquad,
  parseSquad,
  scoreAnswer,
  summarizeAttribution,
  type AttributionCase,
  type SquadDataset,
} from '../src/eval/index.js';
import { defaultSharedModelsDir, ensureFixtures, fixtureDirName } from '../src/fixtures/index.js';
import { ensureExportedReader, FACT_LOOKUP_READER } from '../src/fixtures/trained-readers.js';
import { loadReaderModel } from '../src/models/index.js';
import { FidReader, fidDecoderRewrite, type ReaderPassage } from '../src/reader/index.js';
import type { SearchMode } from '../src/retrieval/index.js';
import { openSystem } from '../src/service/index.js';
import { factLookupAsSquad, generateFactLookup } from '../src/training/fact-lookup.js';
import { evalIndexName, formatTable, intOption, runCli, writeJsonReport } from './lib/cli.js';

const program = new Command()
  .name('eval:attribution')
  .description('citation@1 and cost of each attribution method: cross-attention, leave-one-out, retrieval rank')
  .option('--dataset <file>', 'SQuAD-format JSON (default: a generated fact-lookup set read by the committed fact-lookup reader)')
  .option('--people <n>', 'generated set: people (one passage each, two questions each)', intOption('--people'), 150)
  .option('--seed <n>', 'generated set: seed', intOption('--seed'), 11)
  .option('--k <n>', 'passages per question', intOption('--k'), 10)
  .addOption(new Option('--mode <mode>', 'retrieval mode').choices(['bm25', 'dense', 'hybrid']).default('bm25'))
  .option('--limit <n>', 'only the first N questions', intOption('--limit'))
  .option('--collection <name>', 'collection of the paragraphs (default: derived from the dataset and the embedding model)')
  .option('--json <file>', 'write the results as JSON');

interface Options {
  dataset?: string;
  people: number;
  seed: number;
  k: number;
  mode: SearchMode;
  limit?: number;
  collection?: string;
  json?: string;
}

/**
 * The default run's models: the committed reader, exported, and the tiny fixture embedder, which cutting passages needs
 * (retrieval is BM25).
 */
async function factLookupConfig(base: AppConfig): Promise<AppConfig> {
  const modelsDir = path.resolve('.cache', 'fixtures');
  await ensureFixtures({ size: 'tiny', outDir: modelsDir, sharedModelsDir: defaultSharedModelsDir() });
  await ensureExportedReader(FACT_LOOKUP_READER, modelsDir);
  return { ...base, modelsDir, embedModel: fixtureDirName('bert', 'tiny'), readerModel: FACT_LOOKUP_READER, allowRemote: false };
}

runCli(async () => {
  const opts = program.parse().opts<Options>();
  const base = opts.dataset ? loadConfig() : await factLookupConfig(loadConfig());
  const squad: SquadDataset = opts.dataset
    ? await loadSquad(opts.dataset)
    : parseSquad(
        factLookupAsSquad(generateFactLookup({ split: 'test', people: opts.people, questionsPerPerson: 2, seed: opts.seed })),
        'generated',
      );
  const datasetName = opts.dataset ? path.basename(path.resolve(opts.dataset), '.json') : `facts-${opts.people}-${opts.seed}`;
  const config: AppConfig = {
    ...base,
    defaultCollection: opts.collection ?? evalIndexName('attribution', datasetName, base.embedModel),
    server: { ...base.server, ingestCorpusOnStart: false },
    retrieval: { ...base.retrieval, maxK: Math.max(base.retrieval.maxK, opts.k) },
  };
  const model = await loadReaderModel(config, fidDecoderRewrite());
  const readers = {
    crossAttention: await FidReader.create(model, {
      attribution: 'cross-attention',
      encoding: config.reader.encoding,
      crossCache: config.reader.crossCache,
    }),
    leaveOneOut: await FidReader.create(model, {
      attribution: 'leave-one-out',
      encoding: config.reader.encoding,
      crossCache: config.reader.crossCache,
    }),
  };
  const service = await openSystem(config, {
    writable: true,
    verify: false,
    reader: false,
    loadEmbedder: 'lazy',
    prepareDefaultCollection: true,
  });
  try {
    await service.ingestDocuments(
      squad.paragraphs.map((p) => ({ id: p.id, title: p.title, text: p.context, metadata: {} })),
      { progress: 'auto' },
    );
    const questions = squad.questions.filter((q) => q.answers.length > 0).slice(0, opts.limit);
    const generate = { maxNewTokens: 32, numBeams: 1, lengthPenalty: 1, noRepeatNgramSize: 0, fusion: 'fid' as const };
    const cases: AttributionCase[] = [];
    let em = 0;
    let agree = 0;
    for (const [i, q] of questions.entries()) {
      const search = await service.search({ query: q.question, k: opts.k, mode: opts.mode });
      const passages: ReaderPassage[] = search.results.map((r) => ({ ...r, retrievalScore: r.score }));
      const viaAttention = await readers.crossAttention.answer(q.question, passages, generate);
      const viaRemoval = await readers.leaveOneOut.answer(q.question, passages, generate);
      em += scoreAnswer(viaAttention.answer, q.answers).exactMatch;
      if (viaAttention.answer === viaRemoval.answer) agree++;
      cases.push({
        gold: passages.map((p) => isGoldPassage(p, q.paragraphId, q.answers)),
        scores: {
          'cross-attention': viaAttention.passageScores,
          'leave-one-out': viaRemoval.passageScores,
          // Earlier ranks score higher; argmax takes the top retrieved passage.
          'retrieval rank': passages.map((_, r) => -r),
        },
        ms: {
          'cross-attention': viaAttention.timings.attributionMs,
          'leave-one-out': viaRemoval.timings.attributionMs,
          'retrieval rank': 0,
        },
      });
      if (process.stderr.isTTY && (i + 1) % 10 === 0) process.stderr.write(`\r${i + 1}/${questions.length} questions`);
    }
    if (process.stderr.isTTY) process.stderr.write('\n');
    const summary = summarizeAttribution(cases, ['cross-attention', 'leave-one-out', 'retrieval rank']);
    // The service cites every passage with at least reader.citationShare of the cross-attention: what each choice gives.
    const thresholds = citationThresholds(cases, 'cross-attention', [0.05, 0.1, 0.15, 0.2, 0.3, 0.5]);
    const report = {
      dataset: datasetName,
      readerModel: config.readerModel,
      k: opts.k,
      retrievalMode: opts.mode,
      exactMatch: questions.length ? em / questions.length : 0,
      answersAgree: questions.length ? agree / questions.length : 0,
      ...summary,
      citationThresholds: thresholds,
      configuredCitationShare: config.reader.citationShare,
    };
    console.log(
      `\n${datasetName}: ${summary.questions} questions (${summary.withGold} with the gold passage among the top ${opts.k}), reader ${config.readerModel}, EM ${(100 * report.exactMatch).toFixed(1)}%`,
    );
    console.log(
      formatTable([
        ['attribution method', 'citation@1 (%)', 'cost p50 (ms)'],
        ...summary.methods.map((m) => [m.method, (100 * m.citationAt1).toFixed(1), m.msP50.toFixed(1)]),
      ]),
    );
    console.log(`\ncross-attention citations by threshold (reader.citationShare, now ${config.reader.citationShare}):`);
    console.log(
      formatTable([
        ['min share', 'gold cited (%)', 'cited per answer', 'precision (%)', 'F1 (%)'],
        ...thresholds.map((t) => [
          t.minShare.toFixed(2),
          (100 * t.goldCited).toFixed(1),
          t.citedPerAnswer.toFixed(2),
          (100 * t.precision).toFixed(1),
          (100 * t.f1).toFixed(1),
        ]),
      ]),
    );
    if (opts.json) writeJsonReport(opts.json, report);
  } finally {
    await service.close();
  }
});
