import type { Express, RequestHandler } from 'express';
import { HttpError } from './errors.js';

/** The slice of the router's layers this needs: a path matcher, and either a route or a nested router. */
interface RouterLayer {
  match(path: string): { path: string } | false;
  route?: { methods: Record<string, boolean> };
  handle?: { stack?: RouterLayer[] };
}

/** Methods the routes matching `path` answer, from the router's own table (nested routers included). */
function allowedMethods(stack: readonly RouterLayer[], path: string, into: Set<string>): Set<string> {
  for (const layer of stack) {
    let match: { path: string } | false;
    try {
      match = layer.match(path);
    } catch {
      // Malformed percent-encoding in a parameter: this layer cannot serve the path anyway.
      continue;
    }
    if (!match) continue;
    if (layer.route) {
      for (const [method, on] of Object.entries(layer.route.methods)) if (on && method !== '_all') into.add(method.toUpperCase());
    } else if (layer.handle?.stack) {
      allowedMethods(layer.handle.stack, path.slice(match.path.length) || '/', into);
    }
  }
  if (into.has('GET')) into.add('HEAD');
  return into;
}

/**
 * For requests no route answered: a path some route serves with other methods is a 405 with `Allow` (RFC 9110
 * 15.5.6), not a 404. It reads the app's route table when the request arrives, so routes added anywhere count.
 */
export function methodNotAllowed(app: Express): RequestHandler {
  return (req, _res, next) => {
    const allowed = allowedMethods(app.router.stack as unknown as RouterLayer[], req.path, new Set());
    if (allowed.size === 0 || allowed.has(req.method)) {
      next();
      return;
    }
    const allow = [...allowed].sort().join(', ');
    next(
      new HttpError(405, 'method_not_allowed', `${req.method} is not allowed on ${req.path}; allowed: ${allow}`, {
        headers: { Allow: allow },
      }),
    );
  };
}
