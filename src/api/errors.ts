import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { ZodError } from 'zod';
import { FileLimitError } from '../ingest/index.js';
import { ModelNotFoundError } from '../models/index.js';
import {
  CollectionExistsError,
  CollectionNotFoundError,
  CollectionProtectedError,
  InvalidRerankError,
  ReadOnlyIndexError,
  RerankerUnavailableError,
  WriteCancelledError,
  WriteQueueFullError,
} from '../service/index.js';
import { IndexLockedError, InvalidCollectionNameError, InvalidFilterError, StorageUnavailableError } from '../store/index.js';

/** An error that is the client's to fix or the service's to report; its status and body are what the client sees. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: { field?: string; issues?: Array<{ field: string; message: string }>; headers?: Record<string, string> } = {},
  ) {
    super(message);
  }

  body() {
    return { error: { code: this.code, message: this.message, field: this.extra.field, issues: this.extra.issues } };
  }
}

export function validationError(err: ZodError): HttpError {
  const issues = err.issues.map((i) => ({
    field: i.path.length > 0 ? i.path.join('.') : (i.code === 'unrecognized_keys' ? (i.keys ?? []).join(',') : '(body)'),
    message: i.message,
  }));
  const first = issues[0]!;
  return new HttpError(400, 'invalid_request', `${first.field}: ${first.message}`, { field: first.field, issues });
}

export const notFound: RequestHandler = (req, _res, next) => {
  next(new HttpError(404, 'not_found', `no route ${req.method} ${req.path}`));
};

interface BodyParserError extends Error {
  type?: string;
  status?: number;
  limit?: number;
}

/** The service's refusals as what the client sees; undefined for errors that are ours (500). */
function serviceErrorToHttp(err: unknown): HttpError | undefined {
  if (err instanceof WriteQueueFullError) {
    return new HttpError(503, 'write_queue_full', err.message, { headers: { 'Retry-After': String(err.retryAfterSeconds) } });
  }
  if (err instanceof WriteCancelledError) {
    const reason = err.reason instanceof HttpError ? err.reason : new HttpError(503, 'write_cancelled', 'the write was cancelled');
    return new HttpError(reason.status, reason.code, `${reason.message}; the write was not applied, nothing was changed`, reason.extra);
  }
  // An uploaded file that would cost too much to read (a decompression bomb, too many pages, past its parse time).
  if (err instanceof FileLimitError) {
    const code = err.status === 413 ? 'payload_too_large' : 'unprocessable_file';
    return new HttpError(err.status, code, err.message, err.field ? { field: err.field } : {});
  }
  if (err instanceof ReadOnlyIndexError) return new HttpError(409, 'read_only', err.message);
  if (err instanceof RerankerUnavailableError) return new HttpError(503, 'rerank_unavailable', err.message);
  if (err instanceof InvalidRerankError) return new HttpError(400, 'invalid_request', err.message, { field: 'rerank.topN' });
  // The request schema refuses what the store refuses; this keeps any gap between them a 400, not a 500.
  if (err instanceof InvalidFilterError) return new HttpError(400, 'invalid_request', err.message, { field: 'filter' });
  if (err instanceof CollectionNotFoundError) return new HttpError(404, 'collection_not_found', err.message, { field: 'collection' });
  if (err instanceof CollectionExistsError) return new HttpError(409, 'collection_exists', err.message, { field: 'name' });
  if (err instanceof CollectionProtectedError) return new HttpError(409, 'collection_protected', err.message, { field: 'name' });
  if (err instanceof InvalidCollectionNameError) return new HttpError(400, 'invalid_request', err.message, { field: 'collection' });
  // Another process (an `npm run ingest`) holds the collection's writer lock; it lets go when it finishes.
  if (err instanceof IndexLockedError) return new HttpError(503, 'collection_busy', err.message, { headers: { 'Retry-After': '5' } });
  // The full message names server folders; the client learns which model, the server log the rest.
  if (err instanceof ModelNotFoundError) {
    return new HttpError(422, 'model_not_found', `embedding model "${err.model}" is not available on this server`, { field: 'embedModel' });
  }
  // PostgreSQL deployment: the database is down or restarting; searches keep being served from the local index.
  if (err instanceof StorageUnavailableError) {
    return new HttpError(503, 'database_unavailable', err.message, { headers: { 'Retry-After': '2' } });
  }
  return undefined;
}

/** Turns every error into a JSON body; stack traces go to the request's log line, never to the client. */
export function errorHandler(): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    const httpError = malformedPath(err, req.path) ?? toHttpError(err);
    if (httpError.code === 'internal_error') req.log.error({ err }, 'request failed');
    if (res.headersSent) {
      res.end();
      return;
    }
    for (const [k, v] of Object.entries(httpError.extra.headers ?? {})) res.setHeader(k, v);
    res.status(httpError.status).json(httpError.body());
  };
}

/**
 * The router decodes path parameters before any handler runs and fails with a URIError on malformed percent-encoding
 * (a truncated escape, bytes that are not UTF-8). The only parameterised routes take a document id.
 */
function malformedPath(err: unknown, path: string): HttpError | undefined {
  if (!(err instanceof URIError)) return undefined;
  const field = /^\/v1\/(collections\/[^/]*\/)?documents\//.test(path) ? 'id' : path.startsWith('/v1/collections/') ? 'collection' : '(path)';
  return new HttpError(400, 'invalid_request', `${field}: not valid percent-encoded UTF-8`, { field });
}

/** Any thrown value as the HttpError the client gets. */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  const fromService = serviceErrorToHttp(err);
  if (fromService) return fromService;
  const e = err as BodyParserError;
  if (e?.type === 'entity.too.large') {
    return new HttpError(413, 'payload_too_large', `request body exceeds the limit of ${e.limit} bytes`, { field: '(body)' });
  }
  if (e?.type === 'entity.parse.failed') return new HttpError(400, 'invalid_json', 'request body is not valid JSON', { field: '(body)' });
  if (e?.type === 'entity.invalid.utf8') {
    return new HttpError(400, 'invalid_utf8', 'request body is not valid UTF-8 (send JSON as UTF-8 text)', { field: '(body)' });
  }
  if (e?.type === 'encoding.unsupported' || e?.type === 'charset.unsupported') return new HttpError(415, 'unsupported_encoding', e.message);
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) return new HttpError(e.status, 'bad_request', e.message);
  return new HttpError(500, 'internal_error', 'internal error');
}
