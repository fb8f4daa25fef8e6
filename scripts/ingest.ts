import { Command, InvalidArgumentError } from 'commander';
import { loadConfig } from '../src/config/index.js';
import { readSources, type IngestError, type IngestSummary, type ReadOptions } from '../src/ingest/index.js';
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
    'Ingest .pdf/.docx/.txt/.md/.html/.jsonl files, images (.png/.jpg/.tif, by OCR), folders and BEIR folders (with corpus.jsonl) into a collection.\n' +
      'Re-ingesting unchanged documents is a no-op; changed documents replace their passages.\n' +
      '--sync DIR makes the collection mirror a folder: adds, updates, and deletes the documents an earlier sync of\n' +
      'DIR wrote whose files are gone (nothing else); --dry-run prints what would change without writing.\n' +
      'Exit status: 0 everything was read; 1 nothing was ingested or the run failed; 2 bad arguments;\n' +
      '3 some files could not be read (the others were written; --allow-file-errors makes this 0).',
  )
  .argument('[paths...]', 'files or folders to ingest')
  .option('--collection <name>', 'collection to write, created if missing (default: config defaultCollection)', collectionName)
  .option('--index <name>', 'same as --collection (older name)', collectionName)
  .option('--delete <ids...>', 'document ids to remove from every store (give paths before this option)')
  .option('--sync <dir>', 'mirror this folder: add, update, and delete documents of earlier syncs of it whose files are gone')
  .option('--dry-run', 'read everything and print the plan (added / updated / unchanged / deleted) without writing')
  .option('--chunk-tokens <n>', 'passage budget in embedding-model tokens', positiveInt('--chunk-tokens', 16))
  .option('--overlap <n>', 'tokens shared by consecutive passages', positiveInt('--overlap', 0))
  .option('--config <file>', 'config file (default: RAG_CONFIG or ./rag.config.json)')
  .option('--progress', 'always report progress (default: a bar on a terminal, a line every 5 s otherwise)')
  .option('--no-progress', 'never report progress')
  .option('--allow-file-errors', 'exit 0 when some files could not be read (their errors are still printed)')
  .showHelpAfterError();

program.parse();
const paths = program.args;
const opts = program.opts<{
  collection?: string;
  index?: string;
  delete?: string[];
  sync?: string;
  dryRun?: boolean;
  chunkTokens?: number;
  overlap?: number;
  config?: string;
  progress?: boolean;
  allowFileErrors?: boolean;
}>();

/** Some files could not be read, the rest were written (see the help text's exit statuses). */
const EXIT_FILE_ERRORS = 3;

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
  ];
  const unsupported = Object.entries(s.unsupported ?? {}).sort(([, a], [, b]) => b - a);
  if (unsupported.length > 0) {
    const total = unsupported.reduce((n, [, c]) => n + c, 0);
    parts.push(`unsupported files ${total} (${unsupported.map(([ext, c]) => `${ext} ${c}`).join(', ')})`);
  }
  parts.push(`${s.seconds.toFixed(1)} s`);
  console.log(`${label}: ${parts.join(', ')}`);
}

const PLAN_MARK: Record<string, string> = { added: '+', updated: '~', deleted: '-' };

/**
 * A dry run's plan: one line per document that would change (with the reason when it is not the file itself), then
 * `= id` for each document a sync keeps although its file is gone, and why; then the summary.
 */
function printPlan(s: IngestSummary & { kept?: Array<{ id: string; reason: string }> }): void {
  for (const o of s.outcomes) {
    const mark = PLAN_MARK[o.status];
    if (mark) console.log(`${mark} ${o.id}${o.reason ? `  (${o.reason})` : ''}`);
  }
  for (const k of s.kept ?? []) console.log(`= ${k.id}  (kept: ${k.reason})`);
}

/** A dry run against a collection that does not exist yet: every readable document would be added. */
async function planNewCollection(sources: string[], read: ReadOptions): Promise<IngestSummary> {
  const started = performance.now();
  const summary: IngestSummary = {
    documentsSeen: 0,
    added: 0,
    updated: 0,
    unchanged: 0,
    deleted: 0,
    passagesAdded: 0,
    passagesRemoved: 0,
    errors: [],
    outcomes: [],
    unsupported: {},
    seconds: 0,
  };
  for await (const item of readSources(sources, read)) {
    if (item.kind === 'document') {
      summary.documentsSeen++;
      summary.added++;
      summary.outcomes.push({ id: item.document.id, status: 'added' });
    } else if (item.kind === 'error') {
      summary.errors.push(item.error);
      console.error(formatError(item.error));
    } else {
      summary.unsupported[item.extension] = (summary.unsupported[item.extension] ?? 0) + 1;
    }
  }
  summary.seconds = (performance.now() - started) / 1000;
  return summary;
}

async function main(): Promise<number> {
  const deleteIds = opts.delete ?? [];
  if (paths.length === 0 && deleteIds.length === 0 && opts.sync === undefined) {
    program.outputHelp({ error: true });
    return 2;
  }
  if (opts.sync !== undefined && (paths.length > 0 || deleteIds.length > 0)) {
    console.error('error: --sync takes one folder and no other paths or --delete');
    return 2;
  }
  const dryRun = opts.dryRun === true;
  if (dryRun && deleteIds.length > 0) {
    console.error('error: --dry-run plans an ingest or a --sync, not --delete');
    return 2;
  }
  const config = loadConfig({ file: opts.config });
  const collection = opts.collection ?? opts.index ?? config.defaultCollection;
  const chunk =
    opts.chunkTokens !== undefined || opts.overlap !== undefined
      ? { maxTokens: opts.chunkTokens ?? config.chunk.maxTokens, overlapTokens: opts.overlap ?? config.chunk.overlapTokens }
      : undefined;
  // A plan only reads, so it opens the collection read-only: it needs no writer lock and runs beside a server.
  const service = await openSystem(config, {
    writable: !dryRun,
    verify: false,
    reader: false,
    loadEmbedder: 'lazy',
    prepareDefaultCollection: false,
  });
  let failed = false;
  let fileErrors = 0;
  try {
    const sources = opts.sync !== undefined ? [opts.sync] : paths;
    const exists = await service.hasCollection(collection);
    if (dryRun) {
      // A plan changes nothing, not even by creating the collection.
      const summary = exists
        ? opts.sync !== undefined
          ? await service.syncFolder(opts.sync, {
              collection,
              chunk,
              dryRun,
              progress: false,
              onError: (e) => console.error(formatError(e)),
            })
          : await service.ingestPaths(paths, { collection, chunk, dryRun, progress: false, onError: (e) => console.error(formatError(e)) })
        : await planNewCollection(sources, { ocr: config.ingest.ocr });
      printPlan(summary);
      printSummary(`plan (dry run, collection ${collection}${exists ? '' : ' would be created'})`, summary);
      return summary.errors.length > 0 && !opts.allowFileErrors ? EXIT_FILE_ERRORS : 0;
    }
    if (sources.length > 0 && !exists) await service.createCollection(collection, { chunk });
    if (opts.sync !== undefined) {
      const summary = await service.syncFolder(opts.sync, {
        collection,
        chunk,
        progress: opts.progress ?? 'auto',
        onError: (e) => console.error(formatError(e)),
      });
      printPlan({ ...summary, outcomes: summary.outcomes.filter((o) => o.status === 'deleted'), kept: summary.kept });
      printSummary(`sync ${opts.sync}`, summary);
      fileErrors += summary.errors.length;
    }
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
      fileErrors += summary.errors.length;
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
  if (failed) return 1;
  if (fileErrors > 0 && !opts.allowFileErrors) {
    console.error(
      `error: ${fileErrors} file(s) could not be read (listed above); the rest were written. --allow-file-errors exits 0 for this`,
    );
    return EXIT_FILE_ERRORS;
  }
  return 0;
}

try {
  process.exitCode = await main();
} catch (err) {
  console.error(`ingest failed: ${(err as Error).message}`);
  process.exitCode = 1;
}
