import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { pinoHttp, type HttpLogger } from 'pino-http';

/** A caller's request id is kept if it is short and plain; anything else could forge or break log lines. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

export function requestIdFor(req: IncomingMessage, res: ServerResponse): string {
  const incoming = req.headers['x-request-id'];
  const id = typeof incoming === 'string' && SANE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
  res.setHeader('X-Request-Id', id);
  return id;
}

/** Liveness probes and scrapes arrive every few seconds; logging them would bury everything else. */
const QUIET_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

function pathOf(url: string | undefined): string {
  return (url ?? '').split('?')[0] ?? '';
}

/**
 * One JSON line per request, and `reqId` on every line logged through `req.log` while it runs. Only method, path,
 * status, timing, the API key's name and sizes are logged: never headers (they carry keys), bodies (document text,
 * questions) or query strings.
 */
export function requestLogger(logger: Logger): HttpLogger {
  return pinoHttp({
    logger,
    genReqId: requestIdFor,
    quietReqLogger: true,
    autoLogging: { ignore: (req) => QUIET_PATHS.has(pathOf(req.url)) },
    customLogLevel: (_req, res, err) => (err || res.statusCode >= 500 ? 'error' : 'info'),
    customSuccessMessage: () => 'request completed',
    customErrorMessage: () => 'request failed',
    customSuccessObject: (_req, res, value: Record<string, unknown>) => ({ ...value, apiKey: apiKeyName(res) }),
    customErrorObject: (_req, res, _err, value: Record<string, unknown>) => ({ ...value, apiKey: apiKeyName(res) }),
    serializers: {
      req: (req: { id?: unknown; method?: string; url?: string; remoteAddress?: string; raw?: IncomingMessage }) => ({
        method: req.method,
        path: pathOf(req.raw?.url ?? req.url),
        remoteAddress: req.remoteAddress,
        contentLength: numberOrUndefined(req.raw?.headers['content-length']),
      }),
      res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
    },
  });
}

function apiKeyName(res: ServerResponse): string | undefined {
  const locals = (res as ServerResponse & { locals?: { principal?: { name: string } } }).locals;
  return locals?.principal?.name;
}

function numberOrUndefined(value: string | undefined): number | undefined {
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
}
