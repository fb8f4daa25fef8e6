import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { COLLECTION_NAME, isReservedCollectionName, RESERVED_NAME_MESSAGE } from '../common/collection-name.js';
import { OCR_LANGUAGE_CODE, ocrLanguagesProblem } from '../ingest/formats/ocr-languages.js';
import { READER_ENCODINGS } from '../models/reader-encoding.js';
import { FUSION_MODES } from '../reader/types.js';
import { SEARCH_MODES } from '../retrieval/search-mode.js';

export const API_SCOPES = ['read', 'write'] as const;
export const OCR_MODES = ['auto', 'off', 'force'] as const;
export type ApiScope = (typeof API_SCOPES)[number];

const apiKeySchema = z
  .object({
    /** Shown in logs and used as the rate-limit bucket; never the key itself. */
    name: z.string().regex(/^[A-Za-z0-9._@-]{1,64}$/, 'use 1-64 letters, digits, ".", "_", "@" or "-"'),
    sha256: z
      .string()
      .regex(/^[0-9a-fA-F]{64}$/, 'must be the 64 hex digits of the SHA-256 of the key (npm run keys prints it)')
      .transform((hex) => hex.toLowerCase()),
    scopes: z.array(z.enum(API_SCOPES)).min(1),
    /** Limits the key to these collections (403 elsewhere, including the collection list); absent: every collection. */
    collections: z
      .array(
        z
          .string()
          .regex(COLLECTION_NAME, 'a collection name: 1-64 of a-z, 0-9, "_", "-"')
          .refine((n) => !isReservedCollectionName(n), RESERVED_NAME_MESSAGE),
      )
      .min(1)
      .optional(),
  })
  .strict();

export type ApiKeyConfig = z.infer<typeof apiKeySchema>;

function uniqueKeys(keys: ApiKeyConfig[], ctx: z.RefinementCtx): void {
  const names = new Set<string>();
  const hashes = new Set<string>();
  keys.forEach((key, i) => {
    if (names.has(key.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate key name "${key.name}"` });
    if (hashes.has(key.sha256)) ctx.addIssue({ code: 'custom', path: [i, 'sha256'], message: 'the same key is configured twice' });
    names.add(key.name);
    hashes.add(key.sha256);
  });
}

/** Encoder strategies of the FiD reader (src/reader/fusion.ts); defined with the models stage. */
export { READER_ENCODINGS };
const DEFAULT_READER_ENCODING = 'per-passage';
// Measured on an idle 2-core machine with the full-size fixtures (docs/benchmarks.md, model execution): under int8 one
// thread per session answered /v1/ask faster than two (k=10 p50 619 vs 672 ms) and one text per embedding run beat
// every batching policy (81 vs 52 MS MARCO passages/s against a 2,048-token budget), and leaves the second core to a
// concurrent request.
const INTRA_OP_THREADS = 1;
const EMBED_BATCH_SIZE = 1;
const EMBED_BATCH_TOKENS = 2048;

const collectionName = () =>
  z
    .string()
    .regex(COLLECTION_NAME, 'use 1-64 lower-case letters, digits, "_" or "-"')
    .refine((n) => !isReservedCollectionName(n), RESERVED_NAME_MESSAGE);

/**
 * Every setting of the service in one typed object. Precedence: environment variables > config file > defaults,
 * so a deployment can keep a checked-in config file and still override single values per machine.
 */
export const configSchema = z.object({
  modelsDir: z
    .string()
    .default('./models')
    .describe('Local models folder, looked up first for every model name; hub downloads go to its `.hub-cache/`.'),
  embedModel: z
    .string()
    .default('Xenova/bge-small-en-v1.5')
    .describe('Embedding model: a hub id (`owner/name`) or a folder name in the models folder.'),
  readerModel: z.string().default('Xenova/flan-t5-small').describe('Reader (T5) model: a hub id or a folder name in the models folder.'),
  /** Cross-encoder for `rerank` requests; loaded on the first such request unless rerank.loadOnStart. */
  rerankModel: z
    .string()
    .default('Xenova/ms-marco-MiniLM-L-6-v2')
    .describe('Cross-encoder for `rerank` requests; loaded on the first such request unless `rerank.loadOnStart`.'),
  quantized: z.boolean().default(true).describe('Load the `_quantized` (int8) ONNX files rather than the float ones.'),
  allowRemote: z.boolean().default(true).describe('May a model missing from the models folder be downloaded from the hub.'),
  /** Hub endpoint for downloads; a company mirror can stand in for huggingface.co. */
  hubUrl: z
    .string()
    .url()
    .default('https://huggingface.co/')
    .describe('Hub endpoint for downloads; a mirror can stand in for huggingface.co.'),
  /** Overrides for embedding models that neither the known-model table nor their own files describe. */
  embedding: z
    .object({
      pooling: z
        .enum(['mean', 'cls'])
        .optional()
        .describe("Pooling of the token states; unset: from the model's sentence-transformers files or the known-model table."),
      queryPrefix: z
        .string()
        .optional()
        .describe("Text put before every query when it is embedded; unset: from the model's files or the known-model table."),
      passagePrefix: z
        .string()
        .optional()
        .describe("Text put before every passage when it is embedded; unset: from the model's files or the known-model table."),
      maxTokens: z
        .number()
        .int()
        .positive()
        .optional()
        .describe(
          "Input limit of the embedding model in tokens; unset: the tokenizer's `model_max_length` when sane, else the model config's position limit.",
        ),
      /** Texts per embedding run (sorted by length); see INTRA_OP_THREADS for the measurement behind the default. */
      batchSize: z
        .number()
        .int()
        .positive()
        .default(EMBED_BATCH_SIZE)
        .describe('Texts per embedding run (texts are sorted by length first); one text per run measured fastest (docs/benchmarks.md).'),
      /** Most tokens per embedding run, padding included, when `batchSize` > 1 (docs/benchmarks.md, embedding). */
      batchTokens: z
        .number()
        .int()
        .positive()
        .default(EMBED_BATCH_TOKENS)
        .describe('Most padded tokens (rows × longest) per embedding run when `batchSize` > 1.'),
    })
    .prefault({})
    .describe('Embedding overrides for models that neither the known-model table nor their own files describe, and how texts are batched.'),
  /**
   * onnxruntime threads of every session (embedder, encoder, decoder). intraOp: threads per operator; interOp > 1
   * runs independent operators in parallel. Defaults measured on 2 cores (docs/benchmarks.md, threads).
   */
  threads: z
    .object({
      intraOp: z
        .number()
        .int()
        .min(1)
        .max(256)
        .default(INTRA_OP_THREADS)
        .describe(
          'onnxruntime threads per operator, for every session (embedder, encoder, decoder); one measured fastest under int8 (docs/benchmarks.md).',
        ),
      interOp: z
        .number()
        .int()
        .min(1)
        .max(256)
        .default(1)
        .describe('Threads for independent operators; more than 1 switches onnxruntime to parallel execution.'),
    })
    .prefault({})
    .describe('onnxruntime threads of every session.'),
  port: z.number().int().min(0).max(65535).default(8080).describe('TCP port the API listens on.'),
  host: z.string().default('0.0.0.0').describe('Address the API listens on.'),
  indexesDir: z.string().default('./indexes').describe('Where collections live, one folder each.'),
  /** The default collection: what the unscoped routes, `ingest` and first-start ingest use. */
  defaultCollection: collectionName()
    .default('default')
    .describe(
      'The default collection: what the unscoped routes and `npm run ingest` use (the evals build collections of their own, named after the dataset and the model). Its older name `indexName` is still read.',
    ),
  corpusDir: z
    .string()
    .default('./corpus')
    .describe('Folder ingested on first start when the default collection does not exist (`server.ingestCorpusOnStart`).'),
  hnsw: z
    .object({
      M: z.number().int().min(2).default(16).describe('Links per node of the HNSW graph.'),
      efConstruction: z.number().int().min(1).default(200).describe('Candidate list size while the graph is built.'),
      /** Measured on msmarco-mini: recall@10 vs exact 0.93 at 64, 0.972 at 128, 0.981 at 200. */
      efSearch: z
        .number()
        .int()
        .min(1)
        .default(200)
        .describe('Candidate list size while searching: higher is closer to exact search and slower.'),
    })
    .prefault({})
    .describe('HNSW graph parameters of dense search.'),
  chunk: z
    .object({
      maxTokens: z.number().int().min(16).default(200).describe('Passage length in embedding-model tokens.'),
      overlapTokens: z.number().int().min(0).default(32).describe('Tokens that consecutive passages share.'),
    })
    .prefault({})
    .describe('How documents are cut into passages.'),
  /** How documents are written, by every writer alike (CLI, evals, first-start ingest, REST document API). */
  ingest: z
    .object({
      /** Passages embedded and committed per transaction by bulk writers; bounds memory on large corpora. */
      batchPassages: z
        .number()
        .int()
        .positive()
        .default(256)
        .describe('Passages embedded and committed per transaction by bulk writers (CLI, evals, first-start ingest).'),
      /** Bulk writers (CLI, evals) save the HNSW graph after this many changed passages, and at the end. */
      checkpointEveryPassages: z
        .number()
        .int()
        .positive()
        .default(20_000)
        .describe('Bulk writers save the HNSW graph after this many changed passages, and at the end.'),
      /** Embed "title\ntext" rather than the bare passage (the stored text stays the original span). */
      embedTitle: z
        .boolean()
        .default(true)
        .describe('Embed the title and the passage together rather than the bare passage (the stored text stays the original span).'),
      /** A document whose text is empty or whitespace is an error rather than a document without passages. */
      rejectEmptyText: z
        .boolean()
        .default(true)
        .describe(
          'A document with empty or whitespace-only text is an error (for every writer, the REST API included) rather than a document without passages.',
        ),
      /**
       * OCR (tesseract.js, offline: the language data comes from npm packages) for PDF pages without a text layer and
       * for image files, by every reader of files: the ingest CLI, folder sync, first-start ingest and uploads.
       */
      ocr: z
        .object({
          mode: z
            .enum(OCR_MODES)
            .default('auto')
            .describe(
              '`auto`: OCR the PDF pages that have no text layer, and image files (.png, .jpg, .tif); `off`: never (image-only PDFs and images are refused with the reason); `force`: OCR every page, replacing the text layer.',
            ),
          languages: z
            .array(z.string().regex(OCR_LANGUAGE_CODE, 'a tesseract language code such as "eng", "deu" or "chi_sim"'))
            .min(1)
            .default(['eng'])
            .describe(
              'tesseract language of the text, e.g. `["deu"]`; its data package must be installed: `npm install --save @tesseract.js-data/<code>@1.0.0`. One language at a time.',
            ),
          /** 200 dpi read 13 pt scans with the best confidence of 150/200/300 dpi (94) and in 20 % less time than 300. */
          dpi: z
            .number()
            .int()
            .min(72)
            .max(600)
            .default(200)
            .describe('Resolution PDF pages are rendered at for OCR (a page over 25 million pixels is rendered smaller).'),
          /**
           * `npm run bench:ocr` (2 cores): 0.41 pages/s, 2.5 s per page of 30 lines on one core, so 500 pages is about
           * 20 minutes, within `maxMsPerFile`; a larger scan is more likely a mistake than a document.
           */
          maxPages: z
            .number()
            .int()
            .positive()
            .default(500)
            .describe("Pages of one file that may be OCR'd; a file needing more is refused before any is (an error for that file)."),
          maxMsPerFile: z
            .number()
            .int()
            .positive()
            .default(1_800_000)
            .describe(
              'Milliseconds the OCR of one file may take; then it is stopped and the file is refused (uploads: also `documents.upload.maxParseMs`).',
            ),
          /**
           * `npm run bench:ocr -- --workers 1` then `-- --workers 2` (2 cores, back to back): 0.41 → 0.48 pages/s, ingest
           * 52.0 → 43.4 s, CPU/wall 1.15 → 1.39. Rendering on the parser thread and one-page files keep it under 2×.
           */
          workers: z
            .number()
            .int()
            .min(1)
            .max(16)
            .default(2)
            .describe('tesseract workers (threads) reading pages side by side; each holds its own engine and language model.'),
        })
        .superRefine((ocr, ctx) => {
          // A language without its data would fail every scan one by one: say so at start-up, with the fix.
          const problem = ocr.mode === 'off' ? undefined : ocrLanguagesProblem(ocr.languages);
          if (problem) ctx.addIssue({ code: 'custom', path: ['languages'], message: problem });
        })
        .prefault({})
        .describe('OCR of PDF pages without a text layer and of image files (tesseract.js, offline).'),
    })
    .prefault({})
    .describe('How documents are written, by every writer alike (CLI, evals, first-start ingest, REST document API).'),
  retrieval: z
    .object({
      defaultK: z.number().int().positive().default(10).describe('Results of a search that names no `k`.'),
      maxK: z.number().int().positive().default(100).describe('Largest `k` a search may ask for.'),
      /** Search mode of requests that name none. */
      defaultMode: z.enum(SEARCH_MODES).default('hybrid').describe('Search mode of requests that name none.'),
      rrfK: z.number().positive().default(60).describe('Reciprocal rank fusion constant: a hit at rank r adds weight / (rrfK + r).'),
      denseWeight: z.number().min(0).default(1).describe('Weight of the dense list in hybrid fusion.'),
      bm25Weight: z.number().min(0).default(1).describe('Weight of the BM25 list in hybrid fusion.'),
      /** Hybrid fetches max(k, fusionDepth) candidates from each list before fusing. */
      fusionDepth: z
        .number()
        .int()
        .positive()
        .default(50)
        .describe('Hybrid search takes max(k, fusionDepth) candidates from each list before fusing them.'),
      /** bm25() column weights. */
      titleWeight: z.number().min(0).default(1).describe('BM25 weight of the title column.'),
      textWeight: z.number().min(0).default(1).describe('BM25 weight of the text column.'),
      /**
       * A dense-search filter admitting at most this many passages is answered by exact search over just those: a
       * graph walk that may only collect a handful of labels visits most of the graph anyway. Measured crossover on
       * 5k×384: exact wins below ~300 allowed vectors.
       */
      exactFilterThreshold: z
        .number()
        .int()
        .min(0)
        .default(256)
        .describe('A dense-search filter admitting at most this many passages is answered by exact search over just those.'),
    })
    .prefault({})
    .describe('Search defaults, limits and hybrid fusion.'),
  reader: z
    .object({
      maxInputTokens: z
        .number()
        .int()
        .positive()
        .optional()
        .describe("Encoder input limit per passage in tokens; unset: from the reader's tokenizer."),
      /** Reader input of requests that name none: one encoder pass per passage (fid) or all passages in one (concat). */
      defaultFusion: z
        .enum(FUSION_MODES)
        .default('fid')
        .describe(
          'Reader input of requests that name none: `fid` (one encoder input per passage) or `concat` (all passages in one input).',
        ),
      defaultK: z.number().int().positive().default(10).describe('Passages read for a question that names no `k`.'),
      maxK: z.number().int().positive().default(50).describe('Largest `k` a question may ask for.'),
      maxNewTokens: z.number().int().positive().default(32).describe('New tokens generated for a request that names no `maxNewTokens`.'),
      maxNewTokensLimit: z.number().int().positive().default(256).describe('Largest `maxNewTokens` a request may ask for.'),
      numBeams: z.number().int().positive().default(1).describe('Beams of a request that names none (1 = greedy).'),
      maxBeams: z.number().int().positive().default(8).describe('Largest `numBeams` a request may ask for.'),
      lengthPenalty: z.number().default(1).describe('Beam search ranks a beam by its summed log-probabilities / length^lengthPenalty.'),
      noRepeatNgramSize: z
        .number()
        .int()
        .min(0)
        .default(0)
        .describe('An n-gram of this many tokens may not repeat in an answer (0 = no ban).'),
      citationShare: z
        .number()
        .min(0)
        .max(1)
        .default(0.2)
        .describe(
          'Passages with at least this share of the cross-attention are cited (the strongest passage always is). ' +
            '0.2 is the highest share that still cites the gold passage of every answer in `npm run eval:attribution` ' +
            '(trained fact-lookup reader: 1.02 citations per answer, 98.4% of them gold; 0.15 gave 97.1%).',
        ),
      /**
       * How FiD passages go through the encoder (docs/fid-and-attribution.md): `batch` one padded batch,
       * `by-length` one batch per exact length, `per-passage` each alone, `float-encoder` one batch through the float
       * encoder file. Under int8 only `per-passage` and `float-encoder` make a passage's encoding independent of the
       * others; the default was chosen from measurements (docs/benchmarks.md, encoder strategies).
       */
      encoding: z
        .enum(READER_ENCODINGS)
        .default(DEFAULT_READER_ENCODING)
        .describe(
          'How FiD passages go through the encoder: `per-passage` (each alone), `batch` (one padded batch), `by-length` (one batch per length), `float-encoder` (the float encoder file beside an int8 decoder); see docs/fid-and-attribution.md.',
        ),
      /**
       * FiD: compute the decoder's cross-attention cache per passage (`per-passage`; under int8 a passage's keys and
       * values then do not depend on the other passages) or over the whole memory (`shared`). docs/benchmarks.md, encoder strategies.
       */
      crossCache: z
        .enum(['per-passage', 'shared'])
        .default('per-passage')
        .describe(
          "How the decoder's cross-attention cache is computed: `per-passage` (one passage at a time: under int8 a passage's keys and values then do not depend on the others) or `shared` (over the whole memory at once).",
        ),
    })
    .prefault({})
    .describe('Generation defaults and limits of the FiD reader.'),
  rerank: z
    .object({
      /** Load the cross-encoder at start-up (a missing model then stops start-up) instead of on the first rerank request. */
      loadOnStart: z
        .boolean()
        .default(false)
        .describe('Load the cross-encoder at start-up (a missing model then stops start-up) instead of on the first rerank request.'),
      /** Largest `rerank.topN` a request may ask for (also capped by retrieval.maxK). */
      maxTopN: z
        .number()
        .int()
        .positive()
        .default(100)
        .describe('Largest `rerank.topN` a request may ask for (also capped by `retrieval.maxK`).'),
      /** Most (query, passage) pairs per cross-encoder run. */
      batchSize: z.number().int().positive().default(16).describe('Most (question, passage) pairs per cross-encoder run.'),
      /**
       * Most tokens per cross-encoder run (pairs × longest, padding included). A run holds the event loop: bench:embed's
       * quiet-machine figure for bge-small (75 ms per 204-token passage, 12 layers) puts MiniLM-L6 (6 layers, same width)
       * near 0.2 ms per token, so 256 keeps a run near 50 ms; bench:rerank measured no throughput gain from larger
       * batches on CPU, and the longest run growing with the batch.
       */
      batchTokens: z
        .number()
        .int()
        .positive()
        .default(256)
        .describe(
          'Most tokens per cross-encoder run (pairs × longest, padding included): a run holds the event loop, so this bounds how long one reranking delays other requests.',
        ),
      /** Pair length limit in tokens; default from the model's tokenizer or config. */
      maxTokens: z
        .number()
        .int()
        .positive()
        .optional()
        .describe("Pair length limit in tokens; unset: from the cross-encoder's tokenizer or config."),
    })
    .prefault({})
    .describe('Cross-encoder reranking of retrieved passages (`rerank` in search, ask and chat requests).'),
  chat: z
    .object({
      /**
       * User turns folded into the retrieval query of /v1/chat/completions, newest last: 1 retrieves with the last
       * question only, 2 also with the previous user turn (so a follow-up such as "and how fast is it?" still finds
       * its subject). The reader always reads the last question alone.
       */
      retrievalTurns: z
        .number()
        .int()
        .min(1)
        .max(10)
        .default(2)
        .describe(
          'User turns of a chat joined into its retrieval query (1 = the last question only); the reader reads the last question alone.',
        ),
    })
    .prefault({})
    .describe('The OpenAI-compatible chat completions route.'),
  mcp: z
    .object({
      /**
       * Sessions of the `/mcp` endpoint held at once. Each holds a protocol server and its open streams; a new session
       * beyond the bound first closes idle ones, else gets 503.
       */
      maxSessions: z
        .number()
        .int()
        .min(1)
        .max(10_000)
        .default(64)
        .describe('MCP sessions (`/mcp`) held at once; beyond it, idle ones are closed first, else a new session gets 503.'),
      sessionIdleMs: z
        .number()
        .int()
        .min(1000)
        .default(600_000)
        .describe('An MCP session without a request for this long is closed; its client starts a new one.'),
    })
    .prefault({})
    .describe('The Model Context Protocol endpoint `/mcp` (streamable HTTP) of the server; `npm run mcp` speaks it over stdio.'),
  server: z
    .object({
      bodyLimit: z.string().default('1mb').describe('Largest request body (`POST /v1/documents` has `documents.bodyLimit`); over it: 413.'),
      maxQueryChars: z.number().int().positive().default(2000).describe('Longest query or question, in characters.'),
      generationConcurrency: z.number().int().positive().default(1).describe('Answers generated at once.'),
      generationQueueLength: z
        .number()
        .int()
        .min(0)
        .default(16)
        .describe('Answers waiting for their turn; more are refused with 503 and `Retry-After`.'),
      requestTimeoutMs: z
        .number()
        .int()
        .positive()
        .default(60_000)
        .describe('Bound of every /v1 request, receiving it included (504): answers are cancelled, writes not yet committed are dropped.'),
      ingestCorpusOnStart: z.boolean().default(true).describe('Ingest `corpusDir` on start when the default collection does not exist.'),
      /** Open the index read-only: `npm run ingest` may run beside the server, and the document API refuses writes. */
      readOnly: z
        .boolean()
        .default(false)
        .describe(
          'Open the index read-only: `npm run ingest` can run beside the server, which picks up its commits; the document API answers 409.',
        ),
      /** Check SQLite, FTS and HNSW against each other on start and refuse an inconsistent index. */
      verifyIndexOnStart: z
        .boolean()
        .default(true)
        .describe('Check SQLite, FTS5 and HNSW against each other on start; refuse an inconsistent index.'),
      /** On SIGTERM/SIGINT: in-flight requests may finish within this time, then they are cancelled. */
      shutdownTimeoutMs: z
        .number()
        .int()
        .positive()
        .default(10_000)
        .describe('On SIGTERM/SIGINT, in-flight requests may finish within this time, then they are cancelled.'),
      /** Express `trust proxy`: set it when a reverse proxy sits in front, so client IPs are right for rate limits. */
      trustProxy: z
        .union([z.boolean(), z.number().int().min(0), z.string()])
        .default(false)
        .describe('Express `trust proxy` (a boolean, a hop count or addresses), for correct client IPs behind a reverse proxy.'),
      /** Browser origins allowed to call the API (CORS); empty = no CORS headers, `["*"]` = any origin. */
      cors: z
        .object({
          origins: z
            .array(z.string().min(1))
            .default([])
            .describe('Browser origins allowed to call the API; empty: no CORS headers, `["*"]`: any origin.'),
        })
        .prefault({})
        .describe('CORS headers for browsers.'),
      /** Requests per window per API key (per client IP when auth is off) on /v1 routes; 0 turns the limit off. */
      rateLimit: z
        .object({
          windowMs: z.number().int().positive().default(60_000).describe('Length of a rate-limit window in milliseconds.'),
          max: z.number().int().min(0).default(600).describe('Requests per window; 0 turns the limit off.'),
        })
        .prefault({})
        .describe('Rate limit of /v1 routes, per API key (per client IP when auth is off).'),
    })
    .prefault({})
    .describe('The HTTP server: request limits, the answer queue, timeouts, shutdown, rate limits and CORS.'),
  /** Who may call the API. Keys are stored as SHA-256 hashes only; see `npm run keys`. */
  auth: z
    .object({
      /**
       * Unset means: off when no keys are configured (a local `npm start` just works, with a warning), except under
       * NODE_ENV=production; `false` makes keys mandatory (start-up fails without any).
       */
      disabled: z
        .boolean()
        .optional()
        .describe(
          '`true`: no auth (warned at start); `false`: keys are required; unset: off only when no keys are configured and `NODE_ENV` is not `production`.',
        ),
      keys: z
        .array(apiKeySchema)
        .default([])
        .superRefine(uniqueKeys)
        .describe(
          'API keys, `[{"name", "sha256", "scopes": ["read"] or ["read", "write"], "collections"?: ["team-a"]}]` (`npm run keys` prints an entry); `collections` limits a key to those collections (403 elsewhere). The environment variable replaces the file\'s list.',
        ),
      /** Require the `read` scope for GET /metrics too (it holds counts and latencies only, no content). */
      protectMetrics: z.boolean().default(false).describe('Require the `read` scope for `GET /metrics` too.'),
    })
    .prefault({})
    .describe('Who may call the API (docs/security.md).'),
  /** Named collections under indexesDir, opened on first use; at most `maxOpen` stay open (least recently used closes). */
  collections: z
    .object({
      maxOpen: z
        .number()
        .int()
        .positive()
        .default(8)
        .describe('Collections kept open at once; the least recently used idle one is closed when another opens.'),
      writerIdleMs: z
        .number()
        .int()
        .positive()
        .default(30_000)
        .describe(
          "The server opens collections read-only and takes a collection's writer lock on its first write; after this long without a write it gives the lock back, so `npm run ingest` can write the collection while the server keeps serving it.",
        ),
    })
    .prefault({})
    .describe('Named collections under `indexesDir`, opened on first use.'),
  /** REST document API: request limits and how the server's index writer saves its HNSW graph. */
  documents: z
    .object({
      bodyLimit: z
        .string()
        .default('10mb')
        .describe('Body limit of `POST /v1/documents` (bodies over 256 KiB are decoded and parsed on a worker thread).'),
      maxBatch: z.number().int().positive().default(100).describe('Documents per `POST /v1/documents` request.'),
      maxIdChars: z.number().int().positive().default(512).describe('Longest document id, in characters.'),
      maxTitleChars: z.number().int().positive().default(1000).describe('Longest document title, in characters.'),
      maxTextChars: z.number().int().positive().default(500_000).describe('Longest document text, in characters.'),
      /** Serialised JSON bytes of one document's metadata. */
      maxMetadataBytes: z.number().int().positive().default(8192).describe('Largest metadata of one document, as serialised JSON bytes.'),
      /** Nesting depth of one document's metadata; a flat object is depth 1. */
      maxMetadataDepth: z
        .number()
        .int()
        .positive()
        .default(4)
        .describe("Deepest nesting of one document's metadata (a flat object is depth 1)."),
      /**
       * Passages embedded between two yields to other requests while a write runs. Each embedding call blocks the
       * event loop, so a search arriving during a write waits for up to one such batch: with a bge-small-sized model
       * on 2 cores, search p95 during a write was ~0.2 s at 1, ~0.4 s at 2, ~0.7 s at 4 and ~1.4 s at 8, with no
       * measurable gain in write throughput from larger batches on CPU.
       */
      embedBatchSize: z
        .number()
        .int()
        .positive()
        .default(2)
        .describe(
          'Passages embedded between two yields to other requests while a write runs (a search arriving during a write waits for up to one such batch).',
        ),
      /** Write requests waiting behind the one being applied; more are refused with 503. */
      maxQueuedWrites: z
        .number()
        .int()
        .min(0)
        .default(16)
        .describe('Write requests waiting behind the one being applied, per collection; more are refused with 503.'),
      /**
       * Acknowledged writes are durable in SQLite at once; the HNSW graph file is rewritten only after this many
       * changed passages or when writes have paused for `checkpointIdleMs`, because every save writes the whole graph.
       */
      checkpointEveryPassages: z
        .number()
        .int()
        .positive()
        .default(5000)
        .describe('The server saves the HNSW graph file after this many changed passages (or after `checkpointIdleMs` without writes).'),
      checkpointIdleMs: z
        .number()
        .int()
        .positive()
        .default(5000)
        .describe(
          'The server saves the HNSW graph file once writes have paused for this many milliseconds (or after `checkpointEveryPassages`).',
        ),
      /**
       * `POST /v1/documents/files` (multipart): bytes per file, bytes per request, files per request; and what reading
       * one uploaded file may cost, so a zip bomb or a PDF of 20,000 pages is refused (413, or 422 past the time
       * budget) instead of taking the machine's memory or minutes of CPU.
       */
      upload: z
        .object({
          maxFileBytes: z
            .number()
            .int()
            .positive()
            .default(50 * 1024 * 1024)
            .describe('Bytes per uploaded file; over it: 413.'),
          maxRequestBytes: z
            .number()
            .int()
            .positive()
            .default(200 * 1024 * 1024)
            .describe('Bytes per upload request; over it: 413.'),
          maxFiles: z.number().int().positive().default(20).describe('Files per upload request; over it: 413.'),
          /** Milliseconds one file may parse on the parser thread before it is stopped (below server.requestTimeoutMs). */
          maxParseMs: z
            .number()
            .int()
            .positive()
            .default(30_000)
            .describe(
              'Milliseconds one file may parse on the parser thread; then it is stopped and the request answers 422 naming the file.',
            ),
          /** Pages of one PDF; text extraction costs ~5 ms of CPU per page even for one line of text. */
          maxPdfPages: z.number().int().positive().default(2000).describe('Pages of one PDF; more: 413 naming the file.'),
          /**
           * Bytes the compressed streams of one PDF that text extraction reads (content, fonts, object streams; not
           * images) may inflate to, in all: pdf.js holds each inflated stream in memory, and a book of 2,000 pages
           * has about 40 MB of them.
           */
          maxPdfInflatedBytes: z
            .number()
            .int()
            .positive()
            .default(64 * 1024 * 1024)
            .describe('Bytes the compressed streams of one PDF (not its images) may inflate to, in all; more: 413 naming the file.'),
          /**
           * Bytes the parts of one DOCX that are read (its XML; images are not read) may inflate to, in all. mammoth
           * holds about 60x its XML in memory (10 MB of document.xml peaked at +600 MB), so this bounds a DOCX near 1 GB.
           */
          maxDocxInflatedBytes: z
            .number()
            .int()
            .positive()
            .default(16 * 1024 * 1024)
            .describe('Bytes the parts of one DOCX that are read (its XML) may inflate to, in all; more: 413 naming the file.'),
          /** Entries of one DOCX archive (a Word document has a few dozen). */
          maxDocxEntries: z.number().int().positive().default(10_000).describe('Entries of one DOCX archive; more: 413 naming the file.'),
          /** OCR takes ~2.5 s per page of 30 lines (`npm run bench:ocr`): 8 pages fit in the default `maxParseMs` (30 s). */
          maxOcrPages: z
            .number()
            .int()
            .positive()
            .default(8)
            .describe("Pages of one uploaded file that may be OCR'd (when below `ingest.ocr.maxPages`); more: 413 naming the file."),
        })
        .prefault({})
        .describe('`POST /v1/documents/files` (multipart uploads): sizes and counts, and what reading one file may cost.'),
    })
    .prefault({})
    .describe('The REST document API: request limits, the write queue and how the server saves its HNSW graph.'),
  /**
   * PostgreSQL deployment: with `url` set, PostgreSQL is the source of truth shared by every replica and each replica
   * keeps a local derived index per collection under `indexesDir`; without it the embedded SQLite engine is used.
   */
  database: z
    .object({
      url: z
        .string()
        .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
        .optional()
        .describe('`postgres://…`: use the PostgreSQL deployment (docs/deployment.md); unset: the embedded SQLite engine.'),
      /** Connections per replica; a write holds one for its transaction, the change follower one more for LISTEN. */
      poolMax: z.number().int().positive().default(10).describe('Connections per replica (plus one for `LISTEN`).'),
      connectTimeoutMs: z.number().int().positive().default(5000).describe('Connect timeout in milliseconds.'),
      /** The follower polls the change log this often even without a NOTIFY (lost notifications, reconnects). */
      pollIntervalMs: z
        .number()
        .int()
        .positive()
        .default(1000)
        .describe('Change-log polling interval in milliseconds, for when no `NOTIFY` arrives.'),
      /** Changes read and applied to the local index per round trip while catching up. */
      applyBatchChanges: z
        .number()
        .int()
        .positive()
        .default(500)
        .describe('Changes read and applied per round trip while a replica catches up.'),
    })
    .prefault({})
    .describe('The PostgreSQL deployment: many replicas over one database.'),
  /** The offline start: what runs when no model is configured and the default (hub) models cannot be loaded. */
  offline: z
    .object({
      bundledReader: z
        .boolean()
        .optional()
        .describe(
          'When the models cannot be loaded, serve the bundled reader (`fid-squad-mini`, trained by the project on SQuAD) with BM25 ' +
            'retrieval instead of stopping. Unset: on exactly when neither `embedModel` nor `readerModel` is configured, so a ' +
            'configured model never falls back.',
        ),
      readerK: z
        .number()
        .int()
        .positive()
        .default(1)
        .describe(
          'Passages the bundled reader reads for a question that names no `k`: on the held-out SQuAD articles it scored EM 6.4% ' +
            'reading the top BM25 passage against 1.6% reading ten (docs/training.md).',
        ),
      collection: collectionName()
        .default('offline')
        .describe(
          "The offline start's default collection: its passages carry lexical vectors, not an embedding model's, so they live apart.",
        ),
    })
    .prefault({})
    .describe('The offline start: no model configured and the hub models out of reach.'),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('pino log level.'),
});

export type AppConfig = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type EnvType = 'string' | 'boolean' | 'int' | 'json';

/** Environment variable → config path. Booleans and numbers are parsed strictly so a typo is an error, not a default. */
export const ENV_KEYS: ReadonlyArray<{ env: string; key: string; type: EnvType; /** An older name, still read. */ aliasOf?: string }> = [
  { env: 'RAG_MODELS_DIR', key: 'modelsDir', type: 'string' },
  { env: 'RAG_EMBED_MODEL', key: 'embedModel', type: 'string' },
  { env: 'RAG_READER_MODEL', key: 'readerModel', type: 'string' },
  { env: 'RAG_RERANK_MODEL', key: 'rerankModel', type: 'string' },
  { env: 'RAG_QUANTIZED', key: 'quantized', type: 'boolean' },
  { env: 'RAG_THREADS', key: 'threads.intraOp', type: 'int' },
  { env: 'RAG_ALLOW_REMOTE', key: 'allowRemote', type: 'boolean' },
  { env: 'RAG_HUB_URL', key: 'hubUrl', type: 'string' },
  { env: 'PORT', key: 'port', type: 'int' },
  { env: 'HOST', key: 'host', type: 'string' },
  { env: 'RAG_INDEXES_DIR', key: 'indexesDir', type: 'string' },
  // The older name first, so that RAG_COLLECTION wins when both are set.
  { env: 'RAG_INDEX', key: 'defaultCollection', type: 'string', aliasOf: 'RAG_COLLECTION' },
  { env: 'RAG_COLLECTION', key: 'defaultCollection', type: 'string' },
  { env: 'RAG_CORPUS_DIR', key: 'corpusDir', type: 'string' },
  { env: 'RAG_LOG_LEVEL', key: 'logLevel', type: 'string' },
  { env: 'RAG_DATABASE_URL', key: 'database.url', type: 'string' },
  // Keys from the environment replace those of the config file, as every other variable does.
  { env: 'RAG_API_KEYS', key: 'auth.keys', type: 'json' },
  { env: 'RAG_AUTH_DISABLED', key: 'auth.disabled', type: 'boolean' },
];

function parseEnvValue(name: string, raw: string, type: EnvType): unknown {
  if (type === 'string') return raw;
  if (type === 'json') {
    try {
      return JSON.parse(raw) as unknown;
    } catch (err) {
      // The value may hold secrets' hashes; the parser's message is enough to find the typo.
      throw new ConfigError(`${name} is not valid JSON: ${(err as Error).message.replace(/".*"/s, '…')}`);
    }
  }
  if (type === 'boolean') {
    const v = raw.trim().toLowerCase();
    if (['true', '1', 'yes'].includes(v)) return true;
    if (['false', '0', 'no'].includes(v)) return false;
    throw new ConfigError(`${name}=${raw} is not a boolean (use true or false)`);
  }
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${name}=${raw} is not a whole number`);
  return Number(raw);
}

/** Sets `a.b.c` in a raw config object, copying the objects on the way so a file's parsed object is not shared. */
function setPath(raw: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let node = raw;
  for (const key of keys.slice(0, -1)) {
    const child = node[key];
    const copy: Record<string, unknown> = child !== null && typeof child === 'object' && !Array.isArray(child) ? { ...child } : {};
    node[key] = copy;
    node = copy;
  }
  node[keys[keys.length - 1]!] = value;
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new Error('top level must be a JSON object');
    }
    return parsed as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
}

export interface LoadConfigOptions {
  env?: NodeJS.ProcessEnv;
  /** Explicit config file; otherwise RAG_CONFIG, otherwise `rag.config.json` in `cwd` if it exists. */
  file?: string;
  cwd?: string;
  /** Programmatic overrides (tests, scripts), applied last. */
  overrides?: ConfigInput;
}

/** Config keys renamed since, still read under their older names: older name → current name. */
export const RENAMED_KEYS: Readonly<Record<string, string>> = { indexName: 'defaultCollection' };

function renameOlderKeys(raw: Record<string, unknown>, file: string | undefined): void {
  for (const [older, current] of Object.entries(RENAMED_KEYS)) {
    if (raw[older] === undefined) continue;
    if (raw[current] !== undefined && raw[current] !== raw[older]) {
      throw new ConfigError(
        `invalid configuration${file ? ` (${file})` : ''}: ${older} (the older name of ${current}) is ${JSON.stringify(raw[older])} ` +
          `but ${current} is ${JSON.stringify(raw[current])}: keep one`,
      );
    }
    raw[current] = raw[older];
    delete raw[older];
  }
}

export function loadConfig(options: LoadConfigOptions = {}): AppConfig {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const explicit = options.file ?? env.RAG_CONFIG;
  const file = explicit ?? (existsSync(path.join(cwd, 'rag.config.json')) ? path.join(cwd, 'rag.config.json') : undefined);
  const raw: Record<string, unknown> = file ? readConfigFile(path.resolve(cwd, file)) : {};
  renameOlderKeys(raw, file);

  for (const { env: name, key, type } of ENV_KEYS) {
    const value = env[name];
    if (value !== undefined && value !== '') setPath(raw, key, parseEnvValue(name, value, type));
  }
  Object.assign(raw, options.overrides ?? {});

  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const issues = result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new ConfigError(`invalid configuration${file ? ` (${file})` : ''}: ${issues}`);
  }
  const config = result.data;
  // Relative folders are relative to where the service was started, resolved once so later chdir cannot move them.
  config.modelsDir = path.resolve(cwd, config.modelsDir);
  config.indexesDir = path.resolve(cwd, config.indexesDir);
  config.corpusDir = path.resolve(cwd, config.corpusDir);
  // Decided here, once, so every caller sees the same answer; the server warns loudly whenever it is true.
  config.auth.disabled ??= config.auth.keys.length === 0 && env.NODE_ENV !== 'production';
  // Only the defaults may be replaced by the bundled reader: a model somebody chose must load or stop the start.
  config.offline.bundledReader ??= raw.embedModel === undefined && raw.readerModel === undefined;
  return config;
}

export function indexDir(config: AppConfig, name = config.defaultCollection): string {
  return path.join(config.indexesDir, name);
}
