/**
 * Training data for the reader (scripts/train/, docs/training.md):
 * - `facts`: writes a synthetic fact-lookup set in the SQuAD format;
 * - `split`: splits SQuAD files into training and validation sets by whole articles;
 * - `salient`: writes salient-span questions (SQuAD format) from the passages of BEIR corpora and SQuAD contexts;
 * - `examples`: turns a SQuAD-format file into FiD examples (JSONL): k passages per question from the product's own
 *   retrieval over a collection of the file's paragraphs, tokenised by the reader's own input code.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import { Command, Option } from 'commander';
import { loadConfig } from '../src/config/index.js';
import { loadSquad, readBeirCorpus } from '../src/eval/index.js';
import { writeJsonAtomic } from '../src/fixtures/files.js';
import { loadReaderTokenizer } from '../src/models/index.js';
import type { SearchMode } from '../src/retrieval/index.js';
import { openSystem } from '../src/service/index.js';
import { factLookupAsSquad, generateFactLookup, type FactSplit } from '../src/training/fact-lookup.js';
import { salientAsSquad, salientSpanQuestions, splitSquadArticles, type SourcePassage } from '../src/training/salient-spans.js';
import { buildFidExamples, serviceExampleSource, type ExamplesMeta } from '../src/training/fid-examples.js';
import { evalIndexName, intOption, runCli } from './lib/cli.js';

const program = new Command().name('train:data').description('training data for the FiD reader');

program
  .command('facts')
  .description('write a synthetic fact-lookup set (SQuAD format): invented people, one passage each')
  .addOption(new Option('--split <split>', 'name pool: test names never occur in train').choices(['train', 'test']).default('train'))
  .option('--people <n>', 'people (passages)', intOption('--people'), 2000)
  .option('--questions-per-person <n>', 'questions per person (at most 3)', intOption('--questions-per-person'), 2)
  .option('--seed <n>', 'generator seed', intOption('--seed'), 1)
  .requiredOption('--out <file>', 'SQuAD-format JSON to write')
  .action(async (opts: { split: FactSplit; people: number; questionsPerPerson: number; seed: number; out: string }) => {
    const set = generateFactLookup({
      split: opts.split,
      people: opts.people,
      questionsPerPerson: opts.questionsPerPerson,
      seed: opts.seed,
    });
    await writeJsonAtomic(opts.out, factLookupAsSquad(set));
    console.log(`wrote ${opts.out}: ${set.passages.length} passages, ${set.questions.length} questions (${opts.split} names)`);
  });

const collect = (value: string, previous: string[]) => [...previous, value];

program
  .command('split')
  .description('split SQuAD-format files into a training and a validation set of whole articles')
  .requiredOption('--dataset <file>', 'SQuAD-format JSON (repeatable)', collect, [])
  .requiredOption('--valid-articles <n>', 'articles held out for validation', intOption('--valid-articles'))
  .option('--seed <n>', 'which articles (a seeded hash of their titles)', intOption('--seed'), 1)
  .requiredOption('--train-out <file>', 'SQuAD-format JSON of the training articles')
  .requiredOption('--valid-out <file>', 'SQuAD-format JSON of the validation articles')
  .action(async (opts: { dataset: string[]; validArticles: number; seed: number; trainOut: string; validOut: string }) => {
    // loadSquad validates each file (naming the file and field) before its raw articles are split.
    const files = await Promise.all(opts.dataset.map(async (f) => (await loadSquad(f), JSON.parse(await readFile(f, 'utf8')))));
    const { train, valid } = splitSquadArticles(files, { validArticles: opts.validArticles, seed: opts.seed });
    await writeJsonAtomic(opts.trainOut, train);
    await writeJsonAtomic(opts.validOut, valid);
    const questions = (d: typeof train) =>
      d.data.reduce((n, a) => n + (a.paragraphs as { qas: unknown[] }[]).reduce((m, p) => m + p.qas.length, 0), 0);
    console.log(`wrote ${opts.trainOut}: ${train.data.length} articles, ${questions(train)} questions`);
    console.log(
      `wrote ${opts.validOut}: ${valid.data.length} articles (${valid.data.map((a) => a.title).join(', ')}), ${questions(valid)} questions`,
    );
  });

program
  .command('salient')
  .description('write salient-span questions (SQuAD format) from BEIR passages and SQuAD contexts')
  .option('--beir <dir>', 'BEIR dataset folder whose corpus.jsonl gives passages (repeatable)', collect, [])
  .option('--squad <file>', 'SQuAD-format JSON whose contexts give passages (repeatable)', collect, [])
  .option('--exclude <file>', 'SQuAD-format JSON whose articles are left out (the validation set)', collect, [])
  .option('--per-passage <n>', 'questions per passage at most', intOption('--per-passage'), 2)
  .option('--seed <n>', 'generator seed', intOption('--seed'), 1)
  .requiredOption('--out <file>', 'SQuAD-format JSON to write')
  .action(async (opts: { beir: string[]; squad: string[]; exclude: string[]; perPassage: number; seed: number; out: string }) => {
    const excluded = new Set((await Promise.all(opts.exclude.map(loadSquad))).flatMap((d) => d.paragraphs.map((p) => p.title)));
    const passages: SourcePassage[] = [];
    for (const dir of opts.beir) {
      for await (const doc of readBeirCorpus(path.join(dir, 'corpus.jsonl'))) {
        passages.push({ id: `${path.basename(dir)}:${doc.id}`, title: doc.title, text: doc.text });
      }
    }
    for (const file of opts.squad) {
      for (const p of (await loadSquad(file)).paragraphs) {
        if (!excluded.has(p.title)) passages.push({ id: p.id, title: p.title, text: p.context });
      }
    }
    if (passages.length === 0) throw new Error('salient: no passages (give --beir or --squad)');
    const questions = salientSpanQuestions(passages, { perPassage: opts.perPassage, seed: opts.seed });
    await writeJsonAtomic(opts.out, salientAsSquad(passages, questions));
    const counts = new Map<string, number>();
    for (const q of questions) counts.set(q.kind, (counts.get(q.kind) ?? 0) + 1);
    const kinds = [...counts].map(([k, n]) => `${k} ${n}`).join(', ');
    console.log(`wrote ${opts.out}: ${questions.length} questions (${kinds}) from ${passages.length} passages`);
  });

program
  .command('examples')
  .description('SQuAD-format JSON -> FiD examples (JSONL) with k retrieved passages per question')
  .requiredOption('--dataset <file>', 'SQuAD-format JSON')
  .requiredOption('--out <file>', 'JSONL to write (a <file>.meta.json is written beside it)')
  .option('--k <n>', 'passages per question', intOption('--k'), 10)
  .addOption(new Option('--mode <mode>', 'retrieval mode').choices(['bm25', 'dense', 'hybrid']).default('bm25'))
  .option('--collection <name>', 'collection of the paragraphs (default: derived from the dataset and the embedding model)')
  .option('--limit <n>', 'only the first N questions', intOption('--limit'))
  .action(async (opts: { dataset: string; out: string; k: number; mode: SearchMode; collection?: string; limit?: number }) => {
    const base = loadConfig();
    const squad = await loadSquad(opts.dataset);
    if (opts.limit) squad.questions = squad.questions.slice(0, opts.limit);
    const datasetName = path.basename(path.resolve(opts.dataset), '.json');
    const config = loadConfig({
      overrides: {
        defaultCollection: opts.collection ?? evalIndexName('train', datasetName, base.embedModel),
        server: { ...base.server, ingestCorpusOnStart: false },
        retrieval: { ...base.retrieval, maxK: Math.max(base.retrieval.maxK, opts.k) },
      },
    });
    const reader = await loadReaderTokenizer(config.readerModel, { ...config, maxInputTokens: config.reader.maxInputTokens });
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
      const source = serviceExampleSource(service);
      await mkdir(path.dirname(path.resolve(opts.out)), { recursive: true });
      const out = createWriteStream(opts.out);
      const stats = { goldRetrieved: 0, examples: 0 };
      const fidOptions = { k: opts.k, mode: opts.mode, tokenizer: reader.tokenizer, config: reader.config };
      for await (const example of buildFidExamples(squad, source, fidOptions, stats)) {
        if (!out.write(`${JSON.stringify(example)}\n`)) await once(out, 'drain');
      }
      out.end();
      await once(out, 'finish');
      const meta: ExamplesMeta = {
        format: 'fid-examples-1',
        readerModel: config.readerModel,
        tokenizer: reader.location.dir ? path.join(reader.location.dir, 'tokenizer.json') : `${reader.location.id} (hub)`,
        pad_token_id: reader.config.pad_token_id,
        eos_token_id: reader.config.eos_token_id,
        decoder_start_token_id: reader.config.decoder_start_token_id,
        max_input_tokens: reader.config.maxInputTokens,
        k: opts.k,
        retrievalMode: opts.mode,
        examples: stats.examples,
        goldRetrieved: stats.goldRetrieved,
      };
      await writeJsonAtomic(`${opts.out}.meta.json`, meta);
      console.log(
        `wrote ${opts.out}: ${stats.examples} examples, k=${opts.k}, gold passage retrieved for ${((100 * stats.goldRetrieved) / Math.max(1, stats.examples)).toFixed(1)}%`,
      );
    } finally {
      await service.close();
    }
  });

runCli(async () => {
  await program.parseAsync();
});
