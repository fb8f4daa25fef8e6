import { Command, InvalidArgumentError } from 'commander';
import { loadConfig } from '../src/config/index.js';
import type { IngestError, IngestSummary } from '../src/ingest/index.js';
import { openSystem } from '../src/service/index.js';
import { COLLECTION_NAME } from '../src/store/index.js';

function positiveInt(name: string, min: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return Number(value);
  };
}

function collectionName(value: string): string {
  if (!COLLECTION_NAME.test(value)) {
    throw new InvalidArgumentError('collection names use 1-64 lower-case letters, digits, "_" or "-", starting with a letter or digit');
  }
  return value;
}

const program = new Command()
  .name('ingest')
  .description(
    'Ingest .txt/.md/.html/.jsonl files, folders and BEIR folders (with corpus.jsonl) into an index under the indexes folder.\n' +
      'Re-ingesting unchanged documents is a no-op; changed documents replace their passages.',
  )
  .argument('[paths...]', 'files or folders to ingest')
  .option('--collection <name>', 'collection to write, created if missing (default: config indexName)', collectionName)
  .option('--index <name>', 'same as --collection (older name)', collectionName)
  .option('--delete <ids...>', 'document ids to remove from every store (give paths before this option)')
  .option('--chunk-tokens <n>', 'passage budget in embedding-model tokens', positiveInt('--chunk-tokens', 16))
  .option('--overlap <n>', 'tokens shared by consecutive passages', positiveInt('--overlap', 0))
  .option('--config <file>', 'config file (default: RAG_CONFIG or ./rag.config.json)')
  .option('--progress', 'always show the progress bar (default: only when stderr is a terminal)')
  .option('--no-progress', 'never show the progress bar')
  .showHelpAfterError();

program.parse();
const paths = program.args;
const opts = program.opts<{
  collection?: string;
  index?: string;
  delete?: string[];
  chunkTokens?: number;
  overlap?: number;
  config?: string;
  progress?: boolean;
}>();

function formatError(e: IngestError): string {
  return `error: ${e.path}${e.line !== undefined ? `:${e.line}` : ''}: ${e.message}`;
}

function printSummary(label: string, s: IngestSummary): void {
  const parts = [
    `documents seen ${s.documentsSeen}`,
    `added ${s.added}`,
    `updated ${s.updated}`,
    `unchanged ${s.unchanged}`,
    `deleted ${s.deleted}`,
    `passages +${s.passagesAdded}/-${s.passagesRemoved}`,
    `errors ${s.errors.length}`,
    `${s.seconds.toFixed(1)} s`,
  ];
  console.log(`${label}: ${parts.join(', ')}`);
}

async function main(): Promise<number> {
  const deleteIds = opts.delete ?? [];
  if (paths.length === 0 && deleteIds.length === 0) {
    program.outputHelp({ error: true });
    return 2;
  }
  const config = loadConfig({ file: opts.config });
  const collection = opts.collection ?? opts.index ?? config.indexName;
  const chunk =
    opts.chunkTokens !== undefined || opts.overlap !== undefined
      ? { maxTokens: opts.chunkTokens ?? config.chunk.maxTokens, overlapTokens: opts.overlap ?? config.chunk.overlapTokens }
      : undefined;
  const service = await openSystem(config, { writable: true, verify: false, reader: false, prepareDefaultCollection: false });
  let failed = false;
  try {
    if (paths.length > 0 && !(await service.hasCollection(collection))) await service.createCollection(collection, { chunk });
    if (deleteIds.length > 0) {
      const summary = await service.deleteDocuments(deleteIds, { collection });
      for (const e of summary.errors) console.error(formatError(e));
      printSummary('delete', summary);
      if (summary.deleted === 0) failed = true;
    }
    if (paths.length > 0) {
      const summary = await service.ingestPaths(paths, {
        collection,
        chunk,
        progress: opts.progress ?? 'auto',
        onError: (e) => console.error(formatError(e)),
      });
      printSummary('ingest', summary);
      if (summary.documentsSeen === 0) {
        console.error('error: nothing could be ingested from the given paths');
        failed = true;
      }
    }
    const stats = await service.stats({ collection });
    console.log(
      `collection ${collection}: ${stats.documents} documents, ${stats.passages} passages, ` +
        `${stats.hnsw.live} in HNSW, model ${stats.models.embed}`,
    );
  } finally {
    await service.close();
  }
  return failed ? 1 : 0;
}

try {
  process.exitCode = await main();
} catch (err) {
  console.error(`ingest failed: ${(err as Error).message}`);
  process.exitCode = 1;
}
