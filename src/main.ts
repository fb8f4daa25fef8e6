import type { Server } from 'node:http';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { createApp, type ApiState } from './api/index.js';
import { loadConfig, type AppConfig } from './config/index.js';
import { RagService } from './service/index.js';

/**
 * Starts listening at once so /healthz answers while models load and the bundled corpus is ingested;
 * /readyz turns 200 when the service can answer.
 */
export async function startServer(config: AppConfig, log = pino({ level: config.logLevel })) {
  const state: ApiState = { status: 'starting' };
  const app = createApp(state, {
    limits: {
      maxQueryChars: config.server.maxQueryChars,
      maxSearchK: config.retrieval.maxK,
      maxAskK: config.reader.maxK,
      maxNewTokens: config.reader.maxNewTokensLimit,
      maxBeams: config.reader.maxBeams,
    },
    bodyLimit: config.server.bodyLimit,
    requestTimeoutMs: config.server.requestTimeoutMs,
    generationConcurrency: config.server.generationConcurrency,
    generationQueueLength: config.server.generationQueueLength,
    logError: (err) => log.error({ err }, 'request failed'),
  });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(config.port, config.host, () => resolve(s));
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  log.info({ port }, 'listening');

  const ready = RagService.open(config, log).then(
    (service) => {
      state.backend = service;
      state.status = 'ready';
      state.detail = { embedModel: config.embedModel, readerModel: config.readerModel, index: config.indexName };
      log.info('ready');
      return service;
    },
    (err: unknown) => {
      state.status = 'failed';
      state.detail = { error: (err as Error).message };
      log.fatal({ err }, 'start-up failed');
      throw err;
    },
  );

  const close = async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await app.generationQueue.onIdle();
    const service = await ready.catch(() => undefined);
    service?.close();
  };
  return { app, server, port, ready, close };
}

const isEntryPoint = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isEntryPoint) {
  let config: AppConfig;
  try {
    config = loadConfig();
  } catch (err) {
    console.error((err as Error).message);
    process.exit(2);
  }
  const log = pino({ level: config.logLevel });
  const running = await startServer(config, log);
  running.ready.catch((err: unknown) => {
    // A model or index that cannot be opened is fatal: print the one clear message and exit.
    console.error((err as Error).message);
    process.exit(1);
  });
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'shutting down');
      running.close().then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    });
  }
}
