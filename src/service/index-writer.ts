import PQueue from 'p-queue';
import type { ChunkOptions, SourceDocument, TextLayout } from '../ingest/index.js';
import { deleteDocuments, ingestDocuments } from '../ingest/index.js';
import type { Embedder } from '../models/index.js';
import type { IndexStore, Metadata } from '../store/index.js';
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
  chunk: ChunkOptions;
  embedBatchSize: number;
  maxQueued: number;
  checkpointEveryPassages: number;
  checkpointIdleMs: number;
  log?: { info(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
}

/**
 * The ingest pipeline saves the HNSW graph at the end of every run. For the CLI that is right; for a server taking one
 * small batch per request it would rewrite the whole graph each time (about 180 ms per 25k 384-d passages, blocking
 * searches meanwhile). This view of the store leaves checkpoints to the writer's policy; every other member is the
 * real store's. Skipping them is safe because every acknowledged passage is committed to SQLite with its vector, and
 * opening the index re-adds passages the saved graph lacks.
 */
function withCheckpointsDeferred(store: IndexStore): IndexStore {
  return new Proxy(store, {
    get(target, property) {
      if (property === 'checkpoint') return () => false;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/**
 * The pipeline chunks each document synchronously, and an iteration over an array never leaves the microtask queue:
 * a large batch would hold the event loop for its whole chunking. Handing documents over one macrotask apart lets
 * requests run in between, and stops a cancelled write early.
 */
async function* oneMacrotaskEach<T>(items: T[], signal: AbortSignal | undefined): AsyncGenerator<T> {
  for (const item of items) {
    await new Promise((resolve) => setImmediate(resolve));
    signal?.throwIfAborted();
    yield item;
  }
}

/**
 * The index's single writer inside the server: writes run one at a time in arrival order, each batch is embedded first
 * and then committed as one SQLite transaction plus its HNSW additions (synchronously, so no search in this process
 * ever sees part of a batch), and the graph file is saved by a policy instead of after every request.
 */
export class IndexWriter {
  private readonly queue = new PQueue({ concurrency: 1 });
  private readonly pipelineStore: IndexStore;
  private changedSinceCheckpoint = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private meanWriteMs = 1000;
  private closed = false;

  constructor(
    private readonly store: IndexStore,
    private readonly embedder: Embedder,
    private readonly options: IndexWriterOptions,
  ) {
    this.pipelineStore = withCheckpointsDeferred(store);
  }

  /** Writes waiting plus the one being applied. */
  get depth(): number {
    return this.queue.size + this.queue.pending;
  }

  upsert(docs: DocumentInput[], signal?: AbortSignal): Promise<DocumentWriteStatus[]> {
    return this.enqueue(() => this.applyUpsert(docs, signal), signal);
  }

  delete(id: string, signal?: AbortSignal): Promise<DeleteResult> {
    return this.enqueue(async () => {
      const summary = deleteDocuments([id], this.pipelineStore);
      this.noteChanges(summary.passagesRemoved);
      return { deleted: summary.deleted > 0, passagesRemoved: summary.passagesRemoved };
    }, signal);
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

  private async enqueue<T>(task: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    if (this.closed) throw new WriteCancelledError(new Error('the index writer is closed'));
    if (this.queue.pending > 0 && this.queue.size >= this.options.maxQueued) {
      const waves = this.queue.size + 1;
      throw new WriteQueueFullError(Math.min(60, Math.max(1, Math.ceil((waves * this.meanWriteMs) / 1000))));
    }
    return (await this.queue.add(async () => {
      if (signal?.aborted) throw new WriteCancelledError(signal.reason);
      const started = performance.now();
      try {
        return await task();
      } finally {
        this.meanWriteMs = 0.8 * this.meanWriteMs + 0.2 * (performance.now() - started);
      }
    })) as T;
  }

  private async applyUpsert(docs: DocumentInput[], signal: AbortSignal | undefined): Promise<DocumentWriteStatus[]> {
    const ids = docs.map((d) => d.id);
    const errors = new Map<string, string>();
    for (const doc of docs) if (doc.text.trim() === '') errors.set(doc.id, 'text is empty: there is nothing to index');
    const before = this.store.documentStates(ids);

    const sources: SourceDocument[] = docs
      .filter((d) => !errors.has(d.id))
      .map((d) => ({ id: d.id, title: d.title ?? '', text: d.text, metadata: d.metadata ?? {}, origin: { path: d.id }, ...(d.layout ? { layout: d.layout } : {}) }));
    let summary;
    try {
      summary = await ingestDocuments(oneMacrotaskEach(sources, signal), {
        store: this.pipelineStore,
        embedder: new YieldingEmbedder(this.embedder, this.options.embedBatchSize, signal),
        chunk: this.options.chunk,
        progress: false,
        // One flush for the whole request: one transaction, so readers see all of the batch or none of it.
        batchPassages: Number.MAX_SAFE_INTEGER,
        checkpointEveryPassages: Number.MAX_SAFE_INTEGER,
        onError: (e) => errors.set(e.path, e.message),
      });
    } catch (err) {
      // The only commit is the final flush, after all embedding: a cancellation seen here changed nothing.
      if (signal?.aborted) throw new WriteCancelledError(signal.reason);
      throw err;
    }
    this.noteChanges(summary.passagesAdded + summary.passagesRemoved);

    const after = this.store.documentStates(ids);
    return docs.map((doc): DocumentWriteStatus => {
      const error = errors.get(doc.id);
      if (error !== undefined) return { id: doc.id, status: 'error', error };
      const was = before.get(doc.id);
      const now = after.get(doc.id);
      const passages = this.store.getDocument(doc.id)?.passages ?? 0;
      if (!was) return { id: doc.id, status: 'added', passages };
      const same = now !== undefined && now.contentHash === was.contentHash && now.chunking === was.chunking;
      return { id: doc.id, status: same ? 'unchanged' : 'updated', passages };
    });
  }

  private noteChanges(passages: number): void {
    if (passages === 0) return;
    this.changedSinceCheckpoint += passages;
    if (this.changedSinceCheckpoint >= this.options.checkpointEveryPassages) {
      this.checkpoint('changes');
      return;
    }
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.closed) return;
      void this.queue.add(async () => this.checkpoint('idle'));
    }, this.options.checkpointIdleMs);
    // A pending idle checkpoint must not keep the process alive; close() saves the graph anyway.
    this.idleTimer.unref();
  }

  private checkpoint(reason: 'changes' | 'idle'): void {
    if (this.closed) return;
    clearTimeout(this.idleTimer);
    const started = performance.now();
    try {
      const written = this.store.checkpoint();
      const changed = this.changedSinceCheckpoint;
      this.changedSinceCheckpoint = 0;
      if (written) this.options.log?.info({ reason, changedPassages: changed, ms: Math.round(performance.now() - started) }, 'HNSW graph saved');
    } catch (err) {
      // The graph stays in memory and every passage is in SQLite; the next checkpoint or close() tries again.
      this.options.log?.error({ err }, 'HNSW checkpoint failed');
    }
  }
}
