import { OpenAPIRegistry, OpenApiGeneratorV31 } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import {
  askRequestSchema,
  askResponseSchema,
  collectionNameSchema,
  collectionSchema,
  collectionsResponseSchema,
  createCollectionRequestSchema,
  deleteCollectionResponseSchema,
  deleteDocumentResponseSchema,
  documentViewSchema,
  errorResponseSchema,
  healthResponseSchema,
  searchRequestSchema,
  searchResponseSchema,
  statsResponseSchema,
  upsertDocumentsRequestSchema,
  upsertDocumentsResponseSchema,
  type ApiLimits,
  type DocumentLimits,
  documentListSchema,
  listDocumentsQuerySchema,
} from './schemas.js';
import { chatRequestSchema, chatResponseSchema, modelListSchema, openAiErrorSchema } from './chat-schemas.js';

const errors = (codes: number[]) =>
  Object.fromEntries(
    codes.map((code) => [code, { description: 'Error', content: { 'application/json': { schema: errorResponseSchema } } }]),
  );

const json = <T extends z.ZodType>(description: string, schema: T) => ({ description, content: { 'application/json': { schema } } });

/** Built from the same zod schemas that validate requests. */
export function buildOpenApiDocument(limits: ApiLimits, documentLimits: DocumentLimits) {
  const registry = new OpenAPIRegistry();
  const bearer = registry.registerComponent('securitySchemes', 'apiKey', {
    type: 'http',
    scheme: 'bearer',
    description: 'An API key (`npm run keys`) as a Bearer token. Keys carry the scopes `read` and/or `write`.',
  });
  const needs = (scope: 'read' | 'write') => ({ security: [{ [bearer.name]: [scope] }] });
  const documentId = z.object({ id: z.string().openapi({ description: 'Document id, URL-encoded (a "/" is %2F).' }) });

  registry.registerPath({
    method: 'get',
    path: '/healthz',
    summary: 'Liveness: the process is up',
    responses: { 200: json('Up', healthResponseSchema) },
  });
  registry.registerPath({
    method: 'get',
    path: '/readyz',
    summary: 'Readiness: models loaded and index open',
    responses: { 200: json('Ready', healthResponseSchema), 503: json('Starting, stopping or failed', healthResponseSchema) },
  });
  registry.registerPath({
    method: 'get',
    path: '/openapi.json',
    summary: 'This document',
    responses: { 200: { description: 'OpenAPI 3.1 document' } },
  });
  registry.registerPath({
    method: 'get',
    path: '/metrics',
    summary: 'Prometheus metrics (open unless auth.protectMetrics is set)',
    responses: { 200: { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } } },
  });
  // Every data route exists twice: on the default collection, and on a named one (a key limited to other
  // collections gets 403 on either).
  const collectionParam = z.object({ collection: collectionNameSchema });
  const dataScopes: Array<{ prefix: string; params: typeof collectionParam | undefined; what: string }> = [
    { prefix: '/v1', params: undefined, what: 'Default collection' },
    { prefix: '/v1/collections/{collection}', params: collectionParam, what: 'Collection' },
  ];
  for (const { prefix, params, what } of dataScopes) {
    registry.registerPath({
      method: 'post',
      path: `${prefix}/search`,
      summary: 'Retrieve passages (dense, BM25, hybrid or exact)',
      ...needs('read'),
      request: { params, body: { required: true, content: { 'application/json': { schema: searchRequestSchema(limits) } } } },
      responses: { 200: json('Ranked passages', searchResponseSchema), ...errors([400, 401, 403, 404, 413, 415, 429, 503, 504]) },
    });
    registry.registerPath({
      method: 'post',
      path: `${prefix}/ask`,
      summary: 'Answer a question with the fusion-in-decoder reader, citing passages by cross-attention',
      description:
        'With `stream: true` or `Accept: text/event-stream` the answer is sent as Server-Sent Events: one `token` event per ' +
        'generated token, then one `answer` event with the same body as the non-streamed response (or one `error` event).',
      ...needs('read'),
      request: { params, body: { required: true, content: { 'application/json': { schema: askRequestSchema(limits) } } } },
      responses: {
        200: {
          description: 'The answer, its citations and the passages with their attention shares',
          content: { 'application/json': { schema: askResponseSchema }, 'text/event-stream': { schema: { type: 'string' } } },
        },
        ...errors([400, 401, 403, 404, 413, 415, 429, 503, 504]),
      },
    });
    registry.registerPath({
      method: 'post',
      path: `${prefix}/documents`,
      summary: 'Add or replace documents (batch upsert through the ingest pipeline)',
      description:
        'The batch is chunked, embedded and committed as one transaction: searches see all of it or none of it. A 200 ' +
        'means it is durable and searchable. Writes are applied one at a time in arrival order. Unchanged documents ' +
        '(same content hash) are skipped. A document whose text is empty gets status `error`; the others are written.',
      ...needs('write'),
      request: {
        params,
        body: { required: true, content: { 'application/json': { schema: upsertDocumentsRequestSchema(documentLimits) } } },
      },
      responses: {
        200: json('Per-document status, in request order', upsertDocumentsResponseSchema),
        ...errors([400, 401, 403, 404, 409, 413, 415, 429, 503, 504]),
      },
    });
    registry.registerPath({
      method: 'get',
      path: `${prefix}/documents`,
      summary: 'List documents, filtered by id prefix and the metadata filter language, one page at a time',
      ...needs('read'),
      request: { params, query: listDocumentsQuerySchema(documentLimits) },
      responses: { 200: json('One page of documents ordered by id', documentListSchema), ...errors([400, 401, 403, 404, 429, 503]) },
    });
    registry.registerPath({
      method: 'post',
      path: `${prefix}/documents/files`,
      summary: 'Upload files (PDF, DOCX, Markdown, HTML, text) as documents',
      description:
        'multipart/form-data with one `files` part per file; the file name is the document id. An optional `metadata` ' +
        'field (a JSON object) is added to every document. Files are read like `npm run ingest` reads them (PDF pages, ' +
        'headings) and written through the same path as `POST /v1/documents`, with the same per-document outcomes; a ' +
        'file that cannot be read (encrypted or image-only PDF, not UTF-8) gets status `error` with the reason. Another ' +
        'file type is a 415 naming it; a file or request over `documents.upload` limits is a 413. Nothing is written ' +
        'for a request that fails.',
      ...needs('write'),
      request: {
        params,
        body: {
          required: true,
          content: {
            'multipart/form-data': {
              schema: {
                type: 'object',
                properties: {
                  files: { type: 'array', items: { type: 'string', format: 'binary' } },
                  metadata: { type: 'string', description: 'JSON object added to the metadata of every uploaded document' },
                },
                required: ['files'],
              },
            },
          },
        },
      },
      responses: {
        200: json('Per-document status, in upload order', upsertDocumentsResponseSchema),
        ...errors([400, 401, 403, 404, 409, 413, 415, 429, 503, 504]),
      },
    });
    registry.registerPath({
      method: 'get',
      path: `${prefix}/documents/{id}`,
      summary: 'A document with its passages',
      ...needs('read'),
      request: { params: params ? params.merge(documentId) : documentId },
      responses: { 200: json('The document', documentViewSchema), ...errors([400, 401, 403, 404, 429, 503]) },
    });
    registry.registerPath({
      method: 'delete',
      path: `${prefix}/documents/{id}`,
      summary: 'Remove a document from SQLite, FTS and HNSW',
      ...needs('write'),
      request: { params: params ? params.merge(documentId) : documentId },
      responses: { 200: json('Deleted', deleteDocumentResponseSchema), ...errors([400, 401, 403, 404, 409, 429, 503, 504]) },
    });
    registry.registerPath({
      method: 'get',
      path: `${prefix}/stats`,
      summary: `${what}: size and models`,
      ...needs('read'),
      request: { params },
      responses: { 200: json('Collection statistics', statsResponseSchema), ...errors([401, 403, 404, 429, 503]) },
    });
  }

  const openAiErrors = (codes: number[]) =>
    Object.fromEntries(
      codes.map((code) => [code, { description: 'Error (OpenAI shape)', content: { 'application/json': { schema: openAiErrorSchema } } }]),
    );
  registry.registerPath({
    method: 'post',
    path: '/v1/chat/completions',
    summary: 'OpenAI-compatible chat completion: the last user message is the question',
    description:
      'OpenAI Chat Completions wire format, for the `openai` SDKs and chat UIs. `model` is an id from `GET /v1/models` ' +
      "(`fid-rag/<collection>`): the chat is answered from that collection. The last message must be the user's; the reader reads it alone, while retrieval searches with " +
      'the last `chat.retrievalTurns` user messages joined (default 2). System and assistant messages are accepted and not ' +
      'read. `max_tokens`/`max_completion_tokens` bound the generated tokens; `temperature` (absent or 0: greedy), `top_p`, ' +
      '`top_k` and `seed` control sampling. `n` > 1, tools/functions and non-text content parts are a 400. The extension ' +
      'object `rag` takes the /v1/ask retrieval options (`k`, `mode`, `filter`, `fusion`, `rerank`) and `citationMarkers` ' +
      '(append `[n]` markers). Citations come in the top-level extension field `citations`. With `stream: true` the ' +
      'answer is sent as `chat.completion.chunk` events (`choices[0].delta`), the chunk with `finish_reason` carries ' +
      '`citations`, `stream_options.include_usage` adds a last chunk with `usage` and empty `choices`, then `data: [DONE]`. ' +
      "Errors on this route use OpenAI's error shape.",
    ...needs('read'),
    request: { body: { required: true, content: { 'application/json': { schema: chatRequestSchema(limits) } } } },
    responses: {
      200: {
        description: 'The completion, with usage and citations',
        content: { 'application/json': { schema: chatResponseSchema }, 'text/event-stream': { schema: { type: 'string' } } },
      },
      ...openAiErrors([400, 401, 403, 404, 413, 415, 429, 503, 504]),
    },
  });
  registry.registerPath({
    method: 'get',
    path: '/v1/models',
    summary: 'OpenAI-compatible model list: one model id per collection (`fid-rag/<collection>`)',
    ...needs('read'),
    responses: { 200: json('The models', modelListSchema), ...openAiErrors([401, 403, 429, 503]) },
  });

  registry.registerPath({
    method: 'get',
    path: '/v1/collections',
    summary: 'The collections this API key may use, the default one, and how many are open',
    ...needs('read'),
    responses: { 200: json('Collections', collectionsResponseSchema), ...errors([401, 403, 429, 503]) },
  });
  registry.registerPath({
    method: 'post',
    path: '/v1/collections',
    summary: 'Create a collection (its own documents, embedding model and chunking)',
    description:
      'Collections open lazily on first use; at most `collections.maxOpen` stay open (least recently used close). ' +
      'A key limited to some collections may only create those.',
    ...needs('write'),
    request: { body: { required: true, content: { 'application/json': { schema: createCollectionRequestSchema } } } },
    responses: { 201: json('Created', collectionSchema), ...errors([400, 401, 403, 409, 413, 415, 422, 429, 503]) },
  });
  registry.registerPath({
    method: 'delete',
    path: '/v1/collections/{collection}',
    summary: 'Delete a collection and all its documents (not the default one: 409)',
    ...needs('write'),
    request: { params: collectionParam },
    responses: { 200: json('Deleted', deleteCollectionResponseSchema), ...errors([400, 401, 403, 404, 409, 429, 503]) },
  });
  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'FiD RAG API',
      version: '1.0.0',
      description: 'Retrieval-augmented answers from a fusion-in-decoder reader, with cross-attention citations.',
    },
  });
}
