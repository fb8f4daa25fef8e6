import type { RequestHandler } from 'express';
import cors from 'cors';
import helmet from 'helmet';
import { rateLimit, ipKeyGenerator } from 'express-rate-limit';
import { principalOf } from './auth.js';
import { HttpError } from './errors.js';

/**
 * Security headers. The playground loads only same-origin scripts and stylesheets and sets styles through the CSSOM
 * (allowed by CSP), so the policy needs no 'unsafe-inline'; its one data: URL is the empty favicon. No
 * upgrade-insecure-requests: inside a company the service is often reached over plain HTTP by host name, where that
 * directive would break the page.
 */
export function securityHeaders(): RequestHandler {
  return helmet({
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        scriptSrcAttr: ["'none'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        fontSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
      },
    },
  });
}

/** No CORS headers at all unless origins are configured: browsers then refuse cross-origin reads of the API. */
export function corsPolicy(origins: readonly string[]): RequestHandler | undefined {
  if (origins.length === 0) return undefined;
  return cors({
    origin: origins.includes('*') ? '*' : [...origins],
    methods: ['GET', 'POST', 'DELETE'],
    // The MCP headers let a browser-based MCP client hold a session at /mcp.
    allowedHeaders: ['Authorization', 'Content-Type', 'Accept', 'X-Request-Id', 'Mcp-Session-Id', 'Mcp-Protocol-Version', 'Last-Event-ID'],
    exposedHeaders: ['X-Request-Id', 'Retry-After', 'RateLimit', 'RateLimit-Policy', 'Mcp-Session-Id'],
    maxAge: 600,
  });
}

/**
 * Per-client request budget on the /v1 routes: per API key name when auth is on (a key shared by many hosts is one
 * client), per client IP (IPv6 by /56) when it is off. Runs after authentication so the key is known.
 */
export function rateLimiter(options: { windowMs: number; max: number }): RequestHandler | undefined {
  if (options.max === 0) return undefined;
  return rateLimit({
    windowMs: options.windowMs,
    limit: options.max,
    standardHeaders: 'draft-7',
    legacyHeaders: false,
    keyGenerator: (req, res) => {
      const principal = principalOf(res);
      return principal ? `key:${principal.name}` : `ip:${ipKeyGenerator(req.ip ?? 'unknown')}`;
    },
    handler: (req, res, next) => {
      const resetTime = (req as { rateLimit?: { resetTime?: Date } }).rateLimit?.resetTime;
      const seconds = resetTime ? Math.max(1, Math.ceil((resetTime.getTime() - Date.now()) / 1000)) : Math.ceil(options.windowMs / 1000);
      next(
        new HttpError(429, 'rate_limited', `more than ${options.max} requests in ${options.windowMs / 1000} s; retry in ${seconds} s`, {
          headers: { 'Retry-After': String(seconds) },
        }),
      );
    },
  });
}
