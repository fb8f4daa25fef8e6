import { Command, InvalidArgumentError } from 'commander';
import { indexDir, loadConfig } from '../src/config/index.js';
import { deleteDocuments, ingestPaths, type IngestError, type IngestSummary } from '../src/ingest/index.js';
import { loadEmbedder } from '../src/models/index.js';
import { IndexNotFoundError, IndexStore, readManifest } from '../src/store/index.js';

function positiveInt(name: string, min: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return Number(value);
  };
}

function indexName(value: string): string {
  if (!/^[A-Za-z0-9._-]+$/.test(value)) throw new InvalidArgumentError('index names may use letters, digits, ".", "_" and "-"');
  return value;
}

const program = new Command()
  .name('ingest')
  .description(
    'Ingest .txt/.md/.html/.jsonl files, folders and BEIR folders (with corpus.jsonl) into an index under the indexes folder.\n' +
      'Re-ingesting unchanged documents is a no-op; changed documents replace their passages.',
  )
  .argument('[paths...]', 'files or folders to ingest')
  .option('--index <name>', 'index name (default: config indexName)', indexName)
  .option('--delete <ids...>', 'document ids to remove from every store (give paths before this option)')
  .option('--chunk-tokens <n>', 'passage budget in embedding-model tokens', positiveInt('--chunk-tokens', 16))
  .option('--overlap <n>', 'tokens shared by consecutive passages', positiveInt('--overlap', 0))
  .option('--config <file>', 'config file (default: RAG_CONFIG or ./rag.config.json)')
  .option('--progress', 'show progress (the default): a bar on a terminal, else a line every 5 s')
  .option('--no-progress', 'never show the progress bar')
  .showHelpAfterError();

program.parse();
const paths = program.args;
const opts = program.opts<{
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
  const dir = indexDir(config, opts.index ?? config.indexName);

  // Deleting needs no embedding model: open the index with the model it was built with.
  let store: IndexStore;
  let embedder: Awaited<ReturnType<typeof loadEmbedder>> | undefined;
  if (paths.length > 0) {
    embedder = await loadEmbedder(config);
    store = IndexStore.open(dir, { embedModel: config.embedModel, dim: embedder.dim, hnsw: config.hnsw });
  } else {
    const manifest = readManifest(dir);
    if (!manifest) throw new IndexNotFoundError(`no index at ${dir}`);
    store = IndexStore.open(dir, { embedModel: manifest.embedModel, dim: manifest.dim, hnsw: config.hnsw });
  }

  let failed = false;
  try {
    if (deleteIds.length > 0) {
      const summary = deleteDocuments(deleteIds, store);
      for (const e of summary.errors) console.error(formatError(e));
      printSummary('delete', summary);
      if (summary.deleted === 0) failed = true;
    }
    if (paths.length > 0 && embedder) {
      const summary = await ingestPaths(paths, {
        store,
        embedder,
        chunk: {
          maxTokens: opts.chunkTokens ?? config.chunk.maxTokens,
          overlapTokens: opts.overlap ?? config.chunk.overlapTokens,
        },
        progress: opts.progress ?? true,
        onError: (e) => console.error(formatError(e)),
      });
      printSummary('ingest', summary);
      if (summary.documentsSeen === 0) {
        console.error('error: nothing could be ingested from the given paths');
        failed = true;
      }
    }
    const stats = store.stats();
    console.log(
      `index ${dir}: ${stats.documents} documents, ${stats.passages} passages, ${stats.hnswLive} in HNSW, ` +
        `model ${stats.embedModel} (${stats.dim}-d)`,
    );
  } finally {
    store.close();
  }
  return failed ? 1 : 0;
}

try {
  process.exitCode = await main();
} catch (err) {
  console.error(`ingest failed: ${(err as Error).message}`);
  process.exitCode = 1;
}
