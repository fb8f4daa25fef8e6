/**
 * The request and response shapes of the OpenAI-compatible chat routes (src/api/routes/chat.ts), which validate
 * requests and generate their part of /openapi.json.
 */
import { z } from 'zod';
import { answerSpanSchema, fusionModeSchema, rerankSchema, retrievalModeSchema, searchFilterSchema, type ApiLimits } from './schemas.js';

const textPartSchema = z.object({ type: z.literal('text'), text: z.string() }).strict();

const messageSchema = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
    content: z.union([z.string(), z.array(textPartSchema), z.null()]).optional(),
    name: z.string().optional(),
    // Sent back by clients replaying an assistant turn; ignored like the rest of non-user turns.
    refusal: z.string().nullable().optional(),
  })
  .strict()
  .openapi('ChatMessage');

/** The /v1/ask options a chat request can carry in its `rag` extension object. */
function ragOptionsSchema(limits: ApiLimits) {
  return z
    .object({
      k: z.number().int().min(1).max(limits.maxAskK).optional(),
      mode: retrievalModeSchema.optional(),
      filter: searchFilterSchema.optional(),
      fusion: fusionModeSchema.optional(),
      rerank: rerankSchema(limits).optional(),
      citationMarkers: z.boolean().optional().openapi({ description: 'Append `[n]` markers for the citations to the answer text.' }),
    })
    .strict()
    .openapi('ChatRagOptions');
}

export function chatRequestSchema(limits: ApiLimits) {
  return z
    .object({
      model: z.string().min(1).max(200),
      messages: z.array(messageSchema).min(1).max(200),
      max_tokens: z.number().int().min(1).max(limits.maxNewTokens).nullable().optional(),
      max_completion_tokens: z.number().int().min(1).max(limits.maxNewTokens).nullable().optional(),
      temperature: z
        .number()
        .min(0)
        .max(2)
        .nullable()
        .optional()
        .openapi({ description: 'Absent, null or 0: greedy decoding (the default).' }),
      top_p: z.number().gt(0).max(1).nullable().optional(),
      top_k: z
        .number()
        .int()
        .min(0)
        .max(1000)
        .nullable()
        .optional()
        .openapi({ description: 'Extension (as in vLLM): keep the top_k most likely tokens.' }),
      seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullable().optional(),
      n: z.number().int().nullable().optional(),
      stream: z.boolean().nullable().optional(),
      stream_options: z.object({ include_usage: z.boolean().optional() }).nullable().optional(),
      rag: ragOptionsSchema(limits).optional(),
      // Accepted and ignored: they do not change what this model does.
      user: z.string().optional(),
      metadata: z.record(z.string(), z.string()).optional(),
      store: z.boolean().nullable().optional(),
    })
    .strict()
    .openapi('ChatCompletionRequest');
}

export type ChatRequest = z.infer<ReturnType<typeof chatRequestSchema>>;

const citationSchema = z
  .object({
    index: z.number().int().openapi({ description: 'The n of the `[n]` marker (1-based).' }),
    passageId: z.string(),
    docId: z.string(),
    title: z.string(),
    text: z.string(),
    score: z.number().openapi({ description: 'Attention share renormalised over the citations (sums to 1).' }),
    attention: z.number().openapi({ description: "The passage's share of the reader's cross-attention over all passages." }),
    answerSpan: answerSpanSchema.optional().openapi({ description: 'Where the answer occurs in `text`, when it does (see AnswerSpan).' }),
  })
  .openapi('ChatCitation');

const usageSchema = z
  .object({
    prompt_tokens: z.number().int().openapi({ description: 'Encoder tokens: the question with every retrieved passage.' }),
    completion_tokens: z.number().int().openapi({ description: 'Generated tokens (EOS included).' }),
    total_tokens: z.number().int(),
  })
  .openapi('ChatUsage');

export const chatResponseSchema = z
  .object({
    id: z.string(),
    object: z.literal('chat.completion'),
    created: z.number().int(),
    model: z.string(),
    choices: z.array(
      z.object({
        index: z.number().int(),
        message: z.object({ role: z.literal('assistant'), content: z.string(), refusal: z.null() }),
        logprobs: z.null(),
        finish_reason: z.enum(['stop', 'length']),
      }),
    ),
    usage: usageSchema,
    citations: z.array(citationSchema).openapi({ description: 'Extension: the passages the answer drew on, by cross-attention.' }),
  })
  .openapi('ChatCompletion');

export const modelListSchema = z
  .object({
    object: z.literal('list'),
    data: z.array(
      z.object({
        id: z.string(),
        object: z.literal('model'),
        created: z.number().int(),
        owned_by: z.string(),
        collection: z.string().openapi({ description: 'Extension: the collection this model id answers from.' }),
      }),
    ),
  })
  .openapi('ModelList');

export const openAiErrorSchema = z
  .object({ error: z.object({ message: z.string(), type: z.string(), param: z.string().nullable(), code: z.string().nullable() }) })
  .openapi('OpenAIError');
