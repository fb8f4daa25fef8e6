import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { ZodError } from 'zod';

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

/** Turns every error into a JSON body; stack traces go to the log, never to the client. */
export function errorHandler(log: (err: unknown) => void): ErrorRequestHandler {
  return (err: unknown, _req, res, _next) => {
    let httpError: HttpError;
    if (err instanceof HttpError) {
      httpError = err;
    } else {
      const e = err as BodyParserError;
      if (e.type === 'entity.too.large') {
        httpError = new HttpError(413, 'payload_too_large', `request body exceeds the limit of ${e.limit} bytes`, { field: '(body)' });
      } else if (e.type === 'entity.parse.failed') {
        httpError = new HttpError(400, 'invalid_json', 'request body is not valid JSON', { field: '(body)' });
      } else if (e.type === 'encoding.unsupported' || e.type === 'charset.unsupported') {
        httpError = new HttpError(415, 'unsupported_encoding', e.message);
      } else if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
        httpError = new HttpError(e.status, 'bad_request', e.message);
      } else {
        log(err);
        httpError = new HttpError(500, 'internal_error', 'internal error');
      }
    }
    if (res.headersSent) {
      res.end();
      return;
    }
    for (const [k, v] of Object.entries(httpError.extra.headers ?? {})) res.setHeader(k, v);
    res.status(httpError.status).json(httpError.body());
  };
}
