/**
 * The MCP server over stdio, for hosts that spawn a process (`command`/`args` in their config). Standard output
 * carries the protocol only: logs and anything a library prints go to standard error.
 */
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { Command } from 'commander';
import { pino } from 'pino';
import { apiOptionsFrom, createMcpServer, InFlightRequests, type ApiState } from '../src/api/index.js';
import { loadConfig } from '../src/config/index.js';
import { AdmissionQueue, openSystem, servingOptions } from '../src/service/index.js';

// Before anything loads: a stray console.log would corrupt the protocol stream.
console.log = console.error;
console.info = console.error;

const program = new Command()
  .name('mcp')
  .description(
    'Serve the collections to an MCP host over stdio: tools search, ask, list_collections, get_document and\n' +
      'add_documents (not with --read-only), and documents as resources rag://{collection}/documents/{id}.\n' +
      'The process has the rights of whoever starts it: API keys guard the HTTP endpoint /mcp, not this one.',
  )
  .option('--config <file>', 'config file (default: RAG_CONFIG or ./rag.config.json)')
  .option('--read-only', 'no add_documents, and collections opened read-only (`npm run ingest` may write beside it)')
  .showHelpAfterError();
program.parse();
const opts = program.opts<{ config?: string; readOnly?: boolean }>();

let config;
try {
  config = loadConfig(opts.config === undefined ? {} : { file: opts.config });
} catch (err) {
  console.error((err as Error).message);
  process.exit(2);
}
const log = pino({ level: config.logLevel }, pino.destination(2));
const writable = opts.readOnly !== true && !config.server.readOnly;

const service = await openSystem(config, servingOptions(config, { log, writable })).catch((err: unknown) => {
  console.error((err as Error).message);
  process.exit(1);
});

const options = apiOptionsFrom(config, { defaultCollection: service.defaultCollection, auth: { mode: 'disabled' }, logger: log });
const state: ApiState = { status: 'ready', backend: service };
const inFlight = new InFlightRequests();
const server = createMcpServer(
  { state, options, queue: new AdmissionQueue(options.generationConcurrency, options.generationQueueLength), inFlight, log },
  { mayWrite: writable },
);

let stopping: Promise<void> | undefined;
/** The host closed our stdin or asked us to stop: cancel what runs, apply accepted writes, save the index. */
const stop = () =>
  (stopping ??= (async () => {
    state.status = 'stopping';
    inFlight.cancelAll(new Error('the MCP server is shutting down'));
    await server.close().catch(() => undefined);
    await service.drainWrites();
    await service.close();
    process.exit(0);
  })());
process.stdin.on('end', stop);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

await server.connect(new StdioServerTransport());
log.info({ collection: service.defaultCollection, writable }, 'MCP server ready on stdio');
