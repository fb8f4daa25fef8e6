/**
 * What every route does with a request: check the service is ready, validate input into a 400 naming the field, give
 * the work one signal for every way the request can end, admit answers through the generation queue, and stream
 * Server-Sent Events.
 */
import type { Request, Response } from 'express';
import type { z } from 'zod';
import { QueueFullError, type AdmissionQueue } from '../service/index.js';
import type { ApiBackend, ApiState } from './context.js';
import { HttpError, validationError } from './errors.js';
import type { InFlightRequests } from './in-flight.js';

/** The backend, or a 503 with Retry-After while the service is starting, stopping or failed. */
export function ready(state: ApiState): ApiBackend {
  if (state.status !== 'ready' || !state.backend) {
    throw new HttpError(503, 'not_ready', `service is ${state.status}`, { headers: { 'Retry-After': '5' } });
  }
  return state.backend;
}

/**
 * `value` as `schema` has it, or a 400. Without `field` (a request body, a query string) the 400 names the first
 * offending path and lists every issue; with it (one path parameter, one form field) it names `field`, its message
 * the first issue's, worded by `explain`.
 */
export function parseWith<S extends z.ZodType>(
  schema: S,
  value: unknown,
  field?: string,
  explain: (issue: string | undefined) => string = (issue) => issue ?? 'invalid',
): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  if (field === undefined) throw validationError(result.error);
  throw new HttpError(400, 'invalid_request', `${field}: ${explain(result.error.issues[0]?.message)}`, { field });
}

/** A 415 unless the request body was sent as application/json. */
export function requireJson(req: Request): void {
  if (!req.is('application/json')) {
    throw new HttpError(415, 'unsupported_media_type', 'send the request body as application/json', { field: '(body)' });
  }
}

/** A JSON request body as `schema` has it: 415 for another media type, 400 naming what is wrong. */
export function parseBody<S extends z.ZodType>(schema: S, req: Request): z.infer<S> {
  requireJson(req);
  return parseWith(schema, req.body);
}

export interface RequestSignal {
  signal: AbortSignal;
  /** The request's work is over: the timer stops and a shutdown no longer cancels it. */
  done(): void;
  /**
   * `work`, or the request's 504 once its time is up even if the work does not heed the signal. Shares the
   * request's one timer.
   */
  withinDeadline<T>(work: Promise<T>): Promise<T>;
}

/**
 * One signal ends a request's work for every reason: the client went away, the request timed out, the server is
 * shutting down. The abort reason is the HttpError the client would get.
 */
export function requestSignal(res: Response, inFlight: InFlightRequests, timeoutMs: number, timeoutMessage: string): RequestSignal {
  const closed = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) closed.abort(new HttpError(499, 'client_closed', 'client closed the connection'));
  });
  return workSignal(closed.signal, inFlight, timeoutMs, timeoutMessage);
}

/**
 * The same one signal for work that is not an HTTP response of its own (an MCP tool call): `cancelled` is how the
 * caller says the client gave up; a reason that is not an HttpError is reported as the client's cancellation.
 */
export function workSignal(
  cancelled: AbortSignal | undefined,
  inFlight: InFlightRequests,
  timeoutMs: number,
  timeoutMessage: string,
): RequestSignal {
  const controller = new AbortController();
  const onExpiry = new Set<(err: HttpError) => void>();
  let expired: HttpError | undefined;
  const timer = setTimeout(() => {
    expired = new HttpError(504, 'timeout', timeoutMessage);
    controller.abort(expired);
    for (const reject of onExpiry) reject(expired);
  }, timeoutMs);
  const unregister = inFlight.register(controller);
  const onCancel = () => {
    const reason: unknown = cancelled?.reason;
    controller.abort(reason instanceof HttpError ? reason : new HttpError(499, 'cancelled', 'the client cancelled the request'));
  };
  if (cancelled?.aborted) onCancel();
  else cancelled?.addEventListener('abort', onCancel, { once: true });
  return {
    signal: controller.signal,
    done: () => {
      clearTimeout(timer);
      unregister();
      cancelled?.removeEventListener('abort', onCancel);
    },
    withinDeadline: <T>(work: Promise<T>) =>
      new Promise<T>((resolve, reject) => {
        if (expired) reject(expired);
        onExpiry.add(reject);
        work.then(resolve, reject).finally(() => onExpiry.delete(reject));
      }),
  };
}

/** `task` admitted by the generation queue: a full queue is a 503 with Retry-After, an abort its reason. */
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

/**
 * Server-Sent Events on a response, for /v1/ask (named events) and chat completions (data-only chunks). Writes after
 * the response ended or the client left are dropped.
 */
export class EventStream {
  constructor(private readonly res: Response) {}

  /** The 200 and the event-stream headers, sent at once so the client sees the stream open. */
  open(): void {
    this.res.status(200).set({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
    this.res.flushHeaders();
  }

  /** One event carrying `data` as JSON, named `event` if given. */
  send(data: unknown, event?: string): void {
    if (!this.writable) return;
    this.res.write(`${event === undefined ? '' : `event: ${event}\n`}data: ${JSON.stringify(data)}\n\n`);
  }

  /** One event whose data is `text` as it is (OpenAI's closing `[DONE]`). */
  sendText(text: string): void {
    if (this.writable) this.res.write(`data: ${text}\n\n`);
  }

  end(): void {
    this.res.end();
  }

  private get writable(): boolean {
    return !this.res.writableEnded && !this.res.destroyed;
  }
}
