import { readFileSync } from 'node:fs';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  ErrorCode,
  ListResourcesRequestSchema,
  McpError,
  type CallToolResult,
  type ServerNotification,
  type ServerRequest,
} from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { AdmissionQueue, DocumentView } from '../../service/index.js';
import { publicAnswer } from '../answer-view.js';
import type { Principal } from '../auth.js';
import type { ApiOptions, ApiState } from '../context.js';
import { HttpError, toHttpError } from '../errors.js';
import type { InFlightRequests } from '../in-flight.js';
import type { ApiMetrics } from '../metrics.js';
import { ready, runQueued, workSignal } from '../request.js';
import {
  askFields,
  askResponseSchema,
  collectionNameSchema,
  collectionSchema,
  documentIdSchema,
  documentViewSchema,
  searchFields,
  searchResponseSchema,
  upsertDocumentsRequestSchema,
  upsertDocumentsResponseSchema,
  withAskRules,
  withSearchRules,
} from '../schemas.js';

/** What the MCP tools share with the REST routes: the same service, limits, answer queue and shutdown. */
export interface McpDeps {
  state: ApiState;
  options: Pick<ApiOptions, 'defaultCollection' | 'limits' | 'documentLimits' | 'requestTimeoutMs'>;
  queue: AdmissionQueue;
  inFlight: InFlightRequests;
  metrics?: ApiMetrics;
  log: Logger;
}

/** Who a session serves: an API key's principal (none with auth off, or over stdio), and whether it may write. */
export interface McpCaller {
  principal?: Principal;
  mayWrite: boolean;
  /**
   * A call the client cancelled has ended. The protocol sends no response to it, so a transport that holds a stream
   * open per request (streamable HTTP) must end that stream itself.
   */
  onCancelled?: (requestId: string | number) => void;
}

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** `rag://{collection}/documents/{id}`: the collection is the authority, the id one percent-encoded path segment. */
export const DOCUMENT_URI_TEMPLATE = 'rag://{collection}/documents/{id}';
const DOCUMENT_URI = /^rag:\/\/([^/?#]+)\/documents\/([^/?#]+)$/;

export function documentUri(collection: string, id: string): string {
  return `rag://${collection}/documents/${encodeURIComponent(id)}`;
}

/** Resources listed per page of `resources/list`. */
const RESOURCE_PAGE = 100;

const VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const INSTRUCTIONS =
  'Knowledge base of the documents ingested into this fid-rag server, in collections. `search` finds passages ' +
  '(bm25 for exact words, dense for meaning, hybrid for both); `ask` answers a question from the retrieved passages ' +
  'with a fusion-in-decoder reader and cites the passages the answer drew on. Documents are resources at ' +
  `${DOCUMENT_URI_TEMPLATE}.`;

/**
 * One MCP protocol server for one client session: the tools and the document resources, each call held to the REST
 * API's limits, deadline and answer queue, and to the caller's collections.
 */
export function createMcpServer(deps: McpDeps, caller: McpCaller): McpServer {
  const { state, options, queue, inFlight, metrics, log } = deps;
  const server = new McpServer({ name: 'fid-rag', version: VERSION }, { instructions: INSTRUCTIONS });
  const collectionField = collectionNameSchema.optional().describe(`Collection to use (default: "${options.defaultCollection}").`);

  /** The collection a call names (or the default one), once the caller may use it. */
  const collectionFor = (name: string | undefined): string => {
    const collection = name ?? options.defaultCollection;
    if (!mayUse(caller, collection)) {
      throw new HttpError(403, 'forbidden', `API key "${caller.principal!.name}" may not use collection "${collection}"`, {
        field: 'collection',
      });
    }
    return collection;
  };

  /** A tool's work under the request's one signal (client cancellation, deadline, shutdown); refusals as tool errors. */
  const call = async (extra: Extra, what: string, work: (signal: AbortSignal) => Promise<CallToolResult>): Promise<CallToolResult> => {
    const { requestTimeoutMs } = options;
    const { signal, done, withinDeadline } = workSignal(
      extra.signal,
      inFlight,
      requestTimeoutMs,
      `${what} not finished within ${requestTimeoutMs} ms`,
    );
    try {
      return await withinDeadline(work(signal));
    } catch (err) {
      return toolError(err, log);
    } finally {
      done();
      if (extra.signal.aborted) caller.onCancelled?.(extra.requestId);
    }
  };

  server.registerTool(
    'search',
    {
      title: 'Search passages',
      description:
        'Passages of a collection that match a query, best first, with their document, page range and section. ' +
        'mode: bm25 (exact words), dense (meaning), hybrid (both, fused; the usual default), exact (dense without the index).',
      inputSchema: withSearchRules(z.object({ ...searchFields(options.limits), collection: collectionField }).strict()),
      outputSchema: searchResponseSchema,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    (args, extra) =>
      call(extra, 'search', async (signal) => {
        const { collection, ...params } = args;
        const result = await ready(state).search({ ...params, collection: collectionFor(collection) }, { signal });
        if (result.timings.embedMs > 0) metrics?.observeStage('embed', result.timings.embedMs);
        metrics?.observeStage('search', result.timings.searchMs);
        return { content: [{ type: 'text', text: searchText(result.results) }], structuredContent: result };
      }),
  );

  const answerSchema = askResponseSchema.omit({ tokenAttention: true });
  server.registerTool(
    'ask',
    {
      title: 'Answer a question',
      description:
        'An answer to a question, generated from the passages retrieved for it, with citations: the passages the ' +
        "answer drew on (title, pages, section, passage id) and each one's share of the reader's attention. Sends " +
        'progress notifications with the answer so far while it generates.',
      inputSchema: withAskRules(z.object({ ...askFields(options.limits), collection: collectionField }).strict()),
      outputSchema: answerSchema,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    (args, extra) =>
      call(extra, 'answer', async (signal) => {
        const { collection, ...params } = args;
        const name = collectionFor(collection);
        const backend = ready(state);
        const progressToken = extra._meta?.progressToken;
        let partial = '';
        const onToken =
          progressToken === undefined
            ? undefined
            : (token: { text: string; index: number }) => {
                partial += token.text;
                const params = { progressToken, progress: token.index + 1, message: partial };
                // A client that left cannot be told; the answer's signal stops the work.
                extra.sendNotification({ method: 'notifications/progress', params }).catch(() => undefined);
              };
        const outcome = await runQueued(queue, () => backend.ask({ ...params, collection: name }, { signal, onToken }), signal);
        metrics?.observeAnswer(outcome);
        const { tokenAttention: _tokenAttention, ...answer } = publicAnswer(outcome);
        return { content: [{ type: 'text', text: answerText(answer) }], structuredContent: answer };
      }),
  );

  server.registerTool(
    'list_collections',
    {
      title: 'List collections',
      description: 'The collections this client may use, with their embedding model and chunking, and which one is the default.',
      inputSchema: z.object({}).strict(),
      outputSchema: z.object({ default: z.string(), collections: z.array(collectionSchema) }),
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    (_args, extra) =>
      call(extra, 'listing', async () => {
        const collections = (await ready(state).listCollections()).filter((c) => mayUse(caller, c.name));
        const text = collections
          .map((c) => `${c.name}${c.name === options.defaultCollection ? ' (default)' : ''}: ${c.embedModel}, created ${c.createdAt}`)
          .join('\n');
        return {
          content: [{ type: 'text', text: text || 'no collections' }],
          structuredContent: { default: options.defaultCollection, collections },
        };
      }),
  );

  server.registerTool(
    'get_document',
    {
      title: 'Get a document',
      description: `A document by id: its title, metadata and passages (with pages and sections). Also readable as the resource ${DOCUMENT_URI_TEMPLATE}.`,
      inputSchema: z.object({ id: documentIdSchema(options.documentLimits), collection: collectionField }).strict(),
      outputSchema: documentViewSchema,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    (args, extra) =>
      call(extra, 'document', async () => {
        const collection = collectionFor(args.collection);
        const doc = await ready(state).getDocument(args.id, { collection });
        if (!doc)
          throw new HttpError(404, 'document_not_found', `no document with id "${args.id}" in collection "${collection}"`, { field: 'id' });
        return { content: [{ type: 'text', text: documentText(doc) }], structuredContent: { ...doc } };
      }),
  );

  if (caller.mayWrite) {
    server.registerTool(
      'add_documents',
      {
        title: 'Add documents',
        description:
          'Adds or replaces documents (id, text, optional title and metadata) in a collection; they are split into ' +
          'passages, embedded and searchable when the call returns. A document whose text is unchanged is left as it is.',
        inputSchema: upsertDocumentsRequestSchema(options.documentLimits).extend({ collection: collectionField }),
        outputSchema: upsertDocumentsResponseSchema,
        annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
      },
      (args, extra) =>
        call(extra, 'write', async (signal) => {
          const collection = collectionFor(args.collection);
          const started = performance.now();
          const documents = await ready(state).upsertDocuments(args.documents, { signal, collection });
          metrics?.observeStage('write', performance.now() - started);
          const counts = new Map<string, number>();
          for (const d of documents) counts.set(d.status, (counts.get(d.status) ?? 0) + 1);
          const summary = [...counts].map(([status, n]) => `${n} ${status}`).join(', ');
          const errors = documents.filter((d) => d.error !== undefined).map((d) => `\n${d.id}: ${d.error}`);
          return {
            content: [{ type: 'text', text: `${documents.length} document(s) in "${collection}": ${summary}${errors.join('')}` }],
            structuredContent: { documents },
            ...(documents.every((d) => d.status === 'error') ? { isError: true } : {}),
          };
        }),
    );
  }

  registerDocumentResources(server, deps, caller);
  return server;
}

function mayUse(caller: McpCaller, collection: string): boolean {
  const limited = caller.principal?.collections;
  return limited === undefined || limited.includes(collection);
}

/** A refusal or failure as an MCP tool error: the REST error's message and code, details of a fault kept in the log. */
function toolError(err: unknown, log: Logger): CallToolResult {
  const httpError = toHttpError(err);
  if (httpError.code === 'internal_error') log.error({ err }, 'MCP tool call failed');
  const field = httpError.extra.field === undefined ? '' : `, field ${httpError.extra.field}`;
  return {
    isError: true,
    content: [{ type: 'text', text: `${httpError.message} (${httpError.code}${field})` }],
    structuredContent: httpError.body(),
  };
}

interface Located {
  pageStart?: number;
  pageEnd?: number;
  section?: string[];
}

/** "p. 3–4 · Install › Linux": where a passage sits, for text an agent reads (a top heading that is the title omitted). */
function where(p: Located, title: string): string {
  const parts: string[] = [];
  if (p.pageStart !== undefined) {
    parts.push(p.pageEnd !== undefined && p.pageEnd !== p.pageStart ? `p. ${p.pageStart}–${p.pageEnd}` : `p. ${p.pageStart}`);
  }
  const section = p.section?.[0] === title ? p.section.slice(1) : p.section;
  if (section && section.length > 0) parts.push(section.join(' › '));
  return parts.join(' · ');
}

function searchText(hits: ReadonlyArray<Located & { passageId: string; title: string; text: string; score: number }>): string {
  if (hits.length === 0) return 'no passages matched';
  return hits
    .map((h, i) => {
      const place = where(h, h.title);
      return `[${i + 1}] ${h.title}${place ? ` (${place})` : ''} — passage ${h.passageId}, score ${h.score.toFixed(3)}\n${h.text}`;
    })
    .join('\n\n');
}

function answerText(answer: {
  answer: string;
  citations: ReadonlyArray<Located & { passageId: string; title: string; attention: number }>;
}): string {
  const sources = answer.citations.map((c, i) => {
    const place = where(c, c.title);
    return `[${i + 1}] ${c.title}${place ? ` (${place})` : ''} — passage ${c.passageId}, ${(c.attention * 100).toFixed(0)}% of the attention`;
  });
  return sources.length === 0 ? answer.answer : `${answer.answer}\n\nSources:\n${sources.join('\n')}`;
}

function documentText(doc: DocumentView): string {
  const passages = doc.passages.map((p) => {
    const place = where(p, doc.title);
    return `[${p.passageId}${place ? ` · ${place}` : ''}]\n${p.text}`;
  });
  return `# ${doc.title}\n\n${passages.join('\n\n')}`;
}

interface ListCursor {
  /** The collection to go on with, and the document list's own cursor in it. */
  collection: string;
  after?: string;
}

const encodeCursor = (cursor: ListCursor): string => Buffer.from(JSON.stringify(cursor), 'utf8').toString('base64url');

function decodeCursor(raw: string): ListCursor {
  try {
    const value = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as Partial<ListCursor>;
    if (typeof value.collection === 'string' && (value.after === undefined || typeof value.after === 'string')) {
      return value.after === undefined ? { collection: value.collection } : { collection: value.collection, after: value.after };
    }
  } catch {
    // Refused below like any other cursor this server did not give out.
  }
  throw new McpError(ErrorCode.InvalidParams, 'cursor: not a cursor this server gave out; list from the start without one');
}

/**
 * Documents as resources: listed page by page across the caller's collections (a collection may hold millions, so
 * the SDK's one-shot listing is replaced by a paged one), and read as Markdown with the passages' places.
 */
function registerDocumentResources(server: McpServer, deps: McpDeps, caller: McpCaller): void {
  const { state } = deps;
  server.registerResource(
    'document',
    new ResourceTemplate(DOCUMENT_URI_TEMPLATE, { list: undefined }),
    { title: 'Document', description: 'An ingested document: its title and its passages.', mimeType: 'text/markdown' },
    async (uri) => {
      const match = DOCUMENT_URI.exec(uri.href);
      if (!match) throw new McpError(ErrorCode.InvalidParams, `not a document URI: use ${DOCUMENT_URI_TEMPLATE}`);
      const collection = match[1]!;
      let id: string;
      try {
        id = decodeURIComponent(match[2]!);
      } catch {
        throw new McpError(ErrorCode.InvalidParams, 'the document id in the URI is not valid percent-encoded UTF-8');
      }
      if (!collectionNameSchema.safeParse(collection).success || !mayUse(caller, collection)) {
        throw new McpError(ErrorCode.InvalidParams, `no collection "${collection}" this client may read`);
      }
      let doc: DocumentView | undefined;
      try {
        doc = await ready(state).getDocument(id, { collection });
      } catch (err) {
        throw new McpError(ErrorCode.InvalidParams, toHttpError(err).message);
      }
      // -32002: the protocol's "resource not found".
      if (!doc) throw new McpError(-32002, `no document "${id}" in collection "${collection}"`);
      return { contents: [{ uri: uri.href, mimeType: 'text/markdown', text: documentText(doc) }] };
    },
  );
  server.server.removeRequestHandler('resources/list');
  server.server.setRequestHandler(ListResourcesRequestSchema, async (request) => {
    const backend = ready(state);
    const names = (await backend.listCollections())
      .map((c) => c.name)
      .filter((name) => mayUse(caller, name))
      .sort();
    const cursor = request.params?.cursor === undefined ? undefined : decodeCursor(request.params.cursor);
    let index = cursor === undefined ? 0 : names.indexOf(cursor.collection);
    if (index === -1)
      throw new McpError(ErrorCode.InvalidParams, `cursor: collection "${cursor!.collection}" is gone; list from the start`);
    let after = cursor?.after;
    const resources: Array<{ uri: string; name: string; title: string; mimeType: string }> = [];
    while (index < names.length && resources.length < RESOURCE_PAGE) {
      const collection = names[index]!;
      const page = await backend.listDocuments({
        collection,
        ...(after === undefined ? {} : { after }),
        limit: RESOURCE_PAGE - resources.length,
      });
      for (const d of page.documents)
        resources.push({ uri: documentUri(collection, d.id), name: d.id, title: d.title, mimeType: 'text/markdown' });
      if (page.next !== undefined) {
        after = page.next;
      } else {
        index++;
        after = undefined;
      }
    }
    if (index >= names.length) return { resources };
    return {
      resources,
      nextCursor: encodeCursor(after === undefined ? { collection: names[index]! } : { collection: names[index]!, after }),
    };
  });
}
