import { extendZodWithOpenApi } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';

extendZodWithOpenApi(z);

/**
 * The request and response shapes of the REST API. The same objects validate requests and generate /openapi.json,
 * so the published contract cannot drift from what the server accepts.
 */
export interface ApiLimits {
  maxQueryChars: number;
  maxSearchK: number;
  maxAskK: number;
  maxNewTokens: number;
  maxBeams: number;
}

const filterValue = z.union([z.string().max(1000), z.number(), z.boolean()]);

export const searchFilterSchema = z
  .object({
    docIds: z.array(z.string().min(1).max(1000)).min(1).max(1000).optional().openapi({ description: 'Only passages of these documents.' }),
    metadata: z
      .record(z.string().min(1).max(200), filterValue)
      .optional()
      .openapi({ description: 'Only passages whose document metadata has all of these key/value pairs.' }),
  })
  .strict()
  .openapi('SearchFilter');

export const retrievalModeSchema = z.enum(['dense', 'bm25', 'hybrid', 'exact']).openapi('RetrievalMode');
export const fusionModeSchema = z.enum(['fid', 'concat']).openapi('FusionMode');

export function searchRequestSchema(limits: ApiLimits) {
  return z
    .object({
      query: z.string().trim().min(1).max(limits.maxQueryChars),
      k: z.number().int().min(1).max(limits.maxSearchK).optional(),
      mode: retrievalModeSchema.optional(),
      filter: searchFilterSchema.optional(),
    })
    .strict()
    .openapi('SearchRequest');
}

export function askRequestSchema(limits: ApiLimits) {
  return z
    .object({
      question: z.string().trim().min(1).max(limits.maxQueryChars),
      k: z.number().int().min(1).max(limits.maxAskK).optional(),
      mode: retrievalModeSchema.optional(),
      filter: searchFilterSchema.optional(),
      fusion: fusionModeSchema.optional(),
      maxNewTokens: z.number().int().min(1).max(limits.maxNewTokens).optional(),
      numBeams: z.number().int().min(1).max(limits.maxBeams).optional(),
      stream: z.boolean().optional(),
    })
    .strict()
    .openapi('AskRequest');
}

export const searchHitSchema = z
  .object({
    passageId: z.string(),
    docId: z.string(),
    title: z.string(),
    text: z.string(),
    score: z.number(),
  })
  .openapi('SearchHit');

export const searchResponseSchema = z
  .object({
    results: z.array(searchHitSchema),
    timings: z.object({ embedMs: z.number(), searchMs: z.number(), totalMs: z.number() }),
  })
  .openapi('SearchResponse');

export const citationSchema = z
  .object({ passageId: z.string(), docId: z.string(), title: z.string(), score: z.number() })
  .openapi('Citation');

export const tokenAttentionSchema = z
  .object({
    token: z.string(),
    passages: z.array(
      z.object({
        passageIndex: z.number().int(),
        weight: z.number(),
        topTokens: z.array(z.object({ token: z.string(), weight: z.number() })),
      }),
    ),
  })
  .openapi('TokenAttention');

export const askResponseSchema = z
  .object({
    answer: z.string(),
    citations: z.array(citationSchema),
    passages: z.array(
      z.object({
        passageId: z.string(),
        docId: z.string(),
        title: z.string(),
        text: z.string(),
        retrievalScore: z.number(),
        attention: z.number().openapi({ description: "Share of the decoder's cross-attention on this passage; shares sum to 1." }),
      }),
    ),
    tokenAttention: z.array(tokenAttentionSchema).openapi({ description: 'Per answer token, the passages and passage tokens it attended to most.' }),
    attribution: z.enum(['cross-attention', 'leave-one-out']),
    fusion: fusionModeSchema,
    model: z.string(),
    timings: z.object({ retrieveMs: z.number(), encodeMs: z.number(), decodeMs: z.number(), totalMs: z.number() }),
  })
  .openapi('AskResponse');

export const errorResponseSchema = z
  .object({
    error: z.object({
      code: z.string(),
      message: z.string(),
      field: z.string().optional(),
      issues: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
    }),
  })
  .openapi('Error');

export const healthResponseSchema = z.object({ status: z.string() }).passthrough().openapi('Health');

export type SearchRequest = z.infer<ReturnType<typeof searchRequestSchema>>;
export type AskRequest = z.infer<ReturnType<typeof askRequestSchema>>;
export type SearchResponse = z.infer<typeof searchResponseSchema>;
export type AskResponse = z.infer<typeof askResponseSchema>;
