import { OpenAPIRegistry, OpenApiGeneratorV31 } from '@asteasolutions/zod-to-openapi';
import {
  askRequestSchema,
  askResponseSchema,
  errorResponseSchema,
  healthResponseSchema,
  searchRequestSchema,
  searchResponseSchema,
  type ApiLimits,
} from './schemas.js';

const errors = (codes: number[]) =>
  Object.fromEntries(
    codes.map((code) => [code, { description: 'Error', content: { 'application/json': { schema: errorResponseSchema } } }]),
  );

/** Built from the same zod schemas that validate requests. */
export function buildOpenApiDocument(limits: ApiLimits) {
  const registry = new OpenAPIRegistry();
  registry.registerPath({
    method: 'get',
    path: '/healthz',
    summary: 'Liveness: the process is up',
    responses: { 200: { description: 'Up', content: { 'application/json': { schema: healthResponseSchema } } } },
  });
  registry.registerPath({
    method: 'get',
    path: '/readyz',
    summary: 'Readiness: models loaded and index open',
    responses: {
      200: { description: 'Ready', content: { 'application/json': { schema: healthResponseSchema } } },
      503: { description: 'Not ready yet', content: { 'application/json': { schema: healthResponseSchema } } },
    },
  });
  registry.registerPath({
    method: 'get',
    path: '/openapi.json',
    summary: 'This document',
    responses: { 200: { description: 'OpenAPI 3.1 document' } },
  });
  registry.registerPath({
    method: 'post',
    path: '/v1/search',
    summary: 'Retrieve passages (dense, BM25, hybrid or exact)',
    request: { body: { required: true, content: { 'application/json': { schema: searchRequestSchema(limits) } } } },
    responses: {
      200: { description: 'Ranked passages', content: { 'application/json': { schema: searchResponseSchema } } },
      ...errors([400, 413, 415, 503]),
    },
  });
  registry.registerPath({
    method: 'post',
    path: '/v1/ask',
    summary: 'Answer a question with the fusion-in-decoder reader, citing passages by cross-attention',
    description:
      'With `stream: true` or `Accept: text/event-stream` the answer is sent as Server-Sent Events: one `token` event per ' +
      'generated token, then one `answer` event with the same body as the non-streamed response (or one `error` event).',
    request: { body: { required: true, content: { 'application/json': { schema: askRequestSchema(limits) } } } },
    responses: {
      200: {
        description: 'The answer, its citations and the passages with their attention shares',
        content: { 'application/json': { schema: askResponseSchema }, 'text/event-stream': { schema: { type: 'string' } } },
      },
      ...errors([400, 413, 415, 503, 504]),
    },
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
