/**
 * `npm run migrate-to-postgres -- --index NAME`: moves an embedded index (documents, passages and their stored vectors)
 * into PostgreSQL as a collection of the same name, without embedding anything again. The database comes from
 * `--database-url`, else RAG_DATABASE_URL / config `database.url`. Safe to re-run: documents are upserted.
 */
import path from 'node:path';
import { Command } from 'commander';
import { loadConfig } from '../src/config/index.js';
import { moveEmbeddedIndexToPostgres } from '../src/store/index.js';
import { fail, runCli } from './lib/cli.js';

const program = new Command()
  .name('migrate-to-postgres')
  .description('Copy an embedded collection into PostgreSQL (no re-embedding); replicas then build their local indexes from it')
  .option('--from <name>', 'embedded collection to copy (default: config defaultCollection)')
  .option('--index <name>', 'older name of --from')
  .option('--collection <name>', 'target collection in PostgreSQL (default: the --from name)')
  .option('--database-url <url>', 'postgres://… (default: RAG_DATABASE_URL / config database.url)')
  .option('--config <file>', 'config file (default: RAG_CONFIG or ./rag.config.json)')
  .showHelpAfterError()
  .parse();
const opts = program.opts<{ from?: string; index?: string; collection?: string; databaseUrl?: string; config?: string }>();

async function main(): Promise<void> {
  const config = loadConfig({ file: opts.config });
  const url = opts.databaseUrl ?? config.database.url;
  if (!url) fail('no database: pass --database-url or set RAG_DATABASE_URL (config database.url)');
  const name = opts.from ?? opts.index ?? config.defaultCollection;
  const sourceDir = path.join(config.indexesDir, name);
  const collection = opts.collection ?? name;
  const started = performance.now();
  const summary = await moveEmbeddedIndexToPostgres({
    url,
    connectTimeoutMs: config.database.connectTimeoutMs,
    indexesDir: config.indexesDir,
    source: name,
    collection,
    pageDocuments: 200,
    onPage: ({ documents, passages }) => {
      if (process.stderr.isTTY) process.stderr.write(`\r${documents} documents, ${passages} passages`);
    },
  });
  if (process.stderr.isTTY) process.stderr.write('\n');
  console.log(
    `${summary.created ? 'created' : 'updated'} collection "${collection}": ${summary.documents} documents, ${summary.passages} passages ` +
      `from ${path.relative(process.cwd(), sourceDir) || sourceDir} in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
}

runCli(main);
