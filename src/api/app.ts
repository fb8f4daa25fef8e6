import { fileURLToPath } from 'node:url';
import express, { type Request, type Response } from 'express';
import type { z } from 'zod';
import type { AskOutcome, AskParams, AskHooks, SearchParams } from '../service/index.js';
import { errorHandler, HttpError, notFound, validationError } from './errors.js';
import { GenerationQueue, QueueFullError } from './generation-queue.js';
import { buildOpenApiDocument } from './openapi.js';
import { askRequestSchema, searchRequestSchema, type ApiLimits, type SearchResponse } from './schemas.js';

/** What the HTTP layer needs from the service; the service may still be starting (not ready) when requests arrive. */
export interface ApiBackend {
  search(params: SearchParams): Promise<SearchResponse>;
  ask(params: AskParams, hooks: AskHooks): Promise<AskOutcome>;
}

export interface ApiOptions {
  limits: ApiLimits;
  bodyLimit: string;
  requestTimeoutMs: number;
  generationConcurrency: number;
  generationQueueLength: number;
  logError: (err: unknown) => void;
}

export interface ApiState {
  backend?: ApiBackend;
  /** Why the service is not ready yet, for /readyz. */
  status: 'starting' | 'ready' | 'failed';
  detail?: Record<string, unknown>;
}

const PUBLIC_DIR = fileURLToPath(new URL('../../public', import.meta.url));

export function createApp(state: ApiState, options: ApiOptions) {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  const queue = new GenerationQueue(options.generationConcurrency, options.generationQueueLength);
  const searchSchema = searchRequestSchema(options.limits);
  const askSchema = askRequestSchema(options.limits);
  const openApi = buildOpenApiDocument(options.limits);

  app.use(express.json({ limit: options.bodyLimit, strict: true }));
  // The playground is static files that talk to the public API like any other client.
  app.use(express.static(PUBLIC_DIR, { index: 'index.html', fallthrough: true }));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', (_req, res) => {
    res.status(state.status === 'ready' ? 200 : 503).json({ status: state.status, ...state.detail });
  });

  app.get('/openapi.json', (_req, res) => {
    res.json(openApi);
  });

  app.post('/v1/search', async (req, res) => {
    const params = parseBody(searchSchema, req);
    res.json(await ready(state).search(params));
  });

  app.post('/v1/ask', async (req, res) => {
    const { stream, ...params } = parseBody(askSchema, req);
    const backend = ready(state);
    const wantsStream = stream ?? (req.get('accept') ?? '').includes('text/event-stream');

    // One controller ends generation for every reason: client gone, request timeout.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new HttpError(504, 'timeout', `answer not finished within ${options.requestTimeoutMs} ms`)), options.requestTimeoutMs);
    res.on('close', () => {
      if (!res.writableFinished) controller.abort(new HttpError(499, 'client_closed', 'client closed the connection'));
    });

    try {
      if (!wantsStream) {
        const outcome = await runQueued(queue, () => backend.ask(params, { signal: controller.signal }), controller.signal);
        res.json(publicAnswer(outcome));
        return;
      }
      // Admission is decided before the event stream starts, so a full queue is still a plain 503.
      const pending = runQueued(
        queue,
        () =>
          backend.ask(params, {
            signal: controller.signal,
            onToken: (t) => sendEvent(res, 'token', t),
          }),
        controller.signal,
      );
      res.status(200).set({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
      res.flushHeaders();
      try {
        sendEvent(res, 'answer', publicAnswer(await pending));
      } catch (err) {
        const httpError = toHttpError(err, options.logError);
        sendEvent(res, 'error', httpError.body());
      }
      res.end();
    } finally {
      clearTimeout(timer);
    }
  });

  app.use(notFound);
  app.use(errorHandler(options.logError));
  return Object.assign(app, { generationQueue: queue });
}

function parseBody<S extends z.ZodType>(schema: S, req: Request): z.infer<S> {
  if (!req.is('application/json')) {
    throw new HttpError(415, 'unsupported_media_type', 'send the request body as application/json', { field: '(body)' });
  }
  const result = schema.safeParse(req.body);
  if (!result.success) throw validationError(result.error);
  return result.data;
}

function ready(state: ApiState): ApiBackend {
  if (state.status !== 'ready' || !state.backend) {
    throw new HttpError(503, 'not_ready', `service is ${state.status}`, { headers: { 'Retry-After': '5' } });
  }
  return state.backend;
}

async function runQueued<T>(queue: GenerationQueue, task: () => Promise<T>, signal: AbortSignal): Promise<T> {
  try {
    return await queue.run(task, signal);
  } catch (err) {
    if (err instanceof QueueFullError) {
      throw new HttpError(503, 'queue_full', 'too many answers are being generated; retry later', {
        headers: { 'Retry-After': String(err.retryAfterSeconds) },
      });
    }
    // An abort carries the reason we gave it (timeout or client gone).
    if (signal.aborted && signal.reason instanceof HttpError) throw signal.reason;
    throw err;
  }
}

function toHttpError(err: unknown, log: (err: unknown) => void): HttpError {
  if (err instanceof HttpError) return err;
  log(err);
  return new HttpError(500, 'internal_error', 'internal error');
}

function sendEvent(res: Response, event: string, data: unknown): void {
  if (res.writableEnded || res.destroyed) return;
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

function publicAnswer(outcome: AskOutcome) {
  const { onnxMs: _onnxMs, ...timings } = outcome.timings;
  return { ...outcome, timings };
}
