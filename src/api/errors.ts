import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { ZodError } from 'zod';
import { DomainError, ERROR_KINDS, type ErrorKind } from '../common/errors.js';

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
    field: i.path.length > 0 ? i.path.join('.') : i.code === 'unrecognized_keys' ? (i.keys ?? []).join(',') : '(body)',
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

/** Each kind of domain refusal as the status the client gets: a new refusal picks a kind and needs no edit here. */
export const KIND_STATUS: Readonly<Record<ErrorKind, number>> = {
  invalid: 400,
  not_found: 404,
  conflict: 409,
  read_only: 409,
  too_large: 413,
  unprocessable: 422,
  busy: 503,
  unavailable: 503,
  cancelled: 503,
  internal: 500,
};

const internalError = () => new HttpError(500, 'internal_error', 'internal error');

/** A domain refusal as what the client sees; an internal fault (or an unknown kind) is a 500 whose message stays in the log. */
function domainErrorToHttp(err: DomainError): HttpError {
  const status = (ERROR_KINDS as readonly string[]).includes(err.kind) ? KIND_STATUS[err.kind] : undefined;
  if (status === undefined || err.kind === 'internal') return internalError();
  // Cancelled by the API itself (a timeout, the client gone): that answer stands, and says what became of the work.
  if (err.kind === 'cancelled' && err.cause instanceof HttpError) {
    const reason = err.cause;
    return new HttpError(reason.status, reason.code, err.outcome ? `${reason.message}; ${err.outcome}` : reason.message, reason.extra);
  }
  return new HttpError(status, err.code, err.clientMessage, {
    ...(err.field !== undefined ? { field: err.field } : {}),
    ...(err.retryAfterSeconds !== undefined ? { headers: { 'Retry-After': String(err.retryAfterSeconds) } } : {}),
  });
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
  const field = /^\/v1\/(collections\/[^/]*\/)?documents\//.test(path)
    ? 'id'
    : path.startsWith('/v1/collections/')
      ? 'collection'
      : '(path)';
  return new HttpError(400, 'invalid_request', `${field}: not valid percent-encoded UTF-8`, { field });
}

/** Any thrown value as the HttpError the client gets. */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof DomainError) return domainErrorToHttp(err);
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
