import { fileURLToPath } from 'node:url';
import express, { type RequestHandler } from 'express';
import { ParserThread } from '../ingest/index.js';
import { AdmissionQueue } from '../service/index.js';
import { requireScope } from './auth.js';
import type { ApiOptions, ApiState, RouteContext } from './context.js';
import { errorHandler, notFound } from './errors.js';
import { InFlightRequests } from './in-flight.js';
import { jsonBody } from './json-body.js';
import { jsonOffThread } from './json-off-thread.js';
import { methodNotAllowed } from './method-not-allowed.js';
import { requestScope } from './last-resort.js';
import { requestLogger } from './logging.js';
import { McpSessions } from './mcp/http.js';
import { ApiMetrics } from './metrics.js';
import { askRouter } from './routes/ask.js';
import { chatRouter } from './routes/chat.js';
import { collectionsRouter } from './routes/collections.js';
import { documentsRouter } from './routes/documents.js';
import { searchRouter } from './routes/search.js';
import { systemRouter } from './routes/system.js';
import { corsPolicy, rateLimiter, securityHeaders } from './security.js';

const PUBLIC_DIR = fileURLToPath(new URL('../../public', import.meta.url));

/** The middleware every request passes, the routers of src/api/routes, and the error handling after them. */
export function createApp(state: ApiState, options: ApiOptions) {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.set('trust proxy', options.trustProxy);
  const queue = new AdmissionQueue(options.generationConcurrency, options.generationQueueLength);
  const inFlight = new InFlightRequests();
  const metrics = new ApiMetrics({
    answerQueueDepth: () => queue.depth,
    writeQueueDepth: () => state.backend?.pendingWrites ?? 0,
    indexPassages: async () => (state.status === 'ready' ? (await state.backend?.stats({}))?.passages : undefined),
  });
  // Document batches reach 10 MB: parsing one in line would hold the event loop for about 100 ms.
  const bodyParser = new ParserThread();
  const context: RouteContext = {
    state,
    options,
    queue,
    inFlight,
    metrics,
    read: requireScope(options.auth, 'read'),
    write: requireScope(options.auth, 'write'),
    limit: rateLimiter(options.rateLimit) ?? passThrough,
    json: jsonBody(options.bodyLimit),
    documentsJson: [...jsonOffThread(options.documentsBodyLimit, bodyParser), jsonBody(options.documentsBodyLimit)],
  };

  app.use(requestScope());
  app.use(requestLogger(options.logger));
  app.use(metrics.middleware());
  app.use(inFlight.middleware());
  app.use(securityHeaders());
  const cors = corsPolicy(options.corsOrigins);
  if (cors) app.use(cors);
  // The playground is static files that talk to the public API like any other client.
  app.use(labelled('(static)', express.static(PUBLIC_DIR, { index: 'index.html', fallthrough: true })));

  app.use(systemRouter(context));
  app.use(searchRouter(context));
  app.use(askRouter(context));
  app.use(documentsRouter(context));
  app.use(collectionsRouter(context));
  app.use(chatRouter(context));
  const mcp = new McpSessions({ state, options, queue, inFlight, metrics, log: options.logger }, { auth: options.auth, ...options.mcp });
  app.use(mcp.router(context.read, context.limit, context.json));

  app.use(methodNotAllowed(app));
  app.use(notFound);
  app.use(errorHandler());
  return Object.assign(app, {
    generationQueue: queue,
    inFlight,
    metrics,
    mcp,
    close: () => Promise.all([bodyParser.close(), mcp.close()]).then(() => undefined),
  });
}

const passThrough: RequestHandler = (_req, _res, next) => next();

/** Tags responses a middleware ends itself (no route), for the metrics' route label. */
function labelled(label: string, handler: RequestHandler): RequestHandler {
  return (req, res, next) => {
    res.locals.routeLabel = label;
    handler(req, res, (err?: unknown) => {
      delete res.locals.routeLabel;
      next(err);
    });
  };
}
