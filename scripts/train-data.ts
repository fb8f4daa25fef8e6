/**
 * Training data for the reader (scripts/train/, docs/training.md):
 * - `facts`: writes a synthetic fact-lookup set in the SQuAD format;
 * - `examples`: turns a SQuAD-format file into FiD examples (JSONL): k passages per question from the product's own
 *   retrieval over a collection of the file's paragraphs, tokenised by the reader's own input code.
 */
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import { Command, Option } from 'commander';
import { loadConfig } from '../src/config/index.js';
import { loadSquad } from '../src/eval/index.js';
import { writeJsonAtomic } from '../src/fixtures/files.js';
import { loadReaderTokenizer } from '../src/models/index.js';
import type { SearchMode } from '../src/retrieval/index.js';
import { openSystem } from '../src/service/index.js';
import { factLookupAsSquad, generateFactLookup, type FactSplit } from '../src/training/fact-lookup.js';
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
        indexName: opts.collection ?? evalIndexName('train', datasetName, base.embedModel),
        server: { ...base.server, ingestCorpusOnStart: false },
        retrieval: { ...base.retrieval, maxK: Math.max(base.retrieval.maxK, opts.k) },
      },
    });
    const reader = await loadReaderTokenizer(config.readerModel, { ...config, maxInputTokens: config.reader.maxInputTokens });
    const service = await openSystem(config, { writable: true, verify: false, reader: false, loadEmbedder: 'lazy', prepareDefaultCollection: true });
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
