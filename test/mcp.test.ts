/**
 * The MCP server, driven by the SDK's own client over both transports: streamable HTTP at /mcp on an in-process
 * server (API keys, scopes and collection limits as in REST) and stdio (`npm run mcp` as a host spawns it).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey, hashApiKey } from '../src/api/index.js';
import { startServer } from '../src/main.js';
import { fixtureConfig } from './helpers/config.js';
import { BERT_TINY, FIXTURES_DIR, REPO_ROOT, T5_TINY } from './helpers/fixtures.js';
import { request } from './helpers/http.js';

type Server = Awaited<ReturnType<typeof startServer>>;

const WRITER_KEY = generateApiKey();
const READER_KEY = generateApiKey();
const LIMITED_KEY = generateApiKey();
const KEYS = [
  { name: 'writer', sha256: hashApiKey(WRITER_KEY), scopes: ['read' as const, 'write' as const] },
  { name: 'reader', sha256: hashApiKey(READER_KEY), scopes: ['read' as const] },
  { name: 'limited', sha256: hashApiKey(LIMITED_KEY), scopes: ['read' as const, 'write' as const], collections: ['default'] },
];

function corpusDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mcp-corpus-'));
  writeFileSync(
    path.join(dir, 'otters.md'),
    '# Otters\n\n## Sleep\n\nSea otters hold hands while they sleep so they do not drift apart.\n\n## Food\n\nOtters eat sea urchins and crabs.',
  );
  writeFileSync(path.join(dir, 'zebras.md'), '# Zebras\n\nZebras migrate across the Serengeti every year in search of grass.');
  return dir;
}

const TOOLS = ['add_documents', 'ask', 'get_document', 'list_collections', 'search'];

function textOf(result: CallToolResult): string {
  return result.content.map((c) => (c.type === 'text' ? c.text : '')).join('');
}

describe('MCP over streamable HTTP at /mcp', () => {
  let server: Server;
  let base = '';
  const clients: Client[] = [];

  async function connect(key: string | undefined): Promise<Client> {
    const client = new Client({ name: 'mcp-test', version: '1.0.0' });
    const headers: Record<string, string> = key === undefined ? {} : { Authorization: `Bearer ${key}` };
    await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers } }));
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    server = await startServer(fixtureConfig({ corpusDir: corpusDir(), auth: { keys: KEYS } }), pino({ level: 'silent' }));
    await server.ready;
    base = `http://127.0.0.1:${server.port}`;
    const auth = { Authorization: `Bearer ${WRITER_KEY}` };
    expect((await request(base, 'POST', '/v1/collections', { body: { name: 'extra' }, headers: auth })).status).toBe(201);
    const added = await request(base, 'POST', '/v1/collections/extra/documents', {
      body: { documents: [{ id: 'secret/plan.txt', title: 'Plan', text: 'The extra collection holds the launch plan.' }] },
      headers: auth,
    });
    expect(added.status).toBe(200);
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await server?.close();
  });

  it('lists the tools with JSON schemas from the REST schemas; a read-only key is not offered add_documents', async () => {
    const writer = await connect(WRITER_KEY);
    const { tools } = await writer.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(TOOLS);
    const search = tools.find((t) => t.name === 'search')!;
    expect(Object.keys(search.inputSchema.properties ?? {}).sort()).toEqual(['collection', 'filter', 'k', 'mode', 'query', 'rerank']);
    expect(search.inputSchema.required).toEqual(['query']);
    expect((search.inputSchema.properties!.mode as { enum: string[] }).enum).toContain('hybrid');
    expect((search.inputSchema.properties!.k as { maximum: number }).maximum).toBeGreaterThan(1);
    expect(search.outputSchema?.properties).toHaveProperty('results');
    const ask = tools.find((t) => t.name === 'ask')!;
    expect(ask.inputSchema.properties).toHaveProperty('question');
    expect(ask.inputSchema.properties).not.toHaveProperty('stream');

    const reader = await connect(READER_KEY);
    expect((await reader.listTools()).tools.map((t) => t.name).sort()).toEqual(TOOLS.filter((t) => t !== 'add_documents'));
    const refused = (await reader.callTool({
      name: 'add_documents',
      arguments: { documents: [{ id: 'x', text: 'y' }] },
    })) as CallToolResult;
    expect(refused.isError).toBe(true);
    expect(textOf(refused)).toMatch(/add_documents not found/);
  });

  it('search returns structured hits and readable text with title, section and passage id', async () => {
    const client = await connect(READER_KEY);
    const result = (await client.callTool({ name: 'search', arguments: { query: 'otters sleep', mode: 'bm25', k: 2 } })) as CallToolResult;
    expect(result.isError).toBeFalsy();
    const hits = (result.structuredContent as { results: Array<{ passageId: string; title: string; section?: string[] }> }).results;
    expect(hits[0]!.title).toBe('Otters');
    expect(hits[0]!.section).toEqual(['Otters']);
    expect(textOf(result)).toContain(`passage ${hits[0]!.passageId}`);
    expect(textOf(result)).toContain(`[1] Otters — passage ${hits[0]!.passageId}`);

    const filtered = (await client.callTool({
      name: 'search',
      arguments: { query: 'otters', mode: 'bm25', filter: { docIds: ['zebras.md'] } },
    })) as CallToolResult;
    expect((filtered.structuredContent as { results: unknown[] }).results).toEqual([]);
  });

  it('ask answers with citations and sends progress while it generates', async () => {
    const client = await connect(READER_KEY);
    const progress: Array<{ progress: number; message?: string }> = [];
    const result = (await client.callTool(
      { name: 'ask', arguments: { question: 'Why do sea otters hold hands?', k: 2, mode: 'bm25', maxNewTokens: 8 } },
      undefined,
      { onprogress: (p) => progress.push(p) },
    )) as CallToolResult;
    expect(result.isError).toBeFalsy();
    const answer = result.structuredContent as {
      answer: string;
      citations: Array<{ passageId: string; title: string; attention: number; section?: string[] }>;
      passages: unknown[];
    };
    expect(answer.citations.length).toBeGreaterThan(0);
    for (const c of answer.citations) {
      expect(c.passageId).toMatch(/#\d+$/);
      expect(c.attention).toBeGreaterThan(0);
    }
    expect(answer).not.toHaveProperty('tokenAttention');
    expect(textOf(result)).toContain('Sources:');
    expect(textOf(result)).toContain(`passage ${answer.citations[0]!.passageId}`);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.map((p) => p.progress)).toEqual(progress.map((_, i) => i + 1));
    expect(progress.at(-1)!.message!.trim()).toBe(answer.answer.trim());
  });

  it('lists collections, gets documents and reads them as resources, within the key’s collections', async () => {
    const writer = await connect(WRITER_KEY);
    const all = (await writer.callTool({ name: 'list_collections', arguments: {} })) as CallToolResult;
    expect((all.structuredContent as { collections: Array<{ name: string }> }).collections.map((c) => c.name).sort()).toEqual([
      'default',
      'extra',
    ]);
    const doc = (await writer.callTool({
      name: 'get_document',
      arguments: { id: 'secret/plan.txt', collection: 'extra' },
    })) as CallToolResult;
    expect((doc.structuredContent as { title: string }).title).toBe('Plan');
    const resources = await writer.listResources();
    const uris = resources.resources.map((r) => r.uri);
    expect(uris).toContain('rag://default/documents/otters.md');
    expect(uris).toContain('rag://extra/documents/secret%2Fplan.txt');
    const read = await writer.readResource({ uri: 'rag://extra/documents/secret%2Fplan.txt' });
    expect(read.contents[0]).toMatchObject({ mimeType: 'text/markdown' });
    expect((read.contents[0] as { text: string }).text).toContain('launch plan');

    const limited = await connect(LIMITED_KEY);
    const mine = (await limited.callTool({ name: 'list_collections', arguments: {} })) as CallToolResult;
    expect((mine.structuredContent as { collections: Array<{ name: string }> }).collections.map((c) => c.name)).toEqual(['default']);
    const refused = (await limited.callTool({ name: 'search', arguments: { query: 'plan', collection: 'extra' } })) as CallToolResult;
    expect(refused.isError).toBe(true);
    expect(textOf(refused)).toContain('API key "limited" may not use collection "extra"');
    expect((await limited.listResources()).resources.every((r) => r.uri.startsWith('rag://default/'))).toBe(true);
    await expect(limited.readResource({ uri: 'rag://extra/documents/secret%2Fplan.txt' })).rejects.toThrow(/no collection "extra"/);
  });

  it('add_documents writes (write scope) and the new document is searchable at once', async () => {
    const client = await connect(WRITER_KEY);
    const added = (await client.callTool({
      name: 'add_documents',
      arguments: { documents: [{ id: 'capybaras.txt', title: 'Capybaras', text: 'Capybaras are the largest living rodents.' }] },
    })) as CallToolResult;
    expect(added.isError).toBeFalsy();
    expect(added.structuredContent).toEqual({ documents: [{ id: 'capybaras.txt', status: 'added', passages: 1 }] });
    const found = (await client.callTool({
      name: 'search',
      arguments: { query: 'largest rodents', mode: 'bm25', k: 1 },
    })) as CallToolResult;
    expect((found.structuredContent as { results: Array<{ docId: string }> }).results[0]!.docId).toBe('capybaras.txt');
  });

  it('refusals are tool errors with a clear message naming the field', async () => {
    const client = await connect(READER_KEY);
    const badK = (await client.callTool({ name: 'search', arguments: { query: 'otters', k: 0 } })) as CallToolResult;
    expect(badK.isError).toBe(true);
    expect(textOf(badK)).toMatch(/k/);
    const unknownField = (await client.callTool({ name: 'search', arguments: { query: 'otters', top: 3 } })) as CallToolResult;
    expect(unknownField.isError).toBe(true);
    expect(textOf(unknownField)).toMatch(/top/);
    const badFilter = (await client.callTool({
      name: 'search',
      arguments: { query: 'otters', filter: { metadata: { year: { $gt: 'soon' } } } },
    })) as CallToolResult;
    expect(badFilter.isError).toBe(true);
    expect(textOf(badFilter)).toMatch(/\$gt/);
    const missing = (await client.callTool({ name: 'get_document', arguments: { id: 'nope.md' } })) as CallToolResult;
    expect(missing.isError).toBe(true);
    expect(textOf(missing)).toContain('no document with id "nope.md" in collection "default" (document_not_found, field id)');
    const badCollection = (await client.callTool({ name: 'search', arguments: { query: 'x', collection: 'nope' } })) as CallToolResult;
    expect(badCollection.isError).toBe(true);
    expect(textOf(badCollection)).toMatch(/nope/);
  });

  it('the client cancels an ask: the call ends, the work stops, and the session goes on', async () => {
    const client = await connect(READER_KEY);
    const tokensGenerated = async () => {
      const metrics = await request(base, 'GET', '/metrics', { headers: { Authorization: `Bearer ${READER_KEY}` } });
      return Number(/^rag_generated_tokens_total (\d+)/m.exec(metrics.text)?.[1] ?? 'NaN');
    };
    const tokensBefore = await tokensGenerated();
    expect(tokensBefore).toBeGreaterThanOrEqual(0);
    const controller = new AbortController();
    const call = client.callTool(
      { name: 'ask', arguments: { question: 'Tell me everything about otters', k: 2, mode: 'bm25', maxNewTokens: 256 } },
      undefined,
      { signal: controller.signal, onprogress: () => controller.abort('the user stopped it') },
    );
    await expect(call).rejects.toThrow();
    // The answer's work is cancelled on the server: nothing stays in flight or queued.
    const deadline = Date.now() + 5000;
    while ((server.app.generationQueue.depth > 0 || server.app.inFlight.count > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(server.app.generationQueue.depth).toBe(0);
    // The request's response stream ended too (the protocol sends no response to a cancelled call).
    expect(server.app.inFlight.count).toBe(0);
    // No answer was finished (a finished one counts its tokens).
    expect(await tokensGenerated()).toBe(tokensBefore);
    const after = (await client.callTool({ name: 'search', arguments: { query: 'zebras', mode: 'bm25', k: 1 } })) as CallToolResult;
    expect((after.structuredContent as { results: Array<{ docId: string }> }).results[0]!.docId).toBe('zebras.md');
  });

  it('refuses malformed JSON-RPC without harm, unauthenticated requests, and another key’s session', async () => {
    const client = await connect(READER_KEY);
    const transport = (client as unknown as { _transport: StreamableHTTPClientTransport })._transport;
    const sessionId = transport.sessionId!;
    const headers = {
      Authorization: `Bearer ${READER_KEY}`,
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
      'Mcp-Session-Id': sessionId,
      'Mcp-Protocol-Version': '2025-06-18',
    };
    const notJson = await fetch(`${base}/mcp`, { method: 'POST', headers, body: '{"jsonrpc": "2.0", "id": 1, "method": ' });
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32700 }, id: null });
    const notRpc = await fetch(`${base}/mcp`, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 5 }) });
    expect(notRpc.status).toBe(400);
    expect(((await notRpc.json()) as { error: { code: number } }).error.code).toBe(-32700);
    // The session still works.
    expect((await client.listTools()).tools.length).toBe(4);

    const anonymous = await fetch(`${base}/mcp`, { method: 'POST', headers: { ...headers, Authorization: '' }, body: '{}' });
    expect(anonymous.status).toBe(401);
    const stolen = await fetch(`${base}/mcp`, {
      method: 'POST',
      headers: { ...headers, Authorization: `Bearer ${WRITER_KEY}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
    });
    expect(stolen.status).toBe(404);
    const { 'Mcp-Session-Id': _sessionHeader, ...sessionless } = headers;
    const noSession = await fetch(`${base}/mcp`, {
      method: 'POST',
      headers: sessionless,
      body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list' }),
    });
    expect(noSession.status).toBe(400);
  });
});

describe('MCP sessions over HTTP are bounded', () => {
  let server: Server;

  afterAll(async () => {
    await server?.close();
  });

  it('refuses a session beyond mcp.maxSessions with 503 until an idle one is closed', async () => {
    server = await startServer(
      fixtureConfig({ corpusDir: corpusDir(), mcp: { maxSessions: 1, sessionIdleMs: 1000 } }),
      pino({ level: 'silent' }),
    );
    await server.ready;
    const url = new URL(`http://127.0.0.1:${server.port}/mcp`);
    const first = new Client({ name: 'first', version: '1.0.0' });
    await first.connect(new StreamableHTTPClientTransport(url));
    expect(server.app.mcp.size).toBe(1);
    const second = new Client({ name: 'second', version: '1.0.0' });
    await expect(second.connect(new StreamableHTTPClientTransport(url))).rejects.toThrow(/503|too many MCP sessions/);
    // Past mcp.sessionIdleMs the first session is idle: a new one takes its place, and the old one is gone.
    await new Promise((r) => setTimeout(r, 1100));
    const third = new Client({ name: 'third', version: '1.0.0' });
    await third.connect(new StreamableHTTPClientTransport(url));
    expect((await third.listTools()).tools.length).toBe(TOOLS.length);
    await expect(first.listTools()).rejects.toThrow(/session not found|404/);
    await third.close();
    await first.close().catch(() => undefined);
  });
});

describe('MCP over stdio (npm run mcp)', () => {
  let client: Client;
  let stderr = '';

  beforeAll(async () => {
    const work = mkdtempSync(path.join(os.tmpdir(), 'mcp-stdio-'));
    const configFile = path.join(work, 'rag.config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        modelsDir: FIXTURES_DIR,
        embedModel: BERT_TINY,
        readerModel: T5_TINY,
        quantized: false,
        allowRemote: false,
        indexesDir: path.join(work, 'indexes'),
        corpusDir: corpusDir(),
        logLevel: 'info',
      }),
    );
    const transport = new StdioClientTransport({
      command: 'npm',
      args: ['run', '--silent', 'mcp', '--', '--config', configFile],
      cwd: REPO_ROOT,
      env: { ...(process.env as Record<string, string>) },
      stderr: 'pipe',
    });
    transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    client = new Client({ name: 'mcp-stdio-test', version: '1.0.0' });
    await client.connect(transport);
  }, 60_000);

  afterAll(async () => {
    await client?.close();
  });

  it('serves the tools over stdio, with logs on stderr only', async () => {
    expect((await client.listTools()).tools.map((t) => t.name).sort()).toEqual(TOOLS);
    const hits = (await client.callTool({ name: 'search', arguments: { query: 'zebras migrate', mode: 'bm25', k: 1 } })) as CallToolResult;
    expect((hits.structuredContent as { results: Array<{ docId: string }> }).results[0]!.docId).toBe('zebras.md');
    const answer = (await client.callTool({
      name: 'ask',
      arguments: { question: 'Where do zebras migrate?', k: 1, mode: 'bm25', maxNewTokens: 4 },
    })) as CallToolResult;
    expect((answer.structuredContent as { citations: Array<{ docId: string }> }).citations[0]!.docId).toBe('zebras.md');
    expect(stderr).toContain('MCP server ready on stdio');
  });
});
