import {
  deleteDocuments,
  ingestDocuments,
  ingestPaths,
  type CheckpointPolicy,
  type IngestEmbedder,
  type IngestError,
  type IngestSummary,
  type ProgressMode,
  type SourceDocument,
  type TextLayout,
  type WriteSettings,
} from '../ingest/index.js';
import type { Metadata, PassageStore } from '../store/index.js';
import { yieldToEventLoop } from '../common/yield.js';
import { AdmissionQueue, QueueFullError } from './admission-queue.js';
import { WriteCancelledError, WriteQueueFullError } from './errors.js';
import { YieldingEmbedder } from './yielding-embedder.js';

export interface DocumentInput {
  id: string;
  title?: string;
  text: string;
  metadata?: Metadata;
  /** Pages and headings, for documents read from files (uploads). */
  layout?: TextLayout;
}

export type DocumentWriteState = 'added' | 'updated' | 'unchanged' | 'error';

export interface DocumentWriteStatus {
  id: string;
  status: DocumentWriteState;
  /** Passages the document has after the write. */
  passages?: number;
  error?: string;
}

export interface DeleteResult {
  deleted: boolean;
  passagesRemoved: number;
}

export interface IndexWriterOptions {
  /**
   * For bulk runs (CLI, evals, first-start ingest): bounded batches, checkpoints every N passages and at the end.
   * Requests use the same chunking, embedding and rules, but commit each request as one transaction and leave
   * checkpoints to the policy below.
   */
  bulk: WriteSettings;
  /** Passages embedded between two yields to other requests while a request's write runs. */
  embedBatchSize: number;
  maxQueued: number;
  /** Request writes: save the graph after this many changed passages, or when writes pause for checkpointIdleMs. */
  checkpointEveryPassages: number;
  checkpointIdleMs: number;
  log?: { info(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
}

export interface BulkIngestOptions {
  progress: ProgressMode;
  onError?: (error: IngestError) => void;
  /** This run only: cut documents differently from the collection's chunking. */
  chunk?: WriteSettings['chunk'];
  /** Decide outcomes without writing (`ingest --dry-run`). */
  dryRun?: boolean;
}

/** The ingest pipeline's options for one bulk run over a collection: its write settings, this run's overrides. */
export function bulkRunOptions(settings: WriteSettings, store: PassageStore, embedder: IngestEmbedder, options: BulkIngestOptions) {
  return {
    ...settings,
    ...(options.chunk ? { chunk: options.chunk } : {}),
    store,
    embedder,
    progress: options.progress,
    onError: options.onError,
    dryRun: options.dryRun,
  };
}

/** A request's write is one transaction; the graph is saved by the writer's own policy across requests. */
const PER_REQUEST: CheckpointPolicy = { everyPassages: Number.POSITIVE_INFINITY, atEnd: false };

/**
 * The pipeline chunks each document synchronously, and an iteration over an array never leaves the microtask queue:
 * a large batch would hold the event loop for its whole chunking. Handing documents over one macrotask apart lets
 * requests run in between, and stops a cancelled write early.
 */
async function* oneMacrotaskEach<T>(items: T[], signal: AbortSignal | undefined): AsyncGenerator<T> {
  for (const item of items) {
    await yieldToEventLoop();
    signal?.throwIfAborted();
    yield item;
  }
}

/**
 * The single writer of one open collection. Every write (REST requests, CLI and eval runs, first-start ingest) goes
 * through the ingest pipeline from here, one at a time in arrival order, so the same document gets the same outcome
 * whoever sends it. A request's batch is embedded first and then committed as one transaction, which the store makes
 * visible all at once; bulk runs commit in bounded batches.
 */
export class IndexWriter {
  /** One write at a time; a full queue refuses requests with a Retry-After from measured write times. */
  private readonly queue: AdmissionQueue;
  private changedSinceCheckpoint = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly store: PassageStore,
    private readonly embedder: IngestEmbedder,
    private readonly options: IndexWriterOptions,
  ) {
    this.queue = new AdmissionQueue(1, options.maxQueued);
  }

  /** Writes waiting plus the one being applied. */
  get depth(): number {
    return this.queue.depth;
  }

  /** One request's documents: all committed together (or none), one status per input document. */
  upsert(docs: DocumentInput[], signal?: AbortSignal): Promise<DocumentWriteStatus[]> {
    return this.enqueue(() => this.applyUpsert(docs, signal), signal);
  }

  delete(id: string, signal?: AbortSignal): Promise<DeleteResult> {
    return this.enqueue(async () => {
      const summary = await deleteDocuments([id], this.store, PER_REQUEST);
      await this.noteChanges(summary.passagesRemoved);
      return { deleted: summary.deleted > 0, passagesRemoved: summary.passagesRemoved };
    }, signal);
  }

  /** A bulk run over files and folders (CLI). */
  ingestPaths(paths: string[], options: BulkIngestOptions): Promise<IngestSummary> {
    return this.enqueue(() => ingestPaths(paths, this.bulkOptions(options)), undefined, false);
  }

  /** A bulk run over documents given in memory or streamed (evals, first-start corpus). */
  ingestDocuments(docs: Iterable<SourceDocument> | AsyncIterable<SourceDocument>, options: BulkIngestOptions): Promise<IngestSummary> {
    return this.enqueue(() => ingestDocuments(docs, this.bulkOptions(options)), undefined, false);
  }

  /** A bulk delete (CLI): one transaction, checkpointed at the end. */
  deleteMany(ids: string[]): Promise<IngestSummary> {
    return this.enqueue(() => deleteDocuments(ids, this.store, this.options.bulk.checkpoint), undefined, false);
  }

  /** Resolves when every accepted write has been applied or refused. */
  drain(): Promise<void> {
    return this.queue.onIdle();
  }

  /** Stops the idle checkpoint timer; the store's own close() saves what is left. */
  close(): void {
    this.closed = true;
    clearTimeout(this.idleTimer);
  }

  private bulkOptions(options: BulkIngestOptions) {
    return bulkRunOptions(this.options.bulk, this.store, this.embedder, options);
  }

  /** Requests are bounded by `maxQueued`; bulk runs are always admitted and count in the backlog requests wait for. */
  private async enqueue<T>(task: () => Promise<T>, signal: AbortSignal | undefined, bounded = true): Promise<T> {
    if (this.closed) throw new WriteCancelledError(new Error('the index writer is closed'));
    try {
      return await this.queue.run(task, { signal, bounded });
    } catch (err) {
      if (err instanceof QueueFullError) throw new WriteQueueFullError(err.retryAfterSeconds);
      // Cancelled while it waited: it never started.
      if (signal?.aborted && err === signal.reason) throw new WriteCancelledError(signal.reason);
      throw err;
    }
  }

  private async applyUpsert(docs: DocumentInput[], signal: AbortSignal | undefined): Promise<DocumentWriteStatus[]> {
    const sources: SourceDocument[] = docs.map((d) => ({
      id: d.id,
      title: d.title ?? '',
      text: d.text,
      metadata: d.metadata ?? {},
      origin: { path: d.id },
      ...(d.layout ? { layout: d.layout } : {}),
    }));
    let summary: IngestSummary;
    try {
      summary = await ingestDocuments(oneMacrotaskEach(sources, signal), {
        ...this.options.bulk,
        store: this.store,
        embedder: new YieldingEmbedder(this.embedder, this.options.embedBatchSize, signal),
        progress: false,
        // One transaction for the whole request: readers see all of the batch or none of it.
        batchPassages: Number.POSITIVE_INFINITY,
        checkpoint: PER_REQUEST,
      });
    } catch (err) {
      // The only commit is the final flush, after all embedding: a cancellation seen here changed nothing.
      if (signal?.aborted) throw new WriteCancelledError(signal.reason);
      throw err;
    }
    await this.noteChanges(summary.passagesAdded + summary.passagesRemoved);
    return summary.outcomes.map((o): DocumentWriteStatus => {
      if (o.status === 'error' || o.status === 'deleted') return { id: o.id, status: 'error', error: o.reason };
      return { id: o.id, status: o.status, passages: o.passages };
    });
  }

  private async noteChanges(passages: number): Promise<void> {
    if (passages === 0) return;
    this.changedSinceCheckpoint += passages;
    if (this.changedSinceCheckpoint >= this.options.checkpointEveryPassages) {
      await this.checkpoint('changes');
      return;
    }
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.closed) return;
      void this.queue.run(() => this.checkpoint('idle'), { bounded: false });
    }, this.options.checkpointIdleMs);
    // A pending idle checkpoint must not keep the process alive; close() saves the graph anyway.
    this.idleTimer.unref();
  }

  private async checkpoint(reason: 'changes' | 'idle'): Promise<void> {
    if (this.closed) return;
    clearTimeout(this.idleTimer);
    const started = performance.now();
    try {
      const written = await this.store.checkpoint();
      const changed = this.changedSinceCheckpoint;
      this.changedSinceCheckpoint = 0;
      if (written)
        this.options.log?.info({ reason, changedPassages: changed, ms: Math.round(performance.now() - started) }, 'HNSW graph saved');
    } catch (err) {
      // The graph stays in memory and every passage is in SQLite; the next checkpoint or close() tries again.
      this.options.log?.error({ err }, 'HNSW checkpoint failed');
    }
  }
}
