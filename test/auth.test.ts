/**
 * Access control on an in-process server over the tiny fixture models: API keys and scopes, the constant-time hash
 * comparison, auth explicitly off, start-up refusing auth without keys, the key generator, per-key rate limits,
 * CORS and security headers.
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ApiKeyAuthenticator, AuthConfigError, generateApiKey, hashApiKey } from '../src/api/index.js';
import { ConfigError, loadConfig, type ConfigInput } from '../src/config/index.js';
import { startServer } from '../src/main.js';
import { fixtureConfig } from './helpers/config.js';
import { request, type RequestOptions } from './helpers/http.js';
import { REPO_ROOT } from './helpers/fixtures.js';

type Server = Awaited<ReturnType<typeof startServer>>;

const READER_KEY = generateApiKey();
const WRITER_KEY = generateApiKey();
const WRITE_ONLY_KEY = generateApiKey();
const KEYS = [
  { name: 'reader', sha256: hashApiKey(READER_KEY), scopes: ['read' as const] },
  { name: 'writer', sha256: hashApiKey(WRITER_KEY).toUpperCase(), scopes: ['read' as const, 'write' as const] },
  { name: 'ingest-bot', sha256: hashApiKey(WRITE_ONLY_KEY), scopes: ['write' as const] },
];

function corpusDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'auth-corpus-'));
  writeFileSync(path.join(dir, 'otters.md'), '# Otters\n\nSea otters hold hands while they sleep so they do not drift apart.');
  return dir;
}

async function start(overrides: ConfigInput, log = pino({ level: 'silent' })): Promise<{ server: Server; base: string }> {
  const server = await startServer(fixtureConfig({ corpusDir: corpusDir(), ...overrides }), log);
  await server.ready;
  return { server, base: `http://127.0.0.1:${server.port}` };
}

const call = (base: string, method: string, route: string, options: RequestOptions = {}) => request(base, method, route, options);

const SEARCH = { query: 'otters sleep', mode: 'bm25', k: 1 };

describe('API keys and scopes', () => {
  let server: Server;
  let base = '';

  beforeAll(async () => {
    ({ server, base } = await start({ auth: { keys: KEYS } }));
  });

  afterAll(async () => {
    await server?.close();
  });

  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('401s a missing key with a Bearer challenge and a JSON body', async () => {
    for (const [method, route] of [
      ['POST', '/v1/search'],
      ['POST', '/v1/ask'],
      ['POST', '/v1/documents'],
      ['GET', '/v1/stats'],
      ['GET', '/v1/documents/otters.md'],
      ['DELETE', '/v1/documents/otters.md'],
    ] as const) {
      const res = await call(base, method, route, { body: method === 'POST' ? {} : undefined });
      expect(res.status, `${method} ${route}`).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="fid-rag"$/);
      expect(res.headers.get('content-type')).toMatch(/application\/json/);
      expect(res.json.error.code).toBe('unauthorized');
    }
  });

  it('401s a key sent without the Bearer scheme, or with another scheme, saying so', async () => {
    for (const [authorization, message] of [
      [READER_KEY, 'the Authorization header has no scheme: send the key as "Authorization: Bearer <key>"'],
      [
        `Basic ${Buffer.from('a:b').toString('base64')}`,
        'the Authorization scheme "Basic" is not supported: send the key as "Authorization: Bearer <key>"',
      ],
    ] as const) {
      const res = await call(base, 'POST', '/v1/search', { body: SEARCH, headers: { authorization } });
      expect(res.status, authorization).toBe(401);
      expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"');
      expect(res.json.error.message).toBe(message);
    }
  });

  it('401s a wrong or malformed key as an invalid token', async () => {
    for (const authorization of [`Bearer ${generateApiKey()}`, `Bearer ${READER_KEY}x`, 'Bearer', `Bearer ${READER_KEY} extra`]) {
      const res = await call(base, 'POST', '/v1/search', { body: SEARCH, headers: { authorization } });
      expect(res.status, authorization).toBe(401);
      expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"');
      expect(res.json.error.message).toBe('invalid API key');
    }
  });

  it('lets a read key search, ask, read documents and stats, and 403s its writes', async () => {
    expect((await call(base, 'POST', '/v1/search', { key: READER_KEY, body: SEARCH })).json.results[0].docId).toBe('otters.md');
    expect((await call(base, 'POST', '/v1/ask', { key: READER_KEY, body: { question: 'otters?', k: 1, maxNewTokens: 2 } })).status).toBe(
      200,
    );
    expect((await call(base, 'GET', '/v1/stats', { key: READER_KEY })).status).toBe(200);
    expect((await call(base, 'GET', '/v1/documents/otters.md', { key: READER_KEY })).status).toBe(200);

    const write = await call(base, 'POST', '/v1/documents', { key: READER_KEY, body: { documents: [{ id: 'x', text: 'y' }] } });
    expect(write.status).toBe(403);
    expect(write.json.error.code).toBe('forbidden');
    expect(write.json.error.message).toMatch(/"reader" lacks the "write" scope/);
    expect((await call(base, 'DELETE', '/v1/documents/otters.md', { key: READER_KEY })).status).toBe(403);
  });

  it('lets a write key change documents, and 403s a write-only key on reads', async () => {
    const write = await call(base, 'POST', '/v1/documents', {
      key: WRITER_KEY,
      body: { documents: [{ id: 'pangolin', text: 'Pangolins have scales.' }] },
    });
    expect(write.status, write.text).toBe(200);
    expect(
      (
        await call(base, 'POST', '/v1/documents', {
          key: WRITE_ONLY_KEY,
          body: { documents: [{ id: 'pangolin', text: 'Pangolins roll up.' }] },
        })
      ).status,
    ).toBe(200);
    expect((await call(base, 'DELETE', '/v1/documents/pangolin', { key: WRITE_ONLY_KEY })).status).toBe(200);
    expect((await call(base, 'POST', '/v1/search', { key: WRITE_ONLY_KEY, body: SEARCH })).status).toBe(403);
  });

  it('keeps health, readiness, the OpenAPI document, metrics and the playground open', async () => {
    for (const route of ['/healthz', '/readyz', '/openapi.json', '/metrics', '/', '/js/app.js']) {
      expect((await call(base, 'GET', route)).status, route).toBe(200);
    }
    const doc = (await call(base, 'GET', '/openapi.json')).json;
    expect(doc.components.securitySchemes.apiKey).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.paths['/v1/documents'].post.security).toEqual([{ apiKey: ['write'] }]);
  });

  it('compares every configured hash with crypto.timingSafeEqual, whether or not a key matches', async () => {
    const spy = vi.spyOn(crypto, 'timingSafeEqual');
    await call(base, 'POST', '/v1/search', { key: `${READER_KEY}-wrong`, body: SEARCH });
    expect(spy).toHaveBeenCalledTimes(KEYS.length);
    for (const [a, b] of spy.mock.calls) {
      expect((a as Buffer).length).toBe(32);
      expect((b as Buffer).length).toBe(32);
    }
    spy.mockClear();
    // A match on the first key still compares against the others: no early exit to time.
    expect((await call(base, 'POST', '/v1/search', { key: READER_KEY, body: SEARCH })).status).toBe(200);
    expect(spy).toHaveBeenCalledTimes(KEYS.length);
  });
});

describe('auth configuration', () => {
  it('reads keys from the config file and from RAG_API_KEYS, hashed, and refuses bad entries', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'auth-config-'));
    const file = path.join(dir, 'rag.config.json');
    writeFileSync(file, JSON.stringify({ auth: { keys: [KEYS[0]] } }));
    const fromFile = loadConfig({ env: {}, file });
    expect(fromFile.auth.keys).toEqual([KEYS[0]]);
    expect(fromFile.auth.disabled).toBe(false);

    const fromEnv = loadConfig({ env: { RAG_API_KEYS: JSON.stringify([KEYS[1]]) }, file });
    expect(fromEnv.auth.keys).toEqual([{ ...KEYS[1], sha256: KEYS[1]!.sha256.toLowerCase() }]);
    expect(new ApiKeyAuthenticator(fromEnv.auth.keys).authenticate(WRITER_KEY)?.name).toBe('writer');

    expect(() => loadConfig({ env: { RAG_API_KEYS: '[{"name": oops}]' } })).toThrow(/RAG_API_KEYS is not valid JSON/);
    expect(() => loadConfig({ env: {}, overrides: { auth: { keys: [{ ...KEYS[0]!, sha256: 'abc' }] } } })).toThrow(/auth\.keys\.0\.sha256/);
    expect(() => loadConfig({ env: {}, overrides: { auth: { keys: [KEYS[0]!, { ...KEYS[1]!, name: 'reader' }] } } })).toThrow(
      /duplicate key name/,
    );
    expect(() => loadConfig({ env: {}, overrides: { auth: { keys: [{ ...KEYS[0]!, scopes: ['admin' as 'read'] }] } } })).toThrow(
      ConfigError,
    );
  });

  it('is off without keys for local use, on with keys, and mandatory under NODE_ENV=production or auth.disabled false', () => {
    expect(loadConfig({ env: {} }).auth.disabled).toBe(true);
    expect(loadConfig({ env: { RAG_API_KEYS: JSON.stringify(KEYS) } }).auth.disabled).toBe(false);
    expect(loadConfig({ env: { NODE_ENV: 'production' } }).auth.disabled).toBe(false);
    expect(loadConfig({ env: { NODE_ENV: 'production', RAG_AUTH_DISABLED: 'true' } }).auth.disabled).toBe(true);
    expect(loadConfig({ env: { RAG_AUTH_DISABLED: 'false' } }).auth.disabled).toBe(false);
    expect(() => loadConfig({ env: { RAG_AUTH_DISABLED: 'maybe' } })).toThrow(/RAG_AUTH_DISABLED=maybe is not a boolean/);
  });

  it('refuses to start with auth on and no keys, before listening', async () => {
    const config = fixtureConfig({ corpusDir: corpusDir(), auth: { disabled: false } });
    await expect(startServer(config, pino({ level: 'silent' }))).rejects.toThrow(AuthConfigError);
    await expect(startServer(config, pino({ level: 'silent' }))).rejects.toThrow(/no API keys are configured.*npm run keys/);
  });

  it('serves everyone when auth is explicitly disabled, and warns at start-up', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const { server, base } = await start({ auth: { disabled: true, keys: KEYS } }, pino({ level: 'info' }, sink));
    try {
      expect((await call(base, 'POST', '/v1/search', { body: SEARCH })).status).toBe(200);
      expect((await call(base, 'POST', '/v1/documents', { body: { documents: [{ id: 'a', text: 'b' }] } })).status).toBe(200);
      // A key is simply ignored.
      expect((await call(base, 'GET', '/v1/stats', { key: 'anything' })).status).toBe(200);
      const warning = lines.map((l) => JSON.parse(l)).find((l) => /authentication is DISABLED/.test(l.msg));
      expect(warning?.level).toBe(40);
    } finally {
      await server.close();
    }
  });

  it('npm run keys makes a write-only key only with a clear warning that it cannot read', async () => {
    const tsx = path.join(REPO_ROOT, 'node_modules', '.bin', 'tsx');
    const writeOnly = await promisify(execFile)(tsx, ['scripts/keys.ts', '--name', 'ingest-bot', '--scopes', 'write'], { cwd: REPO_ROOT });
    expect(writeOnly.stderr).toMatch(/warning: this key has the "write" scope only[\s\S]*--scopes read,write/);
    expect(writeOnly.stdout).toMatch(/"scopes":\["write"\]/);
    const both = await promisify(execFile)(tsx, ['scripts/keys.ts', '--name', 'admin', '--scopes', 'read,write'], { cwd: REPO_ROOT });
    expect(both.stderr).toBe('');
  });

  it('npm run keys prints a key once and the config entry that admits it', async () => {
    const tsx = path.join(REPO_ROOT, 'node_modules', '.bin', 'tsx');
    const { stdout } = await promisify(execFile)(tsx, ['scripts/keys.ts', '--name', 'ci-bot', '--scopes', 'read,write'], {
      cwd: REPO_ROOT,
    });
    const key = /^\s+(rag_[A-Za-z0-9_-]{43})$/m.exec(stdout)?.[1];
    const entry = JSON.parse(/^\s+(\{.*\})$/m.exec(stdout)?.[1] ?? 'null');
    expect(key).toBeDefined();
    expect(entry).toEqual({ name: 'ci-bot', sha256: hashApiKey(key!), scopes: ['read', 'write'] });
    expect(stdout.split(key!).length - 1).toBe(1);
    const config = loadConfig({ env: { RAG_API_KEYS: JSON.stringify([entry]) } });
    expect(new ApiKeyAuthenticator(config.auth.keys).authenticate(key!)).toEqual({ name: 'ci-bot', scopes: ['read', 'write'] });
  });
});

describe('rate limits, CORS and security headers', () => {
  let server: Server;
  let base = '';

  beforeAll(async () => {
    ({ server, base } = await start({
      auth: { keys: KEYS, protectMetrics: true },
      server: { rateLimit: { windowMs: 60_000, max: 3 }, cors: { origins: ['https://portal.example.com'] } },
    }));
  });

  afterAll(async () => {
    await server?.close();
  });

  it('429s a key past its budget with Retry-After and a JSON body, and leaves other keys alone', async () => {
    for (let i = 0; i < 3; i++) expect((await call(base, 'POST', '/v1/search', { key: READER_KEY, body: SEARCH })).status).toBe(200);
    const limited = await call(base, 'POST', '/v1/search', { key: READER_KEY, body: SEARCH });
    expect(limited.status).toBe(429);
    expect(limited.json.error.code).toBe('rate_limited');
    const retryAfter = Number(limited.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // The budget spans routes, and belongs to the key, not the client address.
    expect((await call(base, 'GET', '/v1/stats', { key: READER_KEY })).status).toBe(429);
    expect((await call(base, 'POST', '/v1/search', { key: WRITER_KEY, body: SEARCH })).status).toBe(200);
    // Open routes are not counted.
    expect((await call(base, 'GET', '/healthz')).status).toBe(200);
  });

  it('can require the read scope for /metrics', async () => {
    expect((await call(base, 'GET', '/metrics')).status).toBe(401);
    expect((await call(base, 'GET', '/metrics', { key: WRITE_ONLY_KEY })).status).toBe(403);
  });

  it('answers CORS for configured origins only', async () => {
    const preflight = await fetch(`${base}/v1/search`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://portal.example.com',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://portal.example.com');
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/authorization/i);

    const other = await fetch(`${base}/healthz`, { headers: { origin: 'https://evil.example.net' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('sets security headers whose CSP still allows the same-origin playground', async () => {
    const res = await fetch(`${base}/`);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain('unsafe-eval');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('x-frame-options')).toBe('SAMEORIGIN');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    expect(res.headers.get('x-powered-by')).toBeNull();
  });
});

describe('defaults without CORS', () => {
  it('sends no CORS headers, and limits by client address when auth is off', async () => {
    const { server, base } = await start({ auth: { disabled: true }, server: { rateLimit: { windowMs: 60_000, max: 2 } } });
    try {
      const res = await fetch(`${base}/v1/stats`, { headers: { origin: 'https://portal.example.com' } });
      expect(res.status).toBe(200);
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
      const preflight = await fetch(`${base}/v1/search`, {
        method: 'OPTIONS',
        headers: { origin: 'https://portal.example.com', 'access-control-request-method': 'POST' },
      });
      expect(preflight.headers.get('access-control-allow-origin')).toBeNull();

      expect((await call(base, 'GET', '/v1/stats')).status).toBe(200);
      const limited = await call(base, 'GET', '/v1/stats');
      expect(limited.status).toBe(429);
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    } finally {
      await server.close();
    }
  });
});
