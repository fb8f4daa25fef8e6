import { fileURLToPath } from 'node:url';
import express, { type Request, type RequestHandler, type Response } from 'express';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type {
  AskHooks,
  AskOutcome,
  AskParams,
  CollectionScope,
  CollectionSummary,
  DeleteResult,
  DocumentInput,
  DocumentView,
  DocumentWriteStatus,
  NewCollection,
  SearchParams,
  ServiceStats,
  UploadedDocumentFile,
  DocumentList,
} from '../service/index.js';
import { ParserThread } from '../ingest/index.js';
import { AdmissionQueue, QueueFullError } from '../service/index.js';
import { FilterSyntaxError, parseMetadataFilter, type ListDocumentsOptions, type Metadata, type MetadataFilter } from '../store/index.js';
import { assertCollectionAllowed, mayUseCollection, requireScope, type AuthPolicy } from './auth.js';
import { chatRouter } from './chat.js';
import { errorHandler, HttpError, notFound, toHttpError, validationError } from './errors.js';
import { InFlightRequests } from './in-flight.js';
import { jsonBody } from './json-body.js';
import { jsonOffThread } from './json-off-thread.js';
import { methodNotAllowed } from './method-not-allowed.js';
import { requestScope } from './last-resort.js';
import { requestLogger } from './logging.js';
import { ApiMetrics } from './metrics.js';
import { buildOpenApiDocument } from './openapi.js';
import {
  askRequestSchema,
  collectionNameSchema,
  createCollectionRequestSchema,
  documentIdSchema,
  listDocumentsQuerySchema,
  metadataSchema,
  searchRequestSchema,
  upsertDocumentsRequestSchema,
  type ApiLimits,
  type DocumentLimits,
  type SearchResponse,
} from './schemas.js';
import { corsPolicy, rateLimiter, securityHeaders } from './security.js';
import { readMultipart, type UploadLimits } from './uploads.js';

/**
 * What the HTTP layer needs from the service; the service may still be starting (not ready) when requests arrive.
 * Every data call names its collection (the default one for the unscoped routes).
 */
export interface ApiBackend {
  search(params: SearchParams, options?: { signal?: AbortSignal }): Promise<SearchResponse>;
  ask(params: AskParams, hooks: AskHooks): Promise<AskOutcome>;
  upsertDocuments(docs: DocumentInput[], options: CollectionScope & { signal?: AbortSignal }): Promise<DocumentWriteStatus[]>;
  upsertFiles(files: UploadedDocumentFile[], metadata: Metadata, options: CollectionScope & { signal?: AbortSignal }): Promise<DocumentWriteStatus[]>;
  listDocuments(options: CollectionScope & ListDocumentsOptions): Promise<DocumentList>;
  deleteDocument(id: string, options: CollectionScope & { signal?: AbortSignal }): Promise<DeleteResult>;
  getDocument(id: string, options: CollectionScope): Promise<DocumentView | undefined>;
  upsertFiles(files: UploadedDocumentFile[], metadata: Metadata, options: CollectionScope & { signal?: AbortSignal }): Promise<DocumentWriteStatus[]>;
  listDocuments(options: CollectionScope & ListDocumentsOptions): Promise<DocumentList>;
  stats(options: CollectionScope): Promise<ServiceStats>;
  listCollections(): Promise<CollectionSummary[]>;
  createCollection(name: string, spec: NewCollection): Promise<CollectionSummary>;
  deleteCollection(name: string): Promise<boolean>;
  readonly openCollections: { open: number; peak: number; max: number };
  readonly pendingWrites: number;
}

export interface ApiOptions {
  /** The collection the unscoped routes (/v1/search, /v1/documents, …) use. */
  defaultCollection: string;
  limits: ApiLimits;
  documentLimits: DocumentLimits;
  bodyLimit: string;
  documentsBodyLimit: string;
  uploadLimits: UploadLimits;
  requestTimeoutMs: number;
  generationConcurrency: number;
  generationQueueLength: number;
  auth: AuthPolicy;
  /** Require the read scope for /metrics. */
  protectMetrics: boolean;
  corsOrigins: readonly string[];
  rateLimit: { windowMs: number; max: number };
  trustProxy: boolean | number | string;
  logger: Logger;
  /** User turns folded into a chat's retrieval query (config chat.retrievalTurns). */
  chatRetrievalTurns: number;
}

export interface ApiState {
  backend?: ApiBackend;
  /** Why the service is not ready, for /readyz. */
  status: 'starting' | 'ready' | 'failed' | 'stopping';
  detail?: Record<string, unknown>;
}

const PUBLIC_DIR = fileURLToPath(new URL('../../public', import.meta.url));

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
  const searchSchema = searchRequestSchema(options.limits);
  const askSchema = askRequestSchema(options.limits);
  const upsertSchema = upsertDocumentsRequestSchema(options.documentLimits);
  const idSchema = documentIdSchema(options.documentLimits);
  const uploadMetadataSchema = metadataSchema(options.documentLimits);
  const listSchema = listDocumentsQuerySchema(options.documentLimits);
  const openApi = buildOpenApiDocument(options.limits, options.documentLimits);

  const read = requireScope(options.auth, 'read');
  const write = requireScope(options.auth, 'write');
  const limit = rateLimiter(options.rateLimit) ?? passThrough;
  const json = jsonBody(options.bodyLimit);
  // Document batches reach 10 MB: parsing one in line would hold the event loop for about 100 ms.
  const bodyParser = new ParserThread();
  const documentsJson = [...jsonOffThread(options.documentsBodyLimit, bodyParser), jsonBody(options.documentsBodyLimit)];

  app.use(requestScope());
  app.use(requestLogger(options.logger));
  app.use(metrics.middleware());
  app.use(inFlight.middleware());
  app.use(securityHeaders());
  const cors = corsPolicy(options.corsOrigins);
  if (cors) app.use(cors);
  // The playground is static files that talk to the public API like any other client.
  app.use(labelled('(static)', express.static(PUBLIC_DIR, { index: 'index.html', fallthrough: true })));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', async (_req, res) => {
    // PostgreSQL deployment: the default collection's replication progress, so a load balancer or operator sees lag.
    const replication = state.status === 'ready' ? await state.backend?.stats({}).then((s) => s.replication, () => undefined) : undefined;
    res.status(state.status === 'ready' ? 200 : 503).json({ status: state.status, ...state.detail, ...(replication ? { replication } : {}) });
  });

  app.get('/openapi.json', (_req, res) => {
    res.json(openApi);
  });

  app.get('/metrics', options.protectMetrics ? read : passThrough, async (_req, res) => {
    const { contentType, body } = await metrics.render();
    res.type(contentType).send(body);
  });

  /**
   * The data routes, registered once per scope: unscoped under /v1 (the default collection) and under
   * /v1/collections/{name}. A key limited to some collections gets 403 for any other, the default one included.
   */
  const scopes: Array<{ prefix: string; collection(req: Request): string }> = [
    { prefix: '/v1', collection: () => options.defaultCollection },
    { prefix: '/v1/collections/:collection', collection: (req) => parseCollectionName(req.params.collection) },
  ];
  const scoped = (req: Request, res: Response): string => {
    const collection = scopeOf(req).collection(req);
    assertCollectionAllowed(res, collection);
    return collection;
  };
  const scopeOf = (req: Request) => (req.params.collection === undefined ? scopes[0]! : scopes[1]!);

  for (const { prefix } of scopes) {
    app.post(`${prefix}/search`, read, limit, json, async (req, res) => {
      const collection = scoped(req, res);
      const params = parseBody(searchSchema, req);
      const backend = ready(state);
      // Only reranking looks at the signal: it stops scoring when the client leaves or the request times out.
      const { signal, done } = requestSignal(res, inFlight, options.requestTimeoutMs, `search not finished within ${options.requestTimeoutMs} ms`);
      const result = await withTimeout(backend.search({ ...params, collection }, { signal }), options.requestTimeoutMs, 'search').finally(done);
      // BM25 embeds nothing; every other mode embeds the query.
      if (result.timings.embedMs > 0) metrics.observeStage('embed', result.timings.embedMs);
      metrics.observeStage('search', result.timings.searchMs);
      if (result.timings.rerankMs !== undefined) metrics.observeStage('rerank', result.timings.rerankMs);
      res.json(result);
    });

    app.post(`${prefix}/ask`, read, limit, json, async (req, res) => {
      const collection = scoped(req, res);
      const { stream, ...params } = parseBody(askSchema, req);
      const backend = ready(state);
      const wantsStream = stream ?? (req.get('accept') ?? '').includes('text/event-stream');
      const { signal, done } = requestSignal(res, inFlight, options.requestTimeoutMs, `answer not finished within ${options.requestTimeoutMs} ms`);
      const ask = async (hooks: AskHooks) => {
        const outcome = await backend.ask({ ...params, collection }, hooks);
        observeAnswer(metrics, outcome);
        return outcome;
      };

      try {
        if (!wantsStream) {
          const outcome = await runQueued(queue, () => ask({ signal }), signal);
          res.json(publicAnswer(outcome));
          return;
        }
        // Admission is decided before the event stream starts, so a full queue is still a plain 503.
        const pending = runQueued(queue, () => ask({ signal, onToken: (t) => sendEvent(res, 'token', t) }), signal);
        res.status(200).set({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
        res.flushHeaders();
        try {
          sendEvent(res, 'answer', publicAnswer(await pending));
        } catch (err) {
          const httpError = toHttpError(err);
          if (httpError.code === 'internal_error') req.log.error({ err }, 'answer failed');
          sendEvent(res, 'error', httpError.body());
        }
        res.end();
      } finally {
        done();
      }
    });

    app.post(`${prefix}/documents`, write, limit, ...documentsJson, async (req, res) => {
      const collection = scoped(req, res);
      const { documents } = parseBody(upsertSchema, req);
      const backend = ready(state);
      const { signal, done } = requestSignal(res, inFlight, options.requestTimeoutMs, `write not started or embedded within ${options.requestTimeoutMs} ms`);
      const started = performance.now();
      try {
        const results = await backend.upsertDocuments(documents, { signal, collection });
        metrics.observeStage('write', performance.now() - started);
        req.log.info({ collection, documents: documents.length, ...countStatuses(results) }, 'documents written');
        res.json({ documents: results });
      } finally {
        done();
      }
    });

    app.post(`${prefix}/documents/files`, write, limit, async (req, res) => {
      const collection = scoped(req, res);
      const backend = ready(state);
      const { signal, done } = requestSignal(res, inFlight, options.requestTimeoutMs, `upload not read or written within ${options.requestTimeoutMs} ms`);
      const started = performance.now();
      try {
        const upload = await readMultipart(req, options.uploadLimits);
        const metadata = parseUploadMetadata(uploadMetadataSchema, upload.fields.get('metadata'));
        const seen = new Map<string, number>();
        for (const file of upload.files) {
          const id = idSchema.safeParse(file.name);
          if (!id.success) throw new HttpError(400, 'invalid_request', `files.${file.index}: the file name is the document id and it ${id.error.issues[0]?.message ?? 'is invalid'}`, { field: `files.${file.index}` });
          if (seen.has(file.name)) throw new HttpError(400, 'invalid_request', `files.${file.index}: "${file.name}" is also files.${seen.get(file.name)}; file names are document ids`, { field: `files.${file.index}` });
          seen.set(file.name, file.index);
        }
        const results = await backend.upsertFiles(upload.files, metadata, { signal, collection });
        metrics.observeStage('write', performance.now() - started);
        req.log.info({ collection, files: upload.files.length, bytes: upload.files.reduce((n, f) => n + f.bytes.length, 0), ...countStatuses(results) }, 'files written');
        res.json({ documents: results });
      } finally {
        done();
      }
    });

    app.get(`${prefix}/documents`, read, limit, async (req, res) => {
      const collection = scoped(req, res);
      const query = listSchema.safeParse(req.query);
      if (!query.success) throw validationError(query.error);
      const { filter, prefix: idPrefix, after, limit: pageSize } = query.data;
      const metadata = filter === undefined ? undefined : parseListFilter(filter);
      res.json(await ready(state).listDocuments({ collection, metadata, idPrefix, after, limit: pageSize }));
    });

    app.get(`${prefix}/documents/:id`, read, limit, async (req, res) => {
      const collection = scoped(req, res);
      const id = parseId(idSchema, req);
      const doc = await ready(state).getDocument(id, { collection });
      if (!doc) throw new HttpError(404, 'document_not_found', 'no document with this id', { field: 'id' });
      res.json(doc);
    });

    app.delete(`${prefix}/documents/:id`, write, limit, async (req, res) => {
      const collection = scoped(req, res);
      const id = parseId(idSchema, req);
      const backend = ready(state);
      const { signal, done } = requestSignal(res, inFlight, options.requestTimeoutMs, `delete not started within ${options.requestTimeoutMs} ms`);
      try {
        const result = await backend.deleteDocument(id, { signal, collection });
        if (!result.deleted) throw new HttpError(404, 'document_not_found', 'no document with this id', { field: 'id' });
        req.log.info({ collection, passagesRemoved: result.passagesRemoved }, 'document deleted');
        res.json({ id, deleted: true, passagesRemoved: result.passagesRemoved });
      } finally {
        done();
      }
    });

    app.get(`${prefix}/stats`, read, limit, async (req, res) => {
      const collection = scoped(req, res);
      res.json(await ready(state).stats({ collection }));
    });
  }

  app.use(
    chatRouter({ state, limits: options.limits, queue, inFlight, metrics, read, limit, bodyLimit: options.bodyLimit, requestTimeoutMs: options.requestTimeoutMs, retrievalTurns: options.chatRetrievalTurns }),
  );

  app.get('/v1/collections', read, limit, async (_req, res) => {
    const backend = ready(state);
    const all = await backend.listCollections();
    const { open, peak, max } = backend.openCollections;
    res.json({
      default: options.defaultCollection,
      collections: all.filter((c) => mayUseCollection(res, c.name)),
      open: { count: open, peak, max },
    });
  });

  app.post('/v1/collections', write, limit, json, async (req, res) => {
    const { name, embedModel, chunk } = parseBody(createCollectionRequestSchema, req);
    assertCollectionAllowed(res, name);
    const created = await ready(state).createCollection(name, { embedModel, chunk });
    req.log.info({ collection: name, embedModel: created.embedModel }, 'collection created');
    res.status(201).json(created);
  });

  app.delete('/v1/collections/:collection', write, limit, async (req, res) => {
    const name = parseCollectionName(req.params.collection);
    assertCollectionAllowed(res, name);
    if (!(await ready(state).deleteCollection(name))) {
      throw new HttpError(404, 'collection_not_found', `no collection named "${name}"`, { field: 'name' });
    }
    req.log.info({ collection: name }, 'collection deleted');
    res.json({ name, deleted: true });
  });

  app.use(methodNotAllowed(app));
  app.use(notFound);
  app.use(errorHandler());
  return Object.assign(app, { generationQueue: queue, inFlight, metrics, close: () => bodyParser.close() });
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

export function parseBody<S extends z.ZodType>(schema: S, req: Request): z.infer<S> {
  if (!req.is('application/json')) {
    throw new HttpError(415, 'unsupported_media_type', 'send the request body as application/json', { field: '(body)' });
  }
  const result = schema.safeParse(req.body);
  if (!result.success) throw validationError(result.error);
  return result.data;
}

function parseCollectionName(value: unknown): string {
  const result = collectionNameSchema.safeParse(value);
  if (!result.success) {
    throw new HttpError(400, 'invalid_request', `collection: ${result.error.issues[0]?.message ?? 'invalid'}`, { field: 'collection' });
  }
  return result.data;
}

/** The `filter` query parameter: JSON in the filter language; a malformed one is a 400 naming its path. */
function parseListFilter(raw: string): MetadataFilter {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new HttpError(400, 'invalid_request', 'filter: not valid JSON', { field: 'filter' });
  }
  try {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new FilterSyntaxError([], 'must be a JSON object');
    if (Object.keys(value).length > 0) parseMetadataFilter(value);
  } catch (err) {
    if (!(err instanceof FilterSyntaxError)) throw err;
    const field = ['filter', ...err.path].join('.');
    throw new HttpError(400, 'invalid_request', `${field}: ${err.message}`, { field });
  }
  return value as MetadataFilter;
}

/** The optional `metadata` form field of an upload: a JSON object within the document metadata limits. */
function parseUploadMetadata(schema: z.ZodType<Record<string, unknown>>, raw: string | undefined): Metadata {
  if (raw === undefined || raw.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new HttpError(400, 'invalid_request', 'metadata: not valid JSON', { field: 'metadata' });
  }
  const result = schema.safeParse(value);
  if (!result.success) throw new HttpError(400, 'invalid_request', `metadata: ${result.error.issues[0]?.message ?? 'invalid'}`, { field: 'metadata' });
  return result.data;
}

function parseId(schema: z.ZodType<string>, req: Request): string {
  const result = schema.safeParse(req.params.id);
  if (!result.success) {
    const message = result.error.issues[0]?.message ?? 'invalid';
    throw new HttpError(400, 'invalid_request', `id: ${message}`, { field: 'id' });
  }
  return result.data;
}

export function ready(state: ApiState): ApiBackend {
  if (state.status !== 'ready' || !state.backend) {
    throw new HttpError(503, 'not_ready', `service is ${state.status}`, { headers: { 'Retry-After': '5' } });
  }
  return state.backend;
}

/**
 * One signal ends a request's work for every reason: the client went away, the request timed out, the server is
 * shutting down. The abort reason is the HttpError the client would get.
 */
export function requestSignal(res: Response, inFlight: InFlightRequests, timeoutMs: number, timeoutMessage: string) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new HttpError(504, 'timeout', timeoutMessage)), timeoutMs);
  const unregister = inFlight.register(controller);
  res.on('close', () => {
    if (!res.writableFinished) controller.abort(new HttpError(499, 'client_closed', 'client closed the connection'));
  });
  return {
    signal: controller.signal,
    done: () => {
      clearTimeout(timer);
      unregister();
    },
  };
}

async function withTimeout<T>(work: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HttpError(504, 'timeout', `${what} not finished within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export async function runQueued<T>(queue: AdmissionQueue, task: () => Promise<T>, signal: AbortSignal): Promise<T> {
  try {
    return await queue.run(task, { signal });
  } catch (err) {
    if (err instanceof QueueFullError) {
      throw new HttpError(503, 'queue_full', 'too many answers are being generated; retry later', {
        headers: { 'Retry-After': String(err.retryAfterSeconds) },
      });
    }
    // An abort carries the reason we gave it (timeout, client gone, shutdown).
    if (signal.aborted && signal.reason instanceof HttpError) throw signal.reason;
    throw err;
  }
}

export function observeAnswer(metrics: ApiMetrics, outcome: AskOutcome): void {
  const t = outcome.timings;
  metrics.observeStage('embed', t.embedMs);
  metrics.observeStage('search', t.searchMs);
  if (t.rerankMs !== undefined) metrics.observeStage('rerank', t.rerankMs);
  metrics.observeStage('encode', t.encodeMs);
  metrics.observeStage('decode', t.decodeMs);
  metrics.countTokens(outcome.tokens);
}

function countStatuses(results: DocumentWriteStatus[]): Record<string, number> {
  const counts: Record<string, number> = { added: 0, updated: 0, unchanged: 0, error: 0 };
  for (const r of results) counts[r.status] = (counts[r.status] ?? 0) + 1;
  return counts;
}

function sendEvent(res: Response, event: string, data: unknown): void {
  if (res.writableEnded || res.destroyed) return;
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

/** The response shape of /v1/ask: internal timings and counters stay inside. */
function publicAnswer(outcome: AskOutcome) {
  const { onnxMs: _onnxMs, embedMs: _embedMs, searchMs: _searchMs, ...timings } = outcome.timings;
  const { tokens: _tokens, promptTokens: _promptTokens, finishReason: _finishReason, ...rest } = outcome;
  return { ...rest, timings };
}
