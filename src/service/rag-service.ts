import type { AppConfig } from '../config/index.js';
import {
  assertSyncFolder,
  ParserThread,
  fileToDocument,
  folderDocuments,
  ownedDocuments,
  removedSince,
  titleWithSection,
  UnreadableFileError,
  FileLimitError,
  type FolderWalk,
} from '../ingest/index.js';
import type { IngestError, IngestSummary, ProgressMode, SourceDocument, ChunkOptions, FileFormat, FileParseOptions } from '../ingest/index.js';
import type { Embedder } from '../models/index.js';
import type { FidReader, AnswerResult, FusionMode, SamplingOptions } from '../reader/index.js';
import { passageLocation, type SearchFilter, type SearchMode } from '../retrieval/index.js';
import type { CollectionManifest, ListDocumentsOptions, Metadata, StoreStats, VerifyReport } from '../store/index.js';
import type { Collections, NewCollection, OpenCollection } from './collections.js';
import { CollectionProtectedError, ReadOnlyIndexError, ServiceError } from './errors.js';
import type { DeleteResult, DocumentInput, DocumentWriteStatus, IndexWriter } from './index-writer.js';
import { retrieve, type RerankerSlot, type RerankParams } from './reranking.js';

/** Which collection a call addresses; the default collection (config `indexName`) when absent. */
export interface CollectionScope {
  collection?: string;
}

export interface SearchParams extends CollectionScope {
  query: string;
  k?: number;
  mode?: SearchMode;
  filter?: SearchFilter;
  rerank?: RerankParams;
}

/** Temperature > 0 samples (see src/reader/sampling.ts); absent or 0 decodes greedily (or with beams). */
export interface SamplingParams {
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
}

export interface AskParams extends CollectionScope, SamplingParams {
  question: string;
  k?: number;
  mode?: SearchMode;
  filter?: SearchFilter;
  fusion?: FusionMode;
  rerank?: RerankParams;
  maxNewTokens?: number;
  numBeams?: number;
  /** Not exposed over HTTP: benchmarks force a fixed answer length with it. */
  minNewTokens?: number;
  /** Retrieve with this text instead of the question (chat folds earlier user turns into it). */
  retrievalQuery?: string;
}

export interface AskOutcome {
  answer: string;
  /** `attention`: the passage's share of the cross-attention; `score`: that share renormalised over the cited passages. */
  citations: Array<{ passageId: string; docId: string; title: string; score: number; attention: number } & PassageLocation>;
  passages: Array<{ passageId: string; docId: string; title: string; text: string; retrievalScore: number; rerankScore?: number; attention: number } & PassageLocation>;
  tokenAttention: AnswerResult['tokenAttention'];
  attribution: AnswerResult['attribution'];
  fusion: FusionMode;
  model: string;
  /** Generated tokens, EOS included. */
  tokens: number;
  /** Encoder tokens the reader read (all passages' inputs); 0 without passages. */
  promptTokens: number;
  /** 'stop': the model ended the answer (or there was nothing to read); 'length': maxNewTokens cut it off. */
  finishReason: 'stop' | 'length';
  /**
   * `embedMs` + `searchMs` (inside `retrieveMs`) and `onnxMs` are for metrics and benchmarks, not for API clients;
   * `rerankMs` (also inside `retrieveMs`) is there when the passages were reranked.
   */
  timings: {
    retrieveMs: number;
    embedMs: number;
    searchMs: number;
    rerankMs?: number;
    encodeMs: number;
    decodeMs: number;
    totalMs: number;
    onnxMs: number;
  };
}

export interface SearchOutcome {
  /** `score`: the retrieval score; `rerankScore` (with rerank): the cross-encoder's, which orders the results. */
  results: Array<{ passageId: string; docId: string; title: string; text: string; score: number; rerankScore?: number } & PassageLocation>;
  timings: { embedMs: number; searchMs: number; rerankMs?: number; totalMs: number };
}

/** Page range and heading path of a passage, when its document has them. */
export type PassageLocation = ReturnType<typeof passageLocation>;

/** One uploaded file: its name (the document id), its format and its bytes. */
export interface UploadedDocumentFile {
  name: string;
  format: FileFormat;
  bytes: Uint8Array;
}

export interface DocumentList {
  documents: Array<{ id: string; title: string; metadata: Metadata }>;
  /** Pass as `after` for the next page; absent on the last page. */
  next?: string;
}

export interface DocumentView {
  id: string;
  title: string;
  metadata: Metadata;
  passages: Array<{ passageId: string; text: string } & PassageLocation>;
}

export interface ServiceStats {
  /** The collection's name (kept under its historical key too). */
  index: string;
  collection: string;
  documents: number;
  passages: number;
  /** Bytes the collection occupies on disk (SQLite with its WAL, HNSW graph, manifest). */
  indexBytes: number;
  hnsw: { live: number; pending: number };
  models: { embed: string; reader: string };
  writable: boolean;
  /** PostgreSQL deployment: how far this replica has applied the collection's change log. */
  replication?: StoreStats['replication'];
}

export interface CollectionSummary {
  name: string;
  embedModel: string;
  dim: number;
  chunk?: { maxTokens: number; overlapTokens: number };
  createdAt: string;
}

export interface AskHooks {
  signal?: AbortSignal;
  onToken?: (token: { id: number; text: string; index: number }) => void;
}

export interface BulkRunOptions extends CollectionScope {
  progress: ProgressMode;
  onError?: (error: IngestError) => void;
  /** This run only: cut documents differently from the collection's chunking. */
  chunk?: ChunkOptions;
  /** Decide outcomes (and, for a sync, the deletions) without writing. */
  dryRun?: boolean;
}

/** A folder sync: the ingest summary of the folder's documents plus the documents removed (or, dry, to remove). */
export interface SyncSummary extends IngestSummary {
  removed: string[];
}

export type { ServiceLog } from './log.js';

/**
 * What the REST API, the CLIs and the evaluations call: search, answers, documents and collections. Built by
 * `openSystem` (compose.ts); its parts stay inside, so an eval measures exactly what a client of /v1/ask gets.
 */
export class RagService {
  /** Started by the first upload; its worker is replaced when an upload's parse is stopped. */
  private fileParser: ParserThread | undefined;

  constructor(
    private readonly config: AppConfig,
    private readonly collections: Collections,
    private readonly reader: FidReader | undefined,
    private readonly embedders: () => Embedder[],
    /** The cross-encoder for `rerank` requests, loaded on first use (see reranking.ts). */
    readonly reranker: RerankerSlot,
  ) {}

  /** The collection unscoped calls address. */
  get defaultCollection(): string {
    return this.config.indexName;
  }

  /** How the reader attributes answers to passages (decided, and logged, when it was loaded). */
  get attributionMethod(): AnswerResult['attribution'] | undefined {
    return this.reader?.attributionMethod;
  }

  /** Milliseconds the embedding models have spent inside onnxruntime run() so far (benchmarks). */
  get embedOnnxMs(): number {
    return this.embedders().reduce((sum, e) => sum + e.onnxRunMs, 0);
  }

  /** Collections open right now, and the most open at once (bounded by `collections.maxOpen`). */
  get openCollections(): { open: number; peak: number; max: number } {
    return { open: this.collections.openCount, peak: this.collections.peakOpen, max: this.config.collections.maxOpen };
  }

  // ---------------------------------------------------------------- collections

  async listCollections(): Promise<CollectionSummary[]> {
    return (await this.collections.list()).map(({ name, manifest }) => summarize(name, manifest));
  }

  async hasCollection(name: string): Promise<boolean> {
    return (await this.collections.describe(name)) !== undefined;
  }

  async createCollection(name: string, spec: NewCollection = {}): Promise<CollectionSummary> {
    return summarize(name, await this.collections.create(name, spec));
  }

  /** Resolves false if there was no such collection. */
  deleteCollection(name: string): Promise<boolean> {
    if (name === this.defaultCollection) {
      return Promise.reject(new CollectionProtectedError(`the default collection "${name}" cannot be deleted (the unscoped routes use it)`));
    }
    return this.collections.drop(name);
  }

  // ---------------------------------------------------------------- search and answers

  search(params: SearchParams, options: { signal?: AbortSignal } = {}): Promise<SearchOutcome> {
    return this.use(params, async (c) => {
      const started = performance.now();
      const k = params.k ?? this.config.retrieval.defaultK;
      const query = { k, mode: params.mode, filter: params.filter, rerank: params.rerank };
      const { hits, timings } = await retrieve(c.retriever, this.reranker, params.query, query, options.signal);
      return {
        results: hits.map((h) => ({
          passageId: h.passageId,
          docId: h.docId,
          title: h.title,
          text: h.text,
          score: h.score,
          ...(h.rerankScore !== undefined && { rerankScore: h.rerankScore }),
          ...passageLocation(h),
        })),
        timings: {
          embedMs: timings.embedMs,
          searchMs: timings.searchMs,
          ...(timings.rerankMs !== undefined && { rerankMs: timings.rerankMs }),
          totalMs: performance.now() - started,
        },
      };
    });
  }

  async ask(params: AskParams, hooks: AskHooks = {}): Promise<AskOutcome> {
    const reader = this.reader;
    if (!reader) throw new ServiceError('this service was opened without a reader model');
    const started = performance.now();
    const rc = this.config.reader;
    const k = params.k ?? rc.defaultK;
    const fusion = params.fusion ?? rc.defaultFusion;
    const query = { k, mode: params.mode, filter: params.filter, rerank: params.rerank };
    const { hits, timings } = await this.use(params, (c) =>
      retrieve(c.retriever, this.reranker, params.retrievalQuery ?? params.question, query, hooks.signal),
    );
    const retrieveMs = performance.now() - started;
    hooks.signal?.throwIfAborted();

    const passages = hits.map((h) => ({
      passageId: h.passageId,
      docId: h.docId,
      title: h.title,
      text: h.text,
      retrievalScore: h.score,
      ...(h.rerankScore !== undefined && { rerankScore: h.rerankScore }),
      ...passageLocation(h),
    }));
    const retrievalTimings = {
      retrieveMs,
      embedMs: timings.embedMs,
      searchMs: timings.searchMs,
      ...(timings.rerankMs !== undefined && { rerankMs: timings.rerankMs }),
    };
    if (passages.length === 0) {
      // Nothing matched (empty collection, or a filter that excludes everything): no evidence, so no answer to cite.
      return {
        answer: '',
        citations: [],
        passages: [],
        tokenAttention: [],
        attribution: reader.attributionMethod,
        fusion,
        model: this.config.readerModel,
        tokens: 0,
        promptTokens: 0,
        finishReason: 'stop',
        timings: { ...retrievalTimings, encodeMs: 0, decodeMs: 0, totalMs: performance.now() - started, onnxMs: 0 },
      };
    }
    // The reader sees where a passage sits: its title field is the document title and the heading path.
    const readerPassages = passages.map((p) => ({ ...p, title: titleWithSection(p.title, p.section) }));
    const sampling = samplingOptions(params);
    const result: AnswerResult = await reader.answer(params.question, readerPassages, {
      fusion,
      maxNewTokens: params.maxNewTokens ?? rc.maxNewTokens,
      // A sampling request decodes one sequence, whatever the configured default beam count.
      numBeams: params.numBeams ?? (sampling ? 1 : rc.numBeams),
      minNewTokens: params.minNewTokens,
      sampling,
      lengthPenalty: rc.lengthPenalty,
      noRepeatNgramSize: rc.noRepeatNgramSize,
      signal: hooks.signal,
      onToken: hooks.onToken,
    });

    const cited = citationsFrom(passages, result.passageScores, rc.citationShare);
    return {
      answer: result.answer,
      citations: cited,
      passages: passages.map((p, i) => ({ ...p, attention: result.passageScores[i] ?? 0 })),
      tokenAttention: result.tokenAttention,
      attribution: result.attribution,
      fusion,
      model: this.config.readerModel,
      tokens: result.tokenIds.length,
      promptTokens: result.promptTokens,
      finishReason: result.tokenIds.at(-1) === reader.model.config.eos_token_id ? 'stop' : 'length',
      timings: {
        ...retrievalTimings,
        encodeMs: result.timings.encodeMs,
        decodeMs: result.timings.decodeMs,
        totalMs: performance.now() - started,
        onnxMs: result.timings.onnxMs,
      },
    };
  }

  // ---------------------------------------------------------------- documents

  /** Batch upsert through the ingest pipeline; resolves once the batch is committed (durable) and searchable. */
  upsertDocuments(docs: DocumentInput[], options: CollectionScope & { signal?: AbortSignal } = {}): Promise<DocumentWriteStatus[]> {
    return this.use(options, (c) => this.writerOf(c).upsert(docs, options.signal));
  }

  /**
   * Files (uploads) through the same readers and write path as the CLI: each file is read into a document whose id is
   * its name; one that cannot be read gets an `error` outcome with the reason, the others are written in one batch.
   * A file over the parse limits (`documents.upload`: a zip bomb, too many pages, past its time budget) fails the
   * whole request with a FileLimitError naming it, before anything is written. An aborted `signal` stops the parse
   * at once (its worker is stopped) and rejects with the signal's reason.
   */
  async upsertFiles(
    files: UploadedDocumentFile[],
    metadata: Metadata,
    options: CollectionScope & { signal?: AbortSignal } = {},
  ): Promise<DocumentWriteStatus[]> {
    const { maxParseMs, maxPdfPages, maxPdfInflatedBytes, maxDocxInflatedBytes, maxDocxEntries } = this.config.documents.upload;
    const limits: FileParseOptions = { maxParseMs, maxPdfPages, maxPdfInflatedBytes, maxDocxInflatedBytes, maxDocxEntries };
    // Parsed off the event loop: a large HTML or DOCX file takes seconds of synchronous work.
    this.fileParser ??= new ParserThread();
    const parser = this.fileParser;
    const outcomes: Array<DocumentWriteStatus | DocumentInput> = [];
    for (const [index, file] of files.entries()) {
      options.signal?.throwIfAborted();
      try {
        const doc = await fileToDocument(file.bytes, file.name, file.format, file.name, metadata, (b, n, f) => parser.parse(b, n, f, limits, options.signal));
        outcomes.push({ id: doc.id, title: doc.title, text: doc.text, metadata: doc.metadata, ...(doc.layout ? { layout: doc.layout } : {}) });
      } catch (err) {
        if (err instanceof FileLimitError) {
          throw new FileLimitError(`files.${index} (${JSON.stringify(file.name)}): ${err.message}`, err.status, `files.${index}`);
        }
        if (!(err instanceof UnreadableFileError)) throw err;
        outcomes.push({ id: file.name, status: 'error', error: err.message });
      }
    }
    const inputs = outcomes.filter((o): o is DocumentInput => 'text' in o);
    const written = inputs.length > 0 ? await this.upsertDocuments(inputs, options) : [];
    const byId = new Map(written.map((w) => [w.id, w]));
    return outcomes.map((o) => ('text' in o ? byId.get(o.id)! : o));
  }

  deleteDocument(id: string, options: CollectionScope & { signal?: AbortSignal } = {}): Promise<DeleteResult> {
    return this.use(options, (c) => this.writerOf(c).delete(id, options.signal));
  }

  getDocument(id: string, options: CollectionScope = {}): Promise<DocumentView | undefined> {
    return this.use(options, async (c) => {
      const doc = await c.store.getDocument(id);
      if (!doc) return undefined;
      const passages = (await c.store.passagesOfDocument(id)).map((p) => ({ passageId: p.id, text: p.text, ...passageLocation(p) }));
      return { id: doc.id, title: doc.title, metadata: doc.metadata, passages };
    });
  }

  /** One page of documents ordered by id, filtered by id prefix and/or the metadata filter language. */
  listDocuments(options: CollectionScope & ListDocumentsOptions = {}): Promise<DocumentList> {
    return this.use(options, async (c) => {
      const { collection: _collection, ...query } = options;
      const page = await c.store.listDocuments(query);
      return {
        documents: page.documents.map((d) => ({ id: d.id, title: d.title, metadata: d.metadata })),
        ...(page.next !== undefined ? { next: page.next } : {}),
      };
    });
  }

  /** A bulk run over files and folders (the ingest CLI): bounded batches, checkpoints by `ingest` config. */
  ingestPaths(paths: string[], options: BulkRunOptions): Promise<IngestSummary> {
    return this.use(options, (c) => this.writerOf(c).ingestPaths(paths, options));
  }

  /** A bulk run over documents in memory or streamed (eval corpora). */
  ingestDocuments(docs: Iterable<SourceDocument> | AsyncIterable<SourceDocument>, options: BulkRunOptions): Promise<IngestSummary> {
    return this.use(options, (c) => this.writerOf(c).ingestDocuments(docs, options));
  }

  /**
   * Makes the collection mirror a folder: its documents are added or updated, and documents an earlier sync of the
   * same folder wrote whose files are gone are deleted — nothing else is. A dry run reads every file and reports the
   * same outcomes and deletions without writing.
   */
  syncFolder(folder: string, options: BulkRunOptions): Promise<SyncSummary> {
    return this.use(options, async (c) => {
      const writer = this.writerOf(c);
      await assertSyncFolder(folder);
      const owned = await ownedDocuments(c.store, folder);
      const walk: FolderWalk = { present: new Set(), errors: [], unsupported: {} };
      const summary = await writer.ingestDocuments(folderDocuments(folder, walk, options.onError), options);
      const removed = removedSince(owned, walk.present);
      summary.errors.push(...walk.errors);
      summary.outcomes.push(...walk.errors.map((e) => ({ id: e.path, status: 'error' as const, reason: e.message })));
      summary.unsupported = walk.unsupported;
      if (removed.length > 0 && !options.dryRun) {
        const deleted = await writer.deleteMany(removed);
        summary.deleted = deleted.deleted;
        summary.passagesRemoved += deleted.passagesRemoved;
      } else if (options.dryRun) {
        summary.deleted = removed.length;
      }
      summary.outcomes.push(...removed.map((id) => ({ id, status: 'deleted' as const })));
      return { ...summary, removed };
    });
  }

  /** Removes documents in one transaction (the ingest CLI's --delete); unknown ids are reported as errors. */
  deleteDocuments(ids: string[], options: CollectionScope = {}): Promise<IngestSummary> {
    return this.use(options, (c) => this.writerOf(c).deleteMany(ids));
  }

  async stats(options: CollectionScope = {}): Promise<ServiceStats> {
    return this.use(options, async (c) => {
      const s = await c.store.stats();
      return {
        index: c.name,
        collection: c.name,
        documents: s.documents,
        passages: s.passages,
        indexBytes: s.bytes,
        hnsw: { live: s.hnswLive, pending: s.pending },
        models: { embed: c.store.embedModel, reader: this.config.readerModel },
        writable: c.writer !== undefined,
        ...(s.replication ? { replication: s.replication } : {}),
      };
    });
  }

  /** Checks the collection's structures against each other (documents, passages, BM25 rows, vectors, graph). */
  verify(options: CollectionScope = {}): Promise<VerifyReport> {
    return this.use(options, (c) => c.store.verify());
  }

  /** Write requests waiting or being applied, over all open collections. */
  get pendingWrites(): number {
    return this.collections.pendingWrites;
  }

  /** Resolves when every accepted write has been applied or refused. */
  drainWrites(): Promise<void> {
    return this.collections.drain();
  }

  /** Saves what changed and releases every collection; call drainWrites() first to finish accepted writes. */
  async close(): Promise<void> {
    await this.fileParser?.close();
    await this.collections.closeAll();
  }

  private use<T>(scope: CollectionScope, work: (c: OpenCollection) => Promise<T>): Promise<T> {
    return this.collections.use(scope.collection ?? this.defaultCollection, work);
  }

  private writerOf(c: OpenCollection): IndexWriter {
    if (!c.writer) {
      throw new ReadOnlyIndexError(
        `this server opened collection "${c.name}" read-only (server.readOnly); change documents with ` +
          '`npm run ingest`, or run the server with server.readOnly false',
      );
    }
    return c.writer;
  }
}

/** Sampling options for the reader, or undefined for greedy/beam decoding (no temperature, or temperature 0). */
function samplingOptions(params: SamplingParams): SamplingOptions | undefined {
  if (!params.temperature) return undefined;
  return { temperature: params.temperature, topP: params.topP ?? 1, topK: params.topK ?? 0, seed: params.seed };
}

function summarize(name: string, manifest: CollectionManifest): CollectionSummary {
  return {
    name,
    embedModel: manifest.embedModel,
    dim: manifest.dim,
    ...(manifest.chunk ? { chunk: manifest.chunk } : {}),
    createdAt: manifest.createdAt,
  };
}

/**
 * Passages holding at least `minShare` of the answer's cross-attention, strongest first — and always the strongest one,
 * so an answer spread thinly over many passages still names its main source. Scores are renormalised to sum to 1 over
 * the cited passages; `attention` keeps the share over all passages.
 */
export function citationsFrom(
  passages: ReadonlyArray<{ passageId: string; docId: string; title: string } & PassageLocation>,
  shares: readonly number[],
  minShare: number,
): AskOutcome['citations'] {
  const ranked = passages
    .map((p, i) => ({ passageId: p.passageId, docId: p.docId, title: p.title, ...passageLocation(p), attention: shares[i] ?? 0 }))
    .sort((a, b) => b.attention - a.attention);
  const cited = ranked.filter((c, i) => i === 0 || c.attention >= minShare);
  const total = cited.reduce((sum, c) => sum + c.attention, 0);
  return cited.map((c) => ({ ...c, score: total > 0 ? c.attention / total : 1 / cited.length }));
}
