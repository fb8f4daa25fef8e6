import { AsyncLocalStorage } from 'node:async_hooks';
import type { Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { HttpError } from './errors.js';

interface RequestScope {
  req: Request;
  res: Response;
}

const scopes = new AsyncLocalStorage<RequestScope>();

/**
 * Runs the rest of the request's handling inside an async context that names it, so that an exception nothing
 * caught (a stream's 'error' with no listener, a throw in a timer) can be traced to the request whose callbacks
 * raised it.
 */
export function requestScope(): RequestHandler {
  return (req, res, next) => scopes.run({ req, res }, next);
}

/**
 * Ends the request an uncaught error came from with a 500 (or a reset, once its head is sent); false when the error
 * belongs to no request. The request's callbacks own only its objects, so the rest of the server is sound.
 */
function failRequestOf(err: unknown, log: Logger): boolean {
  const scope = scopes.getStore();
  if (!scope) return false;
  const { req, res } = scope;
  (req.log ?? log).error({ err, path: req.path }, 'uncaught error in a request; it is answered 500 and the server goes on');
  if (res.headersSent || res.writableEnded) {
    res.destroy();
    return true;
  }
  // The request's body may still be arriving; the connection is not reused.
  res.setHeader('Connection', 'close');
  res.status(500).json(new HttpError(500, 'internal_error', 'internal error').body());
  return true;
}

/**
 * The process's last resort: an uncaught exception or rejection raised by a request's own callbacks fails that
 * request only; one outside every request leaves the process in an unknown state, so `onFatal` (a graceful shutdown
 * that lets the other requests finish, then an exit) is called, as Node's documentation asks.
 */
export function installLastResortGuard(log: Logger, onFatal: (err: unknown) => void): void {
  const handle = (kind: string) => (err: unknown) => {
    if (failRequestOf(err, log)) return;
    log.fatal({ err }, `${kind} outside any request; shutting down`);
    onFatal(err);
  };
  process.on('uncaughtException', handle('uncaught exception'));
  process.on('unhandledRejection', handle('unhandled rejection'));
}
