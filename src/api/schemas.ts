import { extendZodWithOpenApi } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { walkJson, type JsonKey } from '../common/json-walk.js';
import { FUSION_MODES } from '../reader/types.js';
import { SEARCH_MODES } from '../retrieval/search-mode.js';
import {
  COLLECTION_NAME,
  FilterSyntaxError,
  isReservedCollectionName,
  RESERVED_NAME_MESSAGE,
  parseMetadataFilter,
  type MetadataFilter,
} from '../store/index.js';

extendZodWithOpenApi(z);

const NOT_WELL_FORMED = 'is not well-formed Unicode (it contains a lone surrogate, e.g. "\\ud800" without its pair)';

/**
 * A string that is well-formed UTF-16. A lone surrogate survives JSON.parse, but not storage: SQLite and every UTF-8
 * encoder turn it into U+FFFD, so an id holding one could be written but never found again.
 */
const wellFormed = <S extends z.ZodString>(schema: S) => schema.refine((s) => s.isWellFormed(), NOT_WELL_FORMED);

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
  /** Largest rerank.topN (rerank.maxTopN, capped by retrieval.maxK). */
  maxRerankTopN: number;
}

interface JsonStep {
  value: unknown;
  key: string | number | undefined;
  parent: JsonStep | undefined;
}

const stepPath = (step: JsonStep | undefined, last?: string): Array<string | number> => {
  const path: Array<string | number> = last === undefined ? [] : [last];
  for (let s = step; s?.key !== undefined; s = s.parent) path.unshift(s.key);
  return path;
};

/**
 * The first string in a JSON value (a key or a string value) that is not well-formed Unicode, as a path. Iterative
 * with parent links, so a hostile nesting depth costs time linear in the value's size rather than stack or copies.
 */
function illFormedPath(root: unknown): Array<string | number> | undefined {
  const pending: JsonStep[] = [{ value: root, key: undefined, parent: undefined }];
  for (let step = pending.pop(); step !== undefined; step = pending.pop()) {
    const { value } = step;
    if (typeof value === 'string') {
      if (!value.isWellFormed()) return stepPath(step);
    } else if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) pending.push({ value: value[i], key: i, parent: step });
    } else if (value !== null && typeof value === 'object') {
      const entries = Object.entries(value);
      for (const [key] of entries) if (!key.isWellFormed()) return stepPath(step, key);
      for (let i = entries.length - 1; i >= 0; i--) pending.push({ value: entries[i]![1], key: entries[i]![0], parent: step });
    }
  }
  return undefined;
}

/**
 * A JSON object passed through as parsed (never rebuilt key by key), checked by `check` once it is known to be an
 * object. Built on `unknown` rather than `custom`, so that JSON Schema generation (the MCP tools' schemas) can
 * represent it: `meta` documents it there, `openapi` in /openapi.json.
 */
function jsonObjectSchema<T extends object>(
  doc: { description: string },
  check: (value: object, ctx: z.RefinementCtx) => void,
): z.ZodType<T, unknown> {
  const documented = { type: 'object', additionalProperties: true, ...doc } as const;
  return z
    .unknown()
    .superRefine((value, ctx) => {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        ctx.addIssue({ code: 'custom', message: 'must be a JSON object' });
        return;
      }
      check(value, ctx);
    })
    .meta(documented)
    .transform((value) => value as T)
    .openapi(documented);
}

/**
 * Metadata filters are validated by the store's own parser, so the API refuses exactly what the store cannot run and
 * names the offending part (e.g. `filter.metadata.$or.1.year.$gt`). The value is passed through as parsed: rebuilding
 * it key by key could turn a `__proto__` key into a prototype and silently drop that condition.
 */
const metadataFilterSchema = jsonObjectSchema<MetadataFilter>(
  {
    description:
      'Conditions on document metadata: `{"key": value}` (type-strict equality), field operators `$eq $ne $gt $gte $lt ' +
      '$lte $in $nin $exists $not` (`$gt`… on numbers and ISO 8601 dates), logical `$and $or $not`; dotted keys ' +
      'address nested objects (`\\.` is a literal dot in a key).',
  },
  (value, ctx) => {
    const illFormed = illFormedPath(value);
    if (illFormed) {
      ctx.addIssue({ code: 'custom', path: illFormed, message: NOT_WELL_FORMED });
      return;
    }
    if (Object.keys(value).length === 0) return;
    try {
      parseMetadataFilter(value);
    } catch (err) {
      if (!(err instanceof FilterSyntaxError)) throw err;
      ctx.addIssue({ code: 'custom', path: err.path, message: err.message });
    }
  },
);

export const searchFilterSchema = z
  .object({
    docIds: z
      .array(wellFormed(z.string().min(1).max(1000)))
      .min(1)
      .max(1000)
      .optional()
      .openapi({ description: 'Only passages of these documents.' }),
    metadata: metadataFilterSchema.optional(),
  })
  .strict()
  .openapi('SearchFilter');

export const retrievalModeSchema = z.enum(SEARCH_MODES).openapi('RetrievalMode');
export const fusionModeSchema = z.enum(FUSION_MODES).openapi('FusionMode');

export function rerankSchema(limits: ApiLimits) {
  return z
    .object({
      topN: z.number().int().min(1).max(limits.maxRerankTopN).openapi({
        description: 'Candidates retrieved and scored by the cross-encoder (RAG_RERANK_MODEL); the best k are kept. Must be >= k.',
      }),
    })
    .strict()
    .openapi('Rerank');
}

/** Sampling parameters shared by /v1/ask and /v1/chat/completions (same names as OpenAI's, in camelCase here). */
export function samplingFields() {
  return {
    temperature: z
      .number()
      .min(0)
      .max(2)
      .optional()
      .openapi({ description: 'Absent or 0: greedy decoding (the default). > 0: sample from softmax(logits / temperature).' }),
    topP: z
      .number()
      .gt(0)
      .max(1)
      .optional()
      .openapi({ description: 'Nucleus sampling: keep the most likely tokens until their probability reaches topP (1 = off).' }),
    topK: z.number().int().min(0).max(1000).optional().openapi({ description: 'Keep only the topK most likely tokens (0 = off).' }),
    seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional().openapi({ description: 'Makes sampling reproducible.' }),
  };
}

/** rerank.topN below k cannot keep k passages (without k the service checks it against its default k). */
function rerankCoversK(body: { k?: number; rerank?: { topN: number } }): boolean {
  return body.rerank === undefined || body.k === undefined || body.rerank.topN >= body.k;
}

/** The fields of a search, for REST's request and the MCP `search` tool alike. */
export function searchFields(limits: ApiLimits) {
  return {
    query: wellFormed(z.string().trim().min(1).max(limits.maxQueryChars)),
    k: z.number().int().min(1).max(limits.maxSearchK).optional(),
    mode: retrievalModeSchema.optional(),
    filter: searchFilterSchema.optional(),
    rerank: rerankSchema(limits).optional(),
  };
}

/** The checks across a search's fields (zod cannot extend an object once refined, so callers add them last). */
export function withSearchRules<S extends z.ZodType<{ k?: number; rerank?: { topN: number } }>>(schema: S) {
  return schema.refine((b) => rerankCoversK(b), { path: ['rerank', 'topN'], message: 'must be at least k' });
}

export function searchRequestSchema(limits: ApiLimits) {
  return withSearchRules(z.object(searchFields(limits)).strict()).openapi('SearchRequest');
}

/** The fields of a question, for REST's request (which adds `stream`) and the MCP `ask` tool alike. */
export function askFields(limits: ApiLimits) {
  return {
    question: wellFormed(z.string().trim().min(1).max(limits.maxQueryChars)),
    k: z.number().int().min(1).max(limits.maxAskK).optional(),
    mode: retrievalModeSchema.optional(),
    filter: searchFilterSchema.optional(),
    rerank: rerankSchema(limits).optional(),
    fusion: fusionModeSchema.optional(),
    maxNewTokens: z.number().int().min(1).max(limits.maxNewTokens).optional(),
    numBeams: z.number().int().min(1).max(limits.maxBeams).optional(),
    ...samplingFields(),
  };
}

export function withAskRules<S extends z.ZodType<{ k?: number; rerank?: { topN: number }; temperature?: number; numBeams?: number }>>(
  schema: S,
) {
  return withSearchRules(schema).refine((b) => !(b.temperature && (b.numBeams ?? 1) > 1), {
    path: ['numBeams'],
    message: 'sampling (temperature > 0) needs numBeams 1',
  });
}

export function askRequestSchema(limits: ApiLimits) {
  return withAskRules(z.object({ ...askFields(limits), stream: z.boolean().optional() }).strict()).openapi('AskRequest');
}

/**
 * Where a passage sits in its document; present when the format has pages (PDF) or headings (Markdown, HTML, DOCX),
 * and how sure OCR was of its text when it was read from a scan.
 */
const passageLocationShape = {
  pageStart: z.number().int().optional().openapi({ description: 'First page of the passage (paged formats such as PDF).' }),
  pageEnd: z.number().int().optional().openapi({ description: 'Last page of the passage.' }),
  section: z.array(z.string()).optional().openapi({ description: 'Heading path, outermost first, e.g. ["Install", "Linux"].' }),
  ocrConfidence: z
    .number()
    .optional()
    .openapi({ description: "Text read by OCR: tesseract's confidence (0–100), the lowest of the pages the passage spans." }),
};

export const searchHitSchema = z
  .object({
    passageId: z.string(),
    docId: z.string(),
    title: z.string(),
    text: z.string(),
    score: z.number().openapi({ description: 'The retrieval score (see the mode).' }),
    rerankScore: z
      .number()
      .optional()
      .openapi({ description: "With rerank: the cross-encoder's relevance logit; results are ordered by it." }),
    ...passageLocationShape,
  })
  .openapi('SearchHit');

export const searchResponseSchema = z
  .object({
    results: z.array(searchHitSchema),
    timings: z.object({ embedMs: z.number(), searchMs: z.number(), rerankMs: z.number().optional(), totalMs: z.number() }),
  })
  .openapi('SearchResponse');

export const answerSpanSchema = z
  .object({
    start: z.number().int().nonnegative(),
    end: z.number().int().nonnegative(),
  })
  .openapi('AnswerSpan', {
    description:
      "Where the answer occurs in the cited passage: UTF-16 offsets into the passage's `text`, so `text.slice(start, end)` is " +
      'the quoted answer. Found ignoring case, Unicode normalisation (NFKC) and spacing around punctuation; absent when ' +
      'the answer does not occur in the passage.',
  });

export const citationSchema = z
  .object({
    passageId: z.string(),
    docId: z.string(),
    title: z.string(),
    score: z.number().openapi({ description: "The passage's attention share renormalised over the citations: citation scores sum to 1." }),
    attention: z.number().openapi({ description: "The passage's share of the decoder's cross-attention over all retrieved passages." }),
    answerSpan: answerSpanSchema.optional(),
    ...passageLocationShape,
  })
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
        rerankScore: z
          .number()
          .optional()
          .openapi({ description: "With rerank: the cross-encoder's relevance logit; passages are ordered by it." }),
        attention: z.number().openapi({ description: "Share of the decoder's cross-attention on this passage; shares sum to 1." }),
        ...passageLocationShape,
      }),
    ),
    tokenAttention: z
      .array(tokenAttentionSchema)
      .openapi({ description: 'Per answer token, the passages and passage tokens it attended to most.' }),
    attribution: z.enum(['cross-attention', 'leave-one-out']),
    fusion: fusionModeSchema,
    model: z.string(),
    timings: z.object({
      retrieveMs: z.number(),
      rerankMs: z.number().optional().openapi({ description: 'With rerank: cross-encoder scoring, included in retrieveMs.' }),
      encodeMs: z.number(),
      decodeMs: z.number(),
      totalMs: z.number(),
    }),
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

/** Limits of the document API; each is checked before anything is embedded. */
export interface DocumentLimits {
  maxBatch: number;
  maxIdChars: number;
  maxTitleChars: number;
  maxTextChars: number;
  maxMetadataBytes: number;
  maxMetadataDepth: number;
}

// Control characters in ids would corrupt logs and URLs; ids are otherwise free-form (file paths, URLs, keys).
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/**
 * Checks a parsed JSON value, walking no deeper than `maxDepth` + 1 levels (request bodies can nest 100k deep, and
 * JSON.stringify or a recursive walk of those overflows the stack). `__proto__` is refused because copying such an
 * object anywhere (a spread, a zod record) would set a prototype instead of a key. `malformed` is the path of the first
 * key or string that is not well-formed Unicode.
 */
function inspectJson(value: unknown, maxDepth: number): { tooDeep: boolean; protoKey: boolean; malformed?: JsonKey[] } {
  let protoKey = false;
  let malformed: JsonKey[] | undefined;
  const tooDeep = walkJson(value, maxDepth, (node) => {
    if (node.key === '__proto__') protoKey = true;
    if (malformed) return;
    const badKey = typeof node.key === 'string' && !node.key.isWellFormed();
    if (badKey || (typeof node.value === 'string' && !node.value.isWellFormed())) malformed = node.path();
  });
  return { tooDeep, protoKey, malformed };
}

export function documentIdSchema(limits: DocumentLimits) {
  return wellFormed(z.string().min(1).max(limits.maxIdChars))
    .refine((id) => id.trim() !== '', 'must not be blank')
    .refine((id) => !CONTROL_CHARS.test(id), 'must not contain control characters');
}

/** Passed through as parsed (not rebuilt key by key), so what is checked is exactly what is stored. */
export function metadataSchema(limits: DocumentLimits) {
  return jsonObjectSchema<Record<string, unknown>>(
    { description: 'JSON object copied onto every passage; searchable with the metadata filter language (nested keys by dotted path).' },
    (metadata, ctx) => {
      const { tooDeep, protoKey, malformed } = inspectJson(metadata, limits.maxMetadataDepth);
      if (tooDeep) {
        ctx.addIssue({ code: 'custom', message: `nests deeper than ${limits.maxMetadataDepth} levels` });
        return;
      }
      if (protoKey) ctx.addIssue({ code: 'custom', message: '"__proto__" is a reserved key' });
      if (malformed) ctx.addIssue({ code: 'custom', path: malformed, message: `key or value ${NOT_WELL_FORMED}` });
      const bytes = Buffer.byteLength(JSON.stringify(metadata), 'utf8');
      if (bytes > limits.maxMetadataBytes) {
        ctx.addIssue({ code: 'custom', message: `is ${bytes} bytes as JSON; the limit is ${limits.maxMetadataBytes}` });
      }
    },
  );
}

export function documentInputSchema(limits: DocumentLimits) {
  return z
    .object({
      id: documentIdSchema(limits),
      title: wellFormed(z.string().max(limits.maxTitleChars)).optional(),
      text: wellFormed(z.string().max(limits.maxTextChars)),
      metadata: metadataSchema(limits).optional(),
    })
    .strict()
    .openapi('DocumentInput');
}

export function upsertDocumentsRequestSchema(limits: DocumentLimits) {
  return z
    .object({
      documents: z
        .array(documentInputSchema(limits))
        .min(1)
        .max(limits.maxBatch)
        .superRefine((docs, ctx) => {
          const seen = new Set<string>();
          docs.forEach((doc, i) => {
            if (seen.has(doc.id)) ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `duplicate id "${doc.id}" in this batch` });
            seen.add(doc.id);
          });
        }),
    })
    .strict()
    .openapi('UpsertDocumentsRequest');
}

export const documentWriteStatusSchema = z
  .object({
    id: z.string(),
    status: z.enum(['added', 'updated', 'unchanged', 'error']),
    passages: z.number().int().optional().openapi({ description: 'Passages the document has after the write.' }),
    error: z.string().optional(),
  })
  .openapi('DocumentWriteStatus');

export const upsertDocumentsResponseSchema = z.object({ documents: z.array(documentWriteStatusSchema) }).openapi('UpsertDocumentsResponse');

/** Query of `GET /v1/documents`; `filter` is the metadata filter language as JSON. */
export function listDocumentsQuerySchema(limits: DocumentLimits) {
  return z
    .object({
      filter: z
        .string()
        .max(16_384)
        .optional()
        .openapi({ description: 'Metadata filter (the search filter language) as JSON, e.g. {"team":"docs","year":{"$gte":2020}}' }),
      prefix: z.string().max(limits.maxIdChars).optional().openapi({ description: 'Only ids starting with this string.' }),
      after: z.string().max(limits.maxIdChars).optional().openapi({ description: 'Paging cursor: the `next` of the previous page.' }),
      limit: z.coerce.number().int().min(1).max(1000).optional().openapi({ description: 'Page size (default 100).' }),
    })
    .strict();
}

export const documentListSchema = z
  .object({
    documents: z.array(z.object({ id: z.string(), title: z.string(), metadata: z.record(z.string(), z.unknown()) })),
    next: z.string().optional(),
  })
  .openapi('DocumentList');

export const documentViewSchema = z
  .object({
    id: z.string(),
    title: z.string(),
    metadata: z.record(z.string(), z.unknown()),
    passages: z.array(z.object({ passageId: z.string(), text: z.string(), ...passageLocationShape })),
  })
  .openapi('Document');

export const deleteDocumentResponseSchema = z
  .object({ id: z.string(), deleted: z.literal(true), passagesRemoved: z.number().int() })
  .openapi('DeleteDocumentResponse');

/** PostgreSQL deployment only: this replica's progress through the collection's change log. */
export const replicationSchema = z
  .object({
    appliedChangeId: z
      .number()
      .int()
      .openapi({ description: "Every change of the collection up to this id is in this replica's local index." }),
    headChangeId: z.number().int().openapi({ description: 'The newest change this replica knows of.' }),
    lagChanges: z.number().int(),
    lagMs: z.number().openapi({ description: 'How long the oldest change not yet applied has been known; 0 when caught up.' }),
    database: z.enum(['ok', 'unavailable']),
  })
  .openapi('Replication');

export const statsResponseSchema = z
  .object({
    collection: z.string(),
    documents: z.number().int(),
    passages: z.number().int(),
    indexBytes: z.number().int(),
    hnsw: z.object({
      live: z.number().int().openapi({ description: 'Passages searchable in the in-memory HNSW graph.' }),
      pending: z.number().int().openapi({ description: 'Passages not yet in the saved graph file (recovered from SQLite after a crash).' }),
    }),
    models: z.object({ embed: z.string(), reader: z.string() }),
    writable: z.boolean(),
    replication: replicationSchema.optional(),
  })
  .openapi('Stats');

// ---------------------------------------------------------------- collections

export const collectionNameSchema = z
  .string()
  .regex(COLLECTION_NAME, 'use 1-64 lower-case letters, digits, "_" or "-", starting with a letter or digit')
  .refine((name) => !isReservedCollectionName(name), RESERVED_NAME_MESSAGE)
  .openapi({ description: 'Collection name: `[a-z0-9][a-z0-9_-]{0,63}`.', example: 'team-docs' });

export const createCollectionRequestSchema = z
  .object({
    name: collectionNameSchema,
    embedModel: z
      .string()
      .min(1)
      .max(200)
      .regex(/^[A-Za-z0-9][A-Za-z0-9._/-]*$/, 'a model id such as "Xenova/bge-small-en-v1.5"')
      .refine((id) => !id.split('/').includes('..'), 'a model id such as "Xenova/bge-small-en-v1.5"')
      .optional()
      .openapi({ description: "Embedding model of the collection; default: the server's configured one. It must be loadable." }),
    chunk: z
      .object({
        // Above the embedding model's input limit the budget is lowered to it, as for configured chunking.
        maxTokens: z.number().int().min(16).max(100_000),
        overlapTokens: z.number().int().min(0).max(100_000),
      })
      .strict()
      .refine((c) => c.overlapTokens < c.maxTokens, { message: 'overlapTokens must be smaller than maxTokens', path: ['overlapTokens'] })
      .optional()
      .openapi({ description: "Passage budget and overlap in embedding-model tokens; default: the server's configured chunking." }),
  })
  .strict()
  .openapi('CreateCollectionRequest');

export const collectionSchema = z
  .object({
    name: z.string(),
    embedModel: z.string(),
    dim: z.number().int(),
    chunk: z.object({ maxTokens: z.number().int(), overlapTokens: z.number().int() }).optional(),
    createdAt: z.string(),
  })
  .openapi('Collection');

export const collectionsResponseSchema = z
  .object({
    default: z.string().openapi({ description: 'The collection the unscoped routes (/v1/search, …) use.' }),
    collections: z.array(collectionSchema).openapi({ description: 'The collections this API key may use.' }),
    open: z
      .object({ count: z.number().int(), peak: z.number().int(), max: z.number().int() })
      .openapi({ description: 'Collections open in this server now, the most open at once, and the bound (collections.maxOpen).' }),
  })
  .openapi('Collections');

export const deleteCollectionResponseSchema = z.object({ name: z.string(), deleted: z.literal(true) }).openapi('DeleteCollectionResponse');

export const healthResponseSchema = z.object({ status: z.string() }).passthrough().openapi('Health');

export type UpsertDocumentsRequest = z.infer<ReturnType<typeof upsertDocumentsRequestSchema>>;
export type SearchRequest = z.infer<ReturnType<typeof searchRequestSchema>>;
export type AskRequest = z.infer<ReturnType<typeof askRequestSchema>>;
export type SearchResponse = z.infer<typeof searchResponseSchema>;
export type AskResponse = z.infer<typeof askResponseSchema>;
