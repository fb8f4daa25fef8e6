import type { AppConfig } from '../config/index.js';
import { effectiveChunkOptions, type ChunkOptions, type WriteSettings } from '../ingest/index.js';
import type { EmbeddingModel } from '../models/index.js';
import { Retriever } from '../retrieval/index.js';
import {
  assertCollectionName,
  EmbeddingMismatchError,
  IndexLockedError,
  CollectionDataNotFoundError,
  type CollectionInfo,
  type CollectionManifest,
  type PassageStore,
  type StoreEngine,
} from '../store/index.js';
import { CollectionEmbedder } from './collection-embedder.js';
import { CollectionExistsError, CollectionNotFoundError, IndexInconsistentError, ReadOnlyIndexError } from './errors.js';
import { IndexWriter } from './index-writer.js';
import { DryRunPlanner } from './dry-run.js';
import type { ServiceLog } from './log.js';

/**
 * One open collection: its store, a retriever and (when writable) its single writer. Its embedding model is loaded
 * when an operation first needs it (see CollectionEmbedder), not when it opens.
 */
export interface OpenCollection {
  readonly name: string;
  readonly store: PassageStore;
  readonly retriever: Retriever;
  readonly writer: IndexWriter | undefined;
  /** Dry runs: they read and never write, so they need no writer (read-only collections have one too). */
  readonly planner: DryRunPlanner;
}

interface Entry extends OpenCollection {
  users: number;
  lastUsed: number;
  closed: boolean;
  idleWaiters: Array<() => void>;
  /** On-demand writers: gives the writer back once no write came for `collections.writerIdleMs`. */
  idleRelease?: NodeJS.Timeout;
}

export interface CollectionsOptions {
  engine: StoreEngine;
  config: AppConfig;
  /** Open collections as their single writer; otherwise read-only (they follow other processes' commits). */
  writable: boolean;
  /**
   * With `writable`: open collections read-only, take the writer (and its lock) on the first write, and give it back
   * after `collections.writerIdleMs` without one. The server does, so that `npm run ingest` can write a collection
   * it serves while it is not writing it itself; the CLIs hold the writer from the start and fail early on a lock.
   */
  writerOnDemand?: boolean;
  /** Check every collection's structures against each other when it is opened; refuse an inconsistent one. */
  verify: boolean;
  /** The embedder of a model, loaded once per process; called only by operations that need the model. */
  embedderFor(model: string): Promise<EmbeddingModel>;
  log?: ServiceLog;
}

export interface NewCollection {
  /** Default: the configured embedding model. */
  embedModel?: string;
  /** Default: the configured chunking. */
  chunk?: ChunkOptions;
}

/**
 * The collections of one engine, opened on first use and kept open up to `collections.maxOpen`: when more are open,
 * the least recently used ones that no request is using are closed (their writer lock released, graph saved). Work
 * on a collection runs inside `use()`, which keeps it open meanwhile, so a bound never closes a store under a request.
 */
export class Collections {
  /** Open collections. */
  private readonly open = new Map<string, Entry>();
  /** Collections being opened (or created); every caller asking meanwhile shares the one opening. */
  private readonly opening = new Map<string, Promise<Entry>>();
  /** Collections being closed; opening one again waits for its writer lock to be released. */
  private readonly closing = new Map<string, Promise<void>>();
  /** Collections verified since this process started: reopening one the bound closed does not verify it again. */
  private readonly verified = new Set<string>();
  /** Collections being deleted: new requests find them gone at once. */
  private readonly dropping = new Set<string>();
  /** Read-only collections taking their writer; reads go on meanwhile on the read-only store. */
  private readonly upgrading = new Map<string, Promise<Entry>>();
  private peak = 0;

  constructor(private readonly options: CollectionsOptions) {}

  /** Collections open (or opening) right now. */
  get openCount(): number {
    return this.open.size + this.opening.size;
  }

  /** The most collections that were open at once since start. */
  get peakOpen(): number {
    return this.peak;
  }

  get writable(): boolean {
    return this.options.writable;
  }

  list(): Promise<CollectionInfo[]> {
    return this.options.engine.listCollections();
  }

  describe(name: string): Promise<CollectionManifest | undefined> {
    assertCollectionName(name);
    return this.options.engine.describeCollection(name);
  }

  /** Runs `work` with the collection open; throws CollectionNotFoundError if it does not exist. */
  use<T>(name: string, work: (collection: OpenCollection) => Promise<T>): Promise<T> {
    return this.run(name, false, work);
  }

  /**
   * Like `use`, with the collection's writer (`writer` set) when this process may write: an on-demand collection
   * takes its writer lock now, and a refusal (another process writes it) names the holder.
   */
  useForWriting<T>(name: string, work: (collection: OpenCollection) => Promise<T>): Promise<T> {
    return this.run(name, this.options.writable, work);
  }

  private async run<T>(name: string, withWriter: boolean, work: (collection: OpenCollection) => Promise<T>): Promise<T> {
    const entry = await this.acquire(name, withWriter);
    try {
      return await work(entry);
    } catch (err) {
      // The collection was dropped under an open store by another process (a PostgreSQL replica): forget it here.
      if (err instanceof CollectionDataNotFoundError && !entry.closed) {
        entry.closed = true;
        if (this.open.get(name) === entry) this.open.delete(name);
        void this.closeEntry(entry);
        throw new CollectionNotFoundError(name);
      }
      throw err;
    } finally {
      this.release(entry);
    }
  }

  /**
   * Creates a collection with its manifest (embedding model, dimension, HNSW parameters, chunking) and leaves it
   * open. Refused when this process opens collections read-only.
   */
  async create(name: string, spec: NewCollection = {}): Promise<CollectionManifest> {
    assertCollectionName(name);
    if (!this.options.writable)
      throw new ReadOnlyIndexError('this server opens its collections read-only (server.readOnly); it cannot create one');
    const { engine } = this.options;
    await this.closing.get(name);
    if (this.open.has(name) || this.opening.has(name) || (await engine.describeCollection(name))) throw new CollectionExistsError(name);
    const entry = await this.opened(name, async () => {
      const { model, chunk } = await this.newCollectionModel(spec);
      const store = await this.openStore(name, model, { create: true, chunk, readonly: false });
      return this.entryFor(name, store, this.options.writable);
    });
    this.evictBeyondBound();
    return entry.store.manifest;
  }

  /**
   * Deletes a collection and all its data. Requests already using it finish first; later ones find it gone.
   * Resolves false if it did not exist.
   */
  async drop(name: string): Promise<boolean> {
    assertCollectionName(name);
    if (!this.options.writable)
      throw new ReadOnlyIndexError('this server opens its collections read-only (server.readOnly); it cannot delete one');
    if (this.dropping.has(name)) throw new CollectionNotFoundError(name);
    this.dropping.add(name);
    try {
      await this.opening.get(name)?.catch(() => undefined);
      await this.upgrading.get(name)?.catch(() => undefined);
      const entry = this.open.get(name);
      if (entry) {
        this.open.delete(name);
        entry.closed = true;
        if (entry.users > 0) await new Promise<void>((resolve) => entry.idleWaiters.push(resolve));
        await this.closeEntry(entry);
      }
      await this.closing.get(name);
      this.verified.delete(name);
      return await this.options.engine.dropCollection(name);
    } finally {
      this.dropping.delete(name);
    }
  }

  /** Finishes accepted writes of every open collection. */
  async drain(): Promise<void> {
    await Promise.all([...this.open.values()].map((e) => e.writer?.drain()));
  }

  /** Writes waiting or being applied, over all open collections. */
  get pendingWrites(): number {
    let total = 0;
    for (const entry of this.open.values()) total += entry.writer?.depth ?? 0;
    return total;
  }

  /** Closes every open collection (each saves its graph), then the engine; call drain() first to finish accepted writes. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.opening.values(), ...this.upgrading.values()].map((p) => p.catch(() => undefined)));
    const entries = [...this.open.values()];
    this.open.clear();
    for (const entry of entries) {
      entry.closed = true;
      await this.closeEntry(entry);
    }
    await Promise.all(this.closing.values());
    // The PostgreSQL engine holds a connection pool and a LISTEN connection.
    await this.options.engine.close();
  }

  /**
   * Runs `work` with a writer of the collection, creating it as described if it does not exist, even when this
   * process serves read-only: then a short-lived writer is opened and closed around `work` (first-start ingest).
   */
  async withWriter<T>(name: string, create: NewCollection, work: (collection: OpenCollection) => Promise<T>): Promise<T> {
    const exists = (await this.options.engine.describeCollection(name)) !== undefined;
    if (this.options.writable) {
      if (!exists) await this.create(name, create);
      return this.useForWriting(name, work);
    }
    const manifest = await this.options.engine.describeCollection(name);
    const store = manifest
      ? await this.openStore(name, { modelId: manifest.embedModel, dim: manifest.dim }, { create: false, readonly: false })
      : await this.newCollectionModel(create).then(({ model, chunk }) =>
          this.openStore(name, model, { create: true, chunk, readonly: false }),
        );
    const collection = this.entryFor(name, store, true);
    try {
      return await work(collection);
    } finally {
      await this.closeEntry(collection);
    }
  }

  // ---------------------------------------------------------------- internals

  private async acquire(name: string, withWriter: boolean): Promise<Entry> {
    assertCollectionName(name);
    for (;;) {
      if (this.dropping.has(name)) throw new CollectionNotFoundError(name);
      let entry = this.open.get(name) ?? (await (this.opening.get(name) ?? this.opened(name, () => this.openExisting(name))));
      if (withWriter && !entry.writer && !entry.closed) entry = await (this.upgrading.get(name) ?? this.upgrade(entry));
      // Closed between its opening and this continuation (evicted or dropped): open it again.
      if (entry.closed) continue;
      entry.users++;
      clearTimeout(entry.idleRelease);
      return entry;
    }
  }

  private release(entry: Entry): void {
    entry.users--;
    entry.lastUsed = performance.now();
    if (entry.users === 0) {
      for (const resolve of entry.idleWaiters.splice(0)) resolve();
      if (this.options.writerOnDemand && entry.writer && !entry.closed) this.scheduleWriterRelease(entry);
    }
    this.evictBeyondBound();
  }

  /**
   * Opens the writer of a read-only collection beside it; once open it replaces the read-only store, which closes when
   * its last request ends. When the lock is refused, the read-only store stays and only the writes fail.
   */
  private upgrade(follower: Entry): Promise<Entry> {
    const { name } = follower;
    const pending = (async () => {
      const model = { modelId: follower.store.embedModel, dim: follower.store.dim };
      const store = await this.openStore(name, model, { create: false, readonly: false });
      return this.entryFor(name, store, true);
    })();
    this.upgrading.set(name, pending);
    return pending.then(
      (entry) => {
        this.upgrading.delete(name);
        // The read-only store may have been evicted or dropped meanwhile: then so is the writer.
        if (follower.closed || this.dropping.has(name)) {
          entry.closed = true;
          void this.closeEntry(entry);
          return entry;
        }
        this.open.set(name, entry);
        this.retire(follower);
        this.options.log?.info({ collection: name }, 'collection writer opened (lock taken)');
        return entry;
      },
      (err: unknown) => {
        this.upgrading.delete(name);
        throw err;
      },
    );
  }

  /** Closes an entry that left `open` once the requests still using it end. */
  private retire(entry: Entry): void {
    entry.closed = true;
    void (async () => {
      if (entry.users > 0) await new Promise<void>((resolve) => entry.idleWaiters.push(resolve));
      await this.closeEntry(entry);
    })();
  }

  /** An on-demand writer left idle goes back to read-only: it is closed (saving its graph, freeing the lock). */
  private scheduleWriterRelease(entry: Entry): void {
    clearTimeout(entry.idleRelease);
    entry.idleRelease = setTimeout(() => {
      if (entry.closed || entry.users > 0 || (entry.writer?.depth ?? 0) > 0 || this.open.get(entry.name) !== entry) return;
      this.closeNow(entry);
      this.options.log?.info({ collection: entry.name }, 'collection writer released (idle); reads follow other writers');
    }, this.options.config.collections.writerIdleMs);
    // A pending release must not keep the process alive; closing the collection saves its graph anyway.
    entry.idleRelease.unref();
  }

  /** Registers an opening so concurrent callers share it, and the result as open. */
  private opened(name: string, open: () => Promise<Entry>): Promise<Entry> {
    // Room first, so the bound holds while this one opens (unless every open collection is in use right now).
    this.evictBeyond(this.options.config.collections.maxOpen - 1);
    const pending = (async () => {
      await this.closing.get(name);
      return open();
    })();
    this.opening.set(name, pending);
    this.peak = Math.max(this.peak, this.openCount);
    return pending.then(
      (entry) => {
        this.opening.delete(name);
        this.open.set(name, entry);
        return entry;
      },
      (err: unknown) => {
        this.opening.delete(name);
        throw err;
      },
    );
  }

  private async openExisting(name: string): Promise<Entry> {
    const manifest = await this.options.engine.describeCollection(name);
    if (!manifest) throw new CollectionNotFoundError(name);
    // The manifest says which model and dimension; the model itself loads when an operation first needs it.
    const store = await this.openStore(
      name,
      { modelId: manifest.embedModel, dim: manifest.dim },
      { create: false, readonly: !this.holdsWriters },
    );
    if (this.options.writable && store.readonly) {
      const served = await this.persistRecovery(name, store);
      return this.entryFor(name, served, !served.readonly);
    }
    return this.entryFor(name, store, this.holdsWriters);
  }

  /**
   * An on-demand collection opened read-only with passages missing from its saved graph, and no other writer: a
   * writer crashed before saving it. Opening re-added them in memory; the writer saves that now, so that no later
   * open redoes it. Returns the store to serve: the writer that saved, or the read-only one (another writer is at work).
   */
  private async persistRecovery(name: string, follower: PassageStore): Promise<PassageStore> {
    if ((await follower.stats()).pending === 0) return follower;
    let writer: PassageStore;
    try {
      writer = await this.openStore(name, { modelId: follower.embedModel, dim: follower.dim }, { create: false, readonly: false });
    } catch (err) {
      if (err instanceof IndexLockedError) return follower;
      await follower.close();
      throw err;
    }
    await follower.close();
    await writer.checkpoint();
    this.options.log?.info({ collection: name }, 'collection writer opened to save a recovered graph');
    return writer;
  }

  /** Whether collections open with their writer (otherwise read-only, taking it on demand when writable). */
  private get holdsWriters(): boolean {
    return this.options.writable && !this.options.writerOnDemand;
  }

  /** A new collection records its model's dimension and the chunking the model allows: both need the model loaded. */
  private async newCollectionModel(spec: NewCollection): Promise<{ model: EmbeddingModel; chunk: ChunkOptions }> {
    const { config } = this.options;
    const model = await this.options.embedderFor(spec.embedModel ?? config.embedModel);
    return { model, chunk: effectiveChunkOptions(model, spec.chunk ?? config.chunk) };
  }

  private async openStore(
    name: string,
    model: { modelId: string; dim: number },
    how: { create: boolean; chunk?: ChunkOptions; readonly: boolean },
  ): Promise<PassageStore> {
    const { engine, config } = this.options;
    // A held writer lock is refused by the engine with the holder (server or ingest) and what to do about each.
    const store: PassageStore = await engine.openCollection(name, {
      embedModel: model.modelId,
      dim: model.dim,
      hnsw: config.hnsw,
      ...(how.chunk ? { chunk: how.chunk } : {}),
      readonly: how.readonly,
      create: how.create,
      exactFilterThreshold: config.retrieval.exactFilterThreshold,
    });
    try {
      if (store.embedModel !== model.modelId || store.dim !== model.dim) {
        throw new EmbeddingMismatchError(store.location, store.embedModel, store.dim, model.modelId, model.dim);
      }
      // Once per process: a collection this process closed itself was consistent when it closed it.
      if (this.options.verify && !this.verified.has(name)) {
        await this.verify(store);
        this.verified.add(name);
      }
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  /**
   * Passages committed after the last graph save are legitimately missing from the saved file: opening re-added them
   * from their stored vectors, so they do not count as problems. What verify() still reports cannot be repaired here.
   */
  private async verify(store: PassageStore): Promise<void> {
    const started = performance.now();
    const report = await store.verify();
    if (!report.ok) throw new IndexInconsistentError(store.location, report.problems);
    const recovered = report.stats.pending;
    this.options.log?.info(
      { index: store.location, passages: report.stats.passages, recoveredPassages: recovered, ms: Math.round(performance.now() - started) },
      'index verified',
    );
    // Persist a crash recovery now rather than at the next checkpoint, so a second crash does not redo it.
    if (recovered > 0 && !store.readonly) await store.checkpoint();
  }

  private entryFor(name: string, store: PassageStore, withWriter: boolean): Entry {
    const { config, log } = this.options;
    const embedder = new CollectionEmbedder(store.embedModel, store.dim, store.location, this.options.embedderFor);
    const settings: WriteSettings = {
      // The manifest holds the effective options; for a collection made before it did, the pipeline applies the
      // model's budget to the configured chunking once it has to cut a document.
      chunk: store.manifest.chunk ?? config.chunk,
      embedTitle: config.ingest.embedTitle,
      batchPassages: config.ingest.batchPassages,
      checkpoint: { everyPassages: config.ingest.checkpointEveryPassages, atEnd: true },
      rules: { rejectEmptyText: config.ingest.rejectEmptyText },
      read: { ocr: config.ingest.ocr },
    };
    const writer = withWriter
      ? new IndexWriter(store, embedder, {
          bulk: settings,
          embedBatchSize: config.documents.embedBatchSize,
          maxQueued: config.documents.maxQueuedWrites,
          checkpointEveryPassages: config.documents.checkpointEveryPassages,
          checkpointIdleMs: config.documents.checkpointIdleMs,
          log,
        })
      : undefined;
    return {
      name,
      store,
      retriever: new Retriever(store, embedder, config.retrieval),
      writer,
      planner: new DryRunPlanner(store, embedder, settings),
      users: 0,
      lastUsed: performance.now(),
      closed: false,
      idleWaiters: [],
    };
  }

  /** Closes the least recently used idle collections until at most `collections.maxOpen` are open. */
  private evictBeyondBound(): void {
    this.evictBeyond(this.options.config.collections.maxOpen);
  }

  private evictBeyond(max: number): void {
    if (this.openCount <= max) return;
    const idle = [...this.open.values()].filter((e) => e.users === 0).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const entry of idle) {
      if (this.openCount <= max) break;
      this.closeNow(entry);
      this.options.log?.info({ collection: entry.name, open: this.openCount }, 'collection closed (least recently used)');
    }
  }

  /** Closes an idle open entry; opening the collection again waits for it (its writer lock released). */
  private closeNow(entry: Entry): void {
    entry.closed = true;
    clearTimeout(entry.idleRelease);
    this.open.delete(entry.name);
    const closing = this.closeEntry(entry).finally(() => {
      if (this.closing.get(entry.name) === closing) this.closing.delete(entry.name);
    });
    this.closing.set(entry.name, closing);
  }

  private async closeEntry(entry: Entry): Promise<void> {
    clearTimeout(entry.idleRelease);
    try {
      await entry.writer?.drain();
      entry.writer?.close();
      await entry.store.close();
    } catch (err) {
      // The collection is crash-safe: what its close could not save is recovered on the next open.
      this.options.log?.error({ err, collection: entry.name }, 'closing a collection failed');
    }
  }
}
