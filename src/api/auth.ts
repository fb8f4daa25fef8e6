import crypto from 'node:crypto';
import type { RequestHandler } from 'express';
import type { ApiKeyConfig, ApiScope } from '../config/index.js';
import { HttpError } from './errors.js';

/** Who made a request, as far as the API is concerned; `name` is what logs and rate limits use, never the key. */
export interface Principal {
  name: string;
  scopes: readonly ApiScope[];
  /** The collections this key may use; undefined: all of them. */
  collections?: readonly string[];
}

const KEY_PREFIX = 'rag_';

/** A new random API key: 32 bytes from the CSPRNG, base64url, with a prefix that makes leaked keys easy to grep for. */
export function generateApiKey(): string {
  return KEY_PREFIX + crypto.randomBytes(32).toString('base64url');
}

/** What the config stores instead of the key. */
export function hashApiKey(key: string): string {
  return crypto.createHash('sha256').update(key, 'utf8').digest('hex');
}

/**
 * Checks a presented key against the configured hashes. Every configured hash is compared, each with
 * `crypto.timingSafeEqual` on equal-length digests, so the time taken says nothing about which bytes or which key
 * matched.
 */
export class ApiKeyAuthenticator {
  private readonly entries: Array<{ principal: Principal; digest: Buffer }>;

  constructor(keys: readonly ApiKeyConfig[]) {
    this.entries = keys.map((k) => ({
      principal: { name: k.name, scopes: [...k.scopes], ...(k.collections ? { collections: [...k.collections] } : {}) },
      digest: Buffer.from(k.sha256, 'hex'),
    }));
  }

  get size(): number {
    return this.entries.length;
  }

  authenticate(key: string): Principal | undefined {
    const presented = crypto.createHash('sha256').update(key, 'utf8').digest();
    let match: Principal | undefined;
    for (const entry of this.entries) {
      if (crypto.timingSafeEqual(presented, entry.digest) && match === undefined) match = entry.principal;
    }
    return match;
  }
}

export type AuthPolicy = { mode: 'disabled' } | { mode: 'keys'; authenticator: ApiKeyAuthenticator };

const BEARER = /^Bearer[ \t]+([\x21-\x7e]{1,512})[ \t]*$/i;

/**
 * Why a header that is not `Bearer <key>` was sent wrong, when the scheme is at fault: a key pasted without
 * `Bearer ` (the commonest mistake) or another scheme. Undefined when the scheme is Bearer and the key is the problem.
 */
function schemeProblem(header: string): string | undefined {
  const [first, ...rest] = header.trim().split(/[ \t]+/);
  if (rest.length === 0) return /^bearer$/i.test(first!) ? undefined : 'the Authorization header has no scheme';
  return /^bearer$/i.test(first!) ? undefined : `the Authorization scheme "${first!.slice(0, 32)}" is not supported`;
}

function unauthorized(message: string, invalidToken: boolean): HttpError {
  const challenge = invalidToken ? 'Bearer realm="fid-rag", error="invalid_token"' : 'Bearer realm="fid-rag"';
  return new HttpError(401, 'unauthorized', message, { headers: { 'WWW-Authenticate': challenge } });
}

/**
 * Lets a request through when its Bearer key has `scope`, and records its principal in `res.locals.principal` for
 * logs and rate limits. With auth disabled every request passes and has no principal.
 */
export function requireScope(policy: AuthPolicy, scope: ApiScope): RequestHandler {
  return (req, res, next) => {
    if (policy.mode === 'disabled') {
      next();
      return;
    }
    // Node keeps only the first of repeated Authorization fields; which one a proxy in front used is unknowable.
    if ((req.headersDistinct.authorization?.length ?? 0) > 1) {
      next(new HttpError(400, 'invalid_request', 'send exactly one Authorization header', { field: 'Authorization' }));
      return;
    }
    const header = req.get('authorization');
    if (header === undefined || header.trim() === '') {
      next(unauthorized('missing API key: send it as "Authorization: Bearer <key>"', false));
      return;
    }
    const match = BEARER.exec(header);
    if (!match) {
      const problem = schemeProblem(header);
      if (problem) {
        next(unauthorized(`${problem}: send the key as "Authorization: Bearer <key>"`, true));
        return;
      }
    }
    const principal = match ? policy.authenticator.authenticate(match[1]!) : undefined;
    if (!principal) {
      next(unauthorized('invalid API key', true));
      return;
    }
    res.locals.principal = principal;
    if (!principal.scopes.includes(scope)) {
      next(new HttpError(403, 'forbidden', `API key "${principal.name}" lacks the "${scope}" scope this route needs`));
      return;
    }
    next();
  };
}

export function principalOf(res: { locals: Record<string, unknown> }): Principal | undefined {
  return res.locals.principal as Principal | undefined;
}

/** Whether the request's key may use a collection (always, with auth off or an unlimited key). */
export function mayUseCollection(res: { locals: Record<string, unknown> }, collection: string): boolean {
  const limited = principalOf(res)?.collections;
  return limited === undefined || limited.includes(collection);
}

/** 403 unless the request's key may use the collection. */
export function assertCollectionAllowed(res: { locals: Record<string, unknown> }, collection: string): void {
  if (!mayUseCollection(res, collection)) {
    throw new HttpError(403, 'forbidden', `API key "${principalOf(res)!.name}" may not use collection "${collection}"`, {
      field: 'collection',
    });
  }
}

/** Raised at start-up when auth is on but no key could ever pass it. */
export class AuthConfigError extends Error {
  override name = 'AuthConfigError';
}

/** Auth on with no keys would lock everyone out; auth off must be asked for (or be the local-use default). */
export function authPolicyFor(auth: { disabled?: boolean; keys: readonly ApiKeyConfig[] }): AuthPolicy {
  if (auth.disabled === true) return { mode: 'disabled' };
  if (auth.keys.length === 0) {
    throw new AuthConfigError(
      'auth is enabled but no API keys are configured. Create one with `npm run keys -- --name <name> --scopes read,write` ' +
        'and put the printed entry into auth.keys of the config file (or RAG_API_KEYS as a JSON array); or, for a ' +
        'server no one else can reach, turn auth off explicitly with auth.disabled: true (RAG_AUTH_DISABLED=true).',
    );
  }
  return { mode: 'keys', authenticator: new ApiKeyAuthenticator(auth.keys) };
}
