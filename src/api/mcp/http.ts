import { randomUUID } from 'node:crypto';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import express, { type RequestHandler, type Response } from 'express';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { principalOf, type AuthPolicy } from '../auth.js';
import { toHttpError } from '../errors.js';
import { createMcpServer, type McpDeps } from './tools.js';

interface Session {
  transport: StreamableHTTPServerTransport;
  server: McpServer;
  /** The API key that opened it (undefined with auth off): no other key may use the session. */
  owner: string | undefined;
  lastSeen: number;
}

export interface McpHttpOptions {
  auth: AuthPolicy;
  maxSessions: number;
  sessionIdleMs: number;
}

/** A JSON-RPC error as the response to a request the transport never saw (no id is known: `null`). */
function rpcError(res: Response, status: number, code: number, message: string, headers: Record<string, string> = {}): void {
  res.status(status).set(headers).json({ jsonrpc: '2.0', error: { code, message }, id: null });
}

/**
 * The streamable HTTP transport at `/mcp`: one protocol server per session, bound to the API key that opened it,
 * at most `maxSessions` at once, closed after `sessionIdleMs` without a request.
 */
export class McpSessions {
  private readonly sessions = new Map<string, Session>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly deps: McpDeps,
    private readonly options: McpHttpOptions,
  ) {
    this.sweeper = setInterval(() => this.closeIdle(), Math.min(options.sessionIdleMs, 60_000));
    this.sweeper.unref();
  }

  get size(): number {
    return this.sessions.size;
  }

  /**
   * `/mcp` behind the REST routes' auth (read scope), rate limit and body parser. A body the parser refuses gets a
   * JSON-RPC error in the REST error's words, as MCP clients expect.
   */
  router(read: RequestHandler, limit: RequestHandler, json: RequestHandler): express.Router {
    const router = express.Router();
    const body: RequestHandler = (req, res, next) =>
      json(req, res, (err?: unknown) => {
        if (err === undefined) {
          next();
          return;
        }
        const httpError = toHttpError(err);
        rpcError(res, httpError.status, httpError.code === 'invalid_json' ? -32700 : -32600, httpError.message);
      });
    router.all('/mcp', read, limit, body, async (req, res) => {
      const owner = principalOf(res)?.name;
      const id = req.get('mcp-session-id');
      if (id !== undefined) {
        const session = this.sessions.get(id);
        // Another key's session is reported as unknown: a session id says nothing about who holds it.
        if (!session || session.owner !== owner) {
          rpcError(res, 404, -32001, 'session not found: it expired or was closed; start a new one with initialize');
          return;
        }
        session.lastSeen = Date.now();
        if (req.method === 'GET') (res.locals.leaveInFlight as (() => void) | undefined)?.();
        await session.transport.handleRequest(req, res, req.body);
        return;
      }
      if (req.method !== 'POST' || !isInitializeRequest(req.body)) {
        rpcError(res, 400, -32000, 'no Mcp-Session-Id header: a session starts with an initialize request');
        return;
      }
      if (this.sessions.size >= this.options.maxSessions) this.closeIdle();
      if (this.sessions.size >= this.options.maxSessions) {
        rpcError(res, 503, -32000, `too many MCP sessions are open (mcp.maxSessions ${this.options.maxSessions}); retry later`, {
          'Retry-After': '5',
        });
        return;
      }
      const principal = principalOf(res);
      const mayWrite = this.options.auth.mode === 'disabled' || (principal?.scopes.includes('write') ?? false);
      const server = createMcpServer(this.deps, {
        ...(principal ? { principal } : {}),
        mayWrite,
        onCancelled: (requestId) => transport.closeSSEStream(requestId),
      });
      const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (sessionId) => {
          this.sessions.set(sessionId, { transport, server, owner, lastSeen: Date.now() });
        },
      });
      transport.onclose = () => {
        if (transport.sessionId !== undefined) this.sessions.delete(transport.sessionId);
      };
      await server.connect(transport);
      await transport.handleRequest(req, res, req.body);
    });
    return router;
  }

  /** Closes every session (the server is stopping): their streams end, their calls were cancelled before. */
  async close(): Promise<void> {
    clearInterval(this.sweeper);
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(sessions.map((s) => s.server.close().catch(() => undefined)));
  }

  private closeIdle(): void {
    const cutoff = Date.now() - this.options.sessionIdleMs;
    for (const [id, session] of this.sessions) {
      if (session.lastSeen > cutoff) continue;
      this.sessions.delete(id);
      void session.server.close().catch(() => undefined);
    }
  }
}
