import type { Server } from 'node:http';
import { pathToFileURL } from 'node:url';
import { pino, type Logger } from 'pino';
import {
  apiOptionsFrom,
  AuthConfigError,
  authPolicyFor,
  createApp,
  HttpError,
  installLastResortGuard,
  type ApiState,
} from './api/index.js';
import { loadConfig, type AppConfig } from './config/index.js';
import { openSystem, servingOptions, type RagService } from './service/index.js';

/** After the shutdown deadline, cancelled requests get this long to send their error before connections are cut. */
const CANCEL_GRACE_MS = 2000;

/**
 * Opens the models and the index (ingesting the bundled corpus into a new index), then listens: a port that accepts
 * connections is a service that can answer. Throws before listening when auth is on without any key, or when a
 * model or the index cannot be opened (the message names every missing model).
 */
export async function startServer(config: AppConfig, log: Logger = pino({ level: config.logLevel })) {
  const auth = authPolicyFor(config.auth);
  if (auth.mode === 'disabled') {
    log.warn(
      { host: config.host, port: config.port },
      'API authentication is DISABLED: anyone who can reach this port can search, ask and change documents. ' +
        'Configure auth.keys (npm run keys) before sharing the service.',
    );
  } else {
    log.info({ keys: auth.authenticator.size }, 'API key authentication is on');
  }

  const writable = !config.server.readOnly;
  let service: RagService;
  try {
    service = await openSystem(config, servingOptions(config, { log, writable }));
  } catch (err) {
    log.fatal({ err }, 'start-up failed');
    throw err;
  }
  const state: ApiState = { status: 'starting' };
  const app = createApp(state, apiOptionsFrom(config, { defaultCollection: service.defaultCollection, auth, logger: log }));

  let server: Server;
  try {
    server = await new Promise((resolve, reject) => {
      const s = app.listen(config.port, config.host, (err?: Error) => (err ? reject(err) : resolve(s)));
    });
  } catch (err) {
    await service.close();
    throw err;
  }
  // A client trickling its headers or body must not hold a connection for longer than an answer may take.
  server.requestTimeout = config.server.requestTimeoutMs;
  server.headersTimeout = Math.min(60_000, config.server.requestTimeoutMs);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  state.backend = service;
  const offline = service.offline;
  state.detail = offline
    ? {
        embedModel: offline.embedModel,
        readerModel: offline.readerModel,
        collection: offline.collection,
        writable,
        retrieval: 'bm25',
        offline: offline.message,
      }
    : { embedModel: config.embedModel, readerModel: config.readerModel, collection: config.defaultCollection, writable };
  state.status = 'ready';
  log.info({ port, host: config.host }, 'listening');
  log.info('ready');
  const ready = Promise.resolve(service);

  /**
   * Stop accepting, let in-flight requests finish until `server.shutdownTimeoutMs`, then cancel the rest (answers stop
   * decoding; writes not yet committed are dropped and the client told so), apply or refuse every accepted write,
   * and close the index, which saves the HNSW graph.
   */
  const shutdown = async () => {
    const started = performance.now();
    const deadline = config.server.shutdownTimeoutMs;
    state.status = 'stopping';
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    if (!(await app.inFlight.idle(deadline))) {
      const reason = new HttpError(503, 'shutting_down', 'the server is shutting down; retry shortly', { headers: { 'Retry-After': '5' } });
      const cancelled = app.inFlight.cancelAll(reason);
      log.warn(
        { cancelled, running: app.inFlight.count, deadlineMs: deadline },
        'shutdown deadline reached; cancelling in-flight requests',
      );
      await app.inFlight.idle(CANCEL_GRACE_MS);
    }
    server.closeAllConnections();
    await closed;
    await app.close();
    await service.drainWrites();
    await service.close();
    log.info({ ms: Math.round(performance.now() - started) }, 'shut down');
  };
  let closing: Promise<void> | undefined;
  const close = () => (closing ??= shutdown());
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
  let running: Awaited<ReturnType<typeof startServer>> | undefined;
  let stopping = false;
  /** One way down for signals and fatal errors: a graceful shutdown, then `exitCode` (1 when it fails or hangs). */
  const stop = (context: Record<string, unknown>, exitCode: number) => {
    if (stopping) {
      log.warn(context, 'already shutting down');
      return;
    }
    stopping = true;
    if (!running) {
      // Nothing listens yet; every store write so far is crash-safe, and the next start recovers the rest.
      log.warn(context, 'stopped during start-up; the index is left for the next start to recover');
      process.exit(exitCode);
    }
    log.info(context, 'shutting down');
    // Whatever hangs, the process ends: the index is crash-safe, and a supervisor waits for us.
    setTimeout(
      () => {
        log.error('shutdown did not finish in time; exiting');
        process.exit(1);
      },
      config.server.shutdownTimeoutMs + CANCEL_GRACE_MS + 10_000,
    ).unref();
    running.close().then(
      () => process.exit(exitCode),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  // `on`, not `once`: a repeated signal (a terminal's Ctrl-C plus a wrapper relaying it) must not kill the shutdown.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => stop({ signal }, 0));
  installLastResortGuard(log, () => stop({ reason: 'fatal error' }, 1));
  try {
    running = await startServer(config, log);
  } catch (err) {
    // Auth without keys, a missing model, an index that cannot be opened: print the one clear message and exit.
    console.error((err as Error).message);
    process.exit(err instanceof AuthConfigError ? 2 : 1);
  }
}
