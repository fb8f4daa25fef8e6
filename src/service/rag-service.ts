import type { AppConfig } from '../config/index.js';
import { titleWithSection, type IngestSummary, type SourceDocument } from '../ingest/index.js';
import type { FidReader, AnswerResult, SamplingOptions } from '../reader/index.js';
import { passageLocation } from '../retrieval/index.js';
import type { CollectionManifest, ListDocumentsOptions, Metadata, VerifyReport } from '../store/index.js';
import { citationsFrom } from './citations.js';
import type { Collections, NewCollection, OpenCollection } from './collections.js';
import type { ServiceDiagnostics } from './diagnostics.js';
import { CollectionProtectedError, ReadOnlyIndexError, ServiceError } from './errors.js';
import { UploadParser } from './file-uploads.js';
import { syncFolder } from './folder-sync.js';
import { hitView, retrievalTimings } from './hits.js';
import type { DeleteResult, DocumentInput, DocumentWriteStatus, IndexWriter } from './index-writer.js';
import { retrieve, type RerankerSlot } from './reranking.js';
import type {
  AskHooks,
  AskOutcome,
  AskParams,
  BulkRunOptions,
  CollectionScope,
  CollectionSummary,
  DocumentList,
  DocumentView,
  OfflineStart,
  SamplingParams,
  SearchOutcome,
  SearchParams,
  ServiceStats,
  SyncSummary,
  UploadedDocumentFile,
} from './types.js';

export type { ServiceLog } from './log.js';
/**
 * What the REST API, the CLIs and the evaluations call: search, answers, documents and collections. Built by
 * `openSystem` (compose.ts); its parts stay inside, so an eval measures exactly what a client of /v1/ask gets.
 */
export class RagService {
  /** Parses uploads off the event loop; its thread starts with the first upload. */
  private readonly uploads: UploadParser;

  constructor(
    private readonly config: AppConfig,
    private readonly collections: Collections,
    private readonly reader: FidReader | undefined,
    /** Benchmark and test measurements, kept off the facade's API (see diagnostics.ts). */
    readonly diagnostics: ServiceDiagnostics,
    /** The cross-encoder for `rerank` requests, loaded on first use (see reranking.ts). */
    readonly reranker: RerankerSlot,
    /** Set when the start fell back to the bundled reader (no model configured, the default ones out of reach). */
    readonly offline?: OfflineStart,
  ) {
    this.uploads = new UploadParser(config.documents.upload, config.ingest.ocr);
  }

  /** The collection unscoped calls address. */
  get defaultCollection(): string {
    return this.config.defaultCollection;
  }

  /** How the reader attributes answers to passages (decided, and logged, when it was loaded). */
  get attributionMethod(): AnswerResult['attribution'] | undefined {
    return this.reader?.attributionMethod;
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
      return Promise.reject(
        new CollectionProtectedError(`the default collection "${name}" cannot be deleted (the unscoped routes use it)`),
      );
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
        results: hits.map((h) => hitView(h, 'score')),
        timings: { ...retrievalTimings(timings), totalMs: performance.now() - started },
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

    const passages = hits.map((h) => hitView(h, 'retrievalScore'));
    const retrieval = { retrieveMs, ...retrievalTimings(timings) };
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
        timings: { ...retrieval, encodeMs: 0, decodeMs: 0, totalMs: performance.now() - started, onnxMs: 0 },
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

    const cited = citationsFrom(passages, result.passageScores, rc.citationShare, result.answer);
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
        ...retrieval,
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
    return this.useForWriting(options, (c) => this.writerOf(c).upsert(docs, options.signal));
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
    const outcomes = await this.uploads.read(files, metadata, options.signal);
    const inputs = outcomes.filter((o): o is DocumentInput => 'text' in o);
    const written = inputs.length > 0 ? await this.upsertDocuments(inputs, options) : [];
    const byId = new Map(written.map((w) => [w.id, w]));
    return outcomes.map((o) => ('text' in o ? byId.get(o.id)! : o));
  }

  deleteDocument(id: string, options: CollectionScope & { signal?: AbortSignal } = {}): Promise<DeleteResult> {
    return this.useForWriting(options, (c) => this.writerOf(c).delete(id, options.signal));
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
    return this.useFor(options, (c) => this.bulkOf(c, options).ingestPaths(paths, options));
  }

  /** A bulk run over documents in memory or streamed (eval corpora). */
  ingestDocuments(docs: Iterable<SourceDocument> | AsyncIterable<SourceDocument>, options: BulkRunOptions): Promise<IngestSummary> {
    return this.useFor(options, (c) => this.bulkOf(c, options).ingestDocuments(docs, options));
  }

  /**
   * Makes the collection mirror a folder: its documents are added or updated, and documents an earlier sync of the
   * same folder wrote whose files are gone are deleted — nothing else is. A dry run reads every file and reports the
   * same outcomes and deletions without writing.
   */
  syncFolder(folder: string, options: BulkRunOptions): Promise<SyncSummary> {
    const read = { ocr: this.config.ingest.ocr };
    return this.useFor(options, async (c) => syncFolder(c.store, options.dryRun ? c.planner : this.writerOf(c), folder, options, read));
  }

  /** Removes documents in one transaction (the ingest CLI's --delete); unknown ids are reported as errors. */
  deleteDocuments(ids: string[], options: CollectionScope = {}): Promise<IngestSummary> {
    return this.useForWriting(options, (c) => this.writerOf(c).deleteMany(ids));
  }

  async stats(options: CollectionScope = {}): Promise<ServiceStats> {
    return this.use(options, async (c) => {
      const s = await c.store.stats();
      return {
        collection: c.name,
        documents: s.documents,
        passages: s.passages,
        indexBytes: s.bytes,
        hnsw: { live: s.hnswLive, pending: s.pending },
        models: { embed: c.store.embedModel, reader: this.config.readerModel },
        writable: this.collections.writable,
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
    await this.uploads.close();
    await this.collections.closeAll();
  }

  private use<T>(scope: CollectionScope, work: (c: OpenCollection) => Promise<T>): Promise<T> {
    return this.collections.use(scope.collection ?? this.defaultCollection, work);
  }

  /** For operations that write: the collection's writer is taken (its lock, for an on-demand server) first. */
  private useForWriting<T>(scope: CollectionScope, work: (c: OpenCollection) => Promise<T>): Promise<T> {
    return this.collections.useForWriting(scope.collection ?? this.defaultCollection, work);
  }

  /** Bulk runs write unless they are dry runs, which read and need no writer. */
  private useFor<T>(options: BulkRunOptions, work: (c: OpenCollection) => Promise<T>): Promise<T> {
    return options.dryRun ? this.use(options, work) : this.useForWriting(options, work);
  }

  /** A dry run reads only: it goes to the planner, which needs no writer lock. */
  private bulkOf(c: OpenCollection, options: BulkRunOptions): Pick<IndexWriter, 'ingestPaths' | 'ingestDocuments'> {
    return options.dryRun ? c.planner : this.writerOf(c);
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
