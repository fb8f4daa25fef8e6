import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import type {
  Bm25Options,
  CollectionInfo,
  CollectionManifest,
  DenseSearchOptions,
  DocumentInfo,
  DocumentPage,
  ListDocumentsOptions,
  OpenCollectionOptions,
  PassageStore,
  StoreEngine,
} from '../engine.js';
import { assertCollectionName } from '../collection-name.js';
import { EmbeddingMismatchError, CollectionDataNotFoundError, IndexStoreError } from '../errors.js';
import type {
  DeleteOutcome,
  DocumentState,
  DocumentWrite,
  LabelScore,
  PassageRecord,
  SearchFilter,
  StoreStats,
  VerifyReport,
  WriteOutcome,
} from '../types.js';
import * as corpus from './corpus.js';
import { createPool, redactedUrl } from './database.js';
import { migrate } from './migrations.js';
import { CHECKPOINT_FILE, CollectionReplica, type ReplicaContext, type ReplicaLog } from './replica.js';

export type EngineLog = ReplicaLog;

export interface PostgresEngineSpec {
  kind: 'postgres';
  url: string;
  /** This replica's folder for its local derived indexes (one sub-folder per collection). */
  localDir: string;
  poolMax: number;
  connectTimeoutMs: number;
  pollIntervalMs: number;
  applyBatchChanges: number;
}

/** Documents per snapshot page when a local index is built (each page is one local transaction). */
const REBUILD_PAGE_DOCUMENTS = 200;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Wakes collection followers on NOTIFY. A dedicated connection (LISTEN needs one for good); when it drops, it is
 * re-established every poll interval, and every follower is woken on reconnect since notifications were missed.
 */
class ChangeListener {
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly url: string,
    private readonly retryMs: number,
    private readonly onChange: (collection: string | undefined) => void,
  ) {}

  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const client = new pg.Client({ connectionString: this.url, application_name: 'fid-rag-listener' });
    const retry = () => {
      if (this.client === client) this.client = undefined;
      client.end().catch(() => undefined);
      if (!this.stopped && !this.timer) {
        this.timer = setTimeout(() => {
          this.timer = undefined;
          void this.connect();
        }, this.retryMs);
        this.timer.unref();
      }
    };
    client.on('error', retry);
    client.on('end', retry);
    client.on('notification', (msg) => this.onChange(msg.payload));
    try {
      await client.connect();
      await client.query(`LISTEN ${corpus.CHANGES_CHANNEL}`);
      this.client = client;
      this.onChange(undefined);
    } catch {
      retry();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.client?.end().catch(() => undefined);
  }
}

/**
 * The PostgreSQL deployment's engine: PostgreSQL holds collections, documents, passages with vectors and the change
 * log; each replica serves searches and reads from its local derived SQLite index per collection, which it keeps
 * current from the change log. Writes go to PostgreSQL and resolve once applied locally (read-your-writes).
 */
export class PostgresEngine implements StoreEngine {
  readonly kind = 'postgres';
  private readonly replicas = new Map<string, { replica: Promise<CollectionReplica>; users: number }>();
  private pollTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly spec: PostgresEngineSpec,
    private readonly pool: pg.Pool,
    private readonly ctx: ReplicaContext,
    private readonly listener: ChangeListener,
  ) {}

  static async open(spec: PostgresEngineSpec, log?: ReplicaLog): Promise<PostgresEngine> {
    const pool = createPool({ url: spec.url, max: spec.poolMax, connectTimeoutMs: spec.connectTimeoutMs });
    try {
      await migrate(pool, log);
      const ctx: ReplicaContext = {
        pool,
        deploymentId: await corpus.deploymentId(pool),
        localDir: path.resolve(spec.localDir),
        applyBatchChanges: spec.applyBatchChanges,
        rebuildPageDocuments: REBUILD_PAGE_DOCUMENTS,
        log,
      };
      // The listener's callback may run before the engine exists: `let`, not a later `const` (which would throw there).
      // eslint-disable-next-line prefer-const
      let engine: PostgresEngine | undefined;
      const listener = new ChangeListener(spec.url, spec.pollIntervalMs, (collection) => engine?.wake(collection));
      engine = new PostgresEngine(spec, pool, ctx, listener);
      await engine.removeDroppedLocalIndexes();
      await listener.start();
      engine.pollTimer = setInterval(() => engine!.wake(undefined), spec.pollIntervalMs);
      engine.pollTimer.unref();
      return engine;
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err;
    }
  }

  get location(): string {
    return redactedUrl(this.spec.url);
  }

  private wake(collection: string | undefined): void {
    for (const [name, entry] of this.replicas) {
      if (collection === undefined || collection === name)
        void entry.replica.then(
          (r) => r.wake(),
          () => undefined,
        );
    }
  }

  /** Local indexes of collections dropped while this replica was away. Only folders this deployment built go. */
  private async removeDroppedLocalIndexes(): Promise<void> {
    if (!existsSync(this.ctx.localDir)) return;
    // Staging builds and private indexes of processes that died (named `<collection>.<pid>[.<time>]`; names have no dots).
    for (const sub of ['.staging', '.private']) {
      const parent = path.join(this.ctx.localDir, sub);
      if (!existsSync(parent)) continue;
      for (const name of readdirSync(parent)) {
        const pid = Number(name.split('.')[1]);
        if (!Number.isInteger(pid) || !processAlive(pid)) rmSync(path.join(parent, name), { recursive: true, force: true });
      }
    }
    const live = new Set((await corpus.listCollections(this.pool)).map((c) => c.name));
    for (const name of readdirSync(this.ctx.localDir)) {
      const file = path.join(this.ctx.localDir, name, CHECKPOINT_FILE);
      if (live.has(name) || !existsSync(file)) continue;
      try {
        const checkpoint = JSON.parse(readFileSync(file, 'utf8')) as { deploymentId?: string };
        if (checkpoint.deploymentId === this.ctx.deploymentId) rmSync(path.join(this.ctx.localDir, name), { recursive: true, force: true });
      } catch {
        // Not ours to judge.
      }
    }
  }

  async listCollections(): Promise<CollectionInfo[]> {
    return (await corpus.listCollections(this.pool)).map((c) => ({ name: c.name, manifest: c.manifest }));
  }

  async describeCollection(name: string): Promise<CollectionManifest | undefined> {
    return (await corpus.describeCollection(this.pool, name))?.manifest;
  }

  async openCollection(name: string, options: OpenCollectionOptions): Promise<PassageStore> {
    if (this.closed) throw new IndexStoreError('the PostgreSQL engine is closed');
    assertCollectionName(name);
    let row = await corpus.describeCollection(this.pool, name);
    if (!row) {
      if (!options.create) throw new CollectionDataNotFoundError(`collection "${name}" does not exist`);
      const manifest: CollectionManifest = {
        embedModel: options.embedModel,
        dim: options.dim,
        space: 'cosine',
        hnsw: options.hnsw,
        ...(options.chunk ? { chunk: options.chunk } : {}),
        createdAt: new Date().toISOString(),
      };
      row = await corpus.createCollection(this.pool, name, manifest);
    }
    if (row.manifest.embedModel !== options.embedModel || row.manifest.dim !== options.dim) {
      throw new EmbeddingMismatchError(`collection "${name}"`, row.manifest.embedModel, row.manifest.dim, options.embedModel, options.dim);
    }
    const replica = await this.acquire(row, options);
    return new PostgresPassageStore(this.pool, replica, row, this.location, options.readonly ?? false, () => this.release(name));
  }

  private async acquire(row: corpus.CollectionRow, options: OpenCollectionOptions): Promise<CollectionReplica> {
    const existing = this.replicas.get(row.name);
    if (existing) {
      const replica = await existing.replica.catch(() => undefined);
      if (replica && !replica.dropped) {
        existing.users++;
        return replica;
      }
      this.replicas.delete(row.name);
    }
    const entry = {
      replica: CollectionReplica.open(this.ctx, row, {
        embedModel: row.manifest.embedModel,
        dim: row.manifest.dim,
        hnsw: { ...row.manifest.hnsw, efSearch: options.hnsw.efSearch },
        ...(row.manifest.chunk ? { chunk: row.manifest.chunk } : {}),
        exactFilterThreshold: options.exactFilterThreshold,
      }),
      users: 1,
    };
    this.replicas.set(row.name, entry);
    try {
      return await entry.replica;
    } catch (err) {
      this.replicas.delete(row.name);
      throw err;
    }
  }

  private async release(name: string): Promise<void> {
    const entry = this.replicas.get(name);
    if (!entry) return;
    entry.users--;
    if (entry.users > 0) return;
    this.replicas.delete(name);
    await (await entry.replica).close();
  }

  async dropCollection(name: string): Promise<boolean> {
    assertCollectionName(name);
    const dropped = await corpus.dropCollection(this.pool, name);
    const entry = this.replicas.get(name);
    if (entry) {
      // Apply the drop to the open follower now, so this replica answers 404 at once.
      const replica = await entry.replica.catch(() => undefined);
      await replica?.catchUp().catch(() => undefined);
    }
    if (dropped && !entry) rmSync(path.join(this.ctx.localDir, name), { recursive: true, force: true });
    return dropped;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pollTimer);
    await this.listener.stop();
    for (const entry of this.replicas.values()) {
      const replica = await entry.replica.catch(() => undefined);
      await replica?.close();
    }
    this.replicas.clear();
    await this.pool.end();
  }
}

/**
 * One collection on one replica: writes go to PostgreSQL (the source of truth) and resolve once this replica's local
 * index has applied them; everything else reads the local index, so BM25 and dense results are those of the
 * embedded engine over the same passages.
 */
class PostgresPassageStore implements PassageStore {
  readonly name: string;
  readonly manifest: CollectionManifest;
  private closed = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly replica: CollectionReplica,
    row: corpus.CollectionRow,
    private readonly databaseLocation: string,
    readonly readonly: boolean,
    private readonly onClose: () => Promise<void>,
  ) {
    this.name = row.name;
    this.manifest = row.manifest;
  }

  get location(): string {
    return `${this.databaseLocation} collection ${this.name}`;
  }

  get embedModel(): string {
    return this.manifest.embedModel;
  }

  get dim(): number {
    return this.manifest.dim;
  }

  private get local(): PassageStore {
    this.assertOpen();
    return this.replica.local;
  }

  async writeDocuments(writes: DocumentWrite[]): Promise<WriteOutcome> {
    this.assertWritable();
    const { outcome, changeId } = await corpus.writeDocuments(this.pool, this.name, this.dim, writes);
    if (changeId !== undefined) await this.replica.waitApplied(changeId);
    return outcome;
  }

  async deleteDocuments(ids: string[]): Promise<DeleteOutcome> {
    this.assertWritable();
    const { outcome, changeId } = await corpus.deleteDocuments(this.pool, this.name, ids);
    if (changeId !== undefined) await this.replica.waitApplied(changeId);
    return outcome;
  }

  async checkpoint(): Promise<boolean> {
    this.assertWritable();
    return this.local.checkpoint();
  }

  /** From PostgreSQL: ingest's change detection must see other replicas' writes that are not applied here yet. */
  async documentStates(ids: string[]): Promise<Map<string, DocumentState>> {
    this.assertOpen();
    return corpus.documentStates(this.pool, this.name, ids);
  }

  async listDocuments(options?: ListDocumentsOptions): Promise<DocumentPage> {
    return this.local.listDocuments(options);
  }

  async getDocument(id: string): Promise<DocumentInfo | undefined> {
    return this.local.getDocument(id);
  }

  async passagesOfDocument(docId: string): Promise<PassageRecord[]> {
    return this.local.passagesOfDocument(docId);
  }

  async passagesByLabels(labels: number[]): Promise<Map<number, PassageRecord>> {
    return this.local.passagesByLabels(labels);
  }

  /** From PostgreSQL, the source of truth (not this replica's local copy, which may lag). */
  async *exportDocuments(pageDocuments: number): AsyncIterable<DocumentWrite[]> {
    this.assertOpen();
    let after: string | undefined;
    for (;;) {
      const page = await corpus.exportPage(this.pool, this.name, after, pageDocuments);
      if (page.length === 0) return;
      yield page;
      after = page[page.length - 1]!.document.id;
    }
  }

  async bm25Search(terms: string[], k: number, options: Bm25Options): Promise<LabelScore[]> {
    return this.local.bm25Search(terms, k, options);
  }

  async denseSearch(vector: Float32Array, k: number, options?: DenseSearchOptions): Promise<LabelScore[]> {
    return this.local.denseSearch(vector, k, options);
  }

  async exactSearch(vector: Float32Array, k: number, filter?: SearchFilter): Promise<LabelScore[]> {
    return this.local.exactSearch(vector, k, filter);
  }

  async stats(): Promise<StoreStats> {
    const stats = await this.local.stats();
    const { appliedChangeId, headChangeId, lagChanges, lagMs, database } = this.replica.status();
    return { ...stats, replication: { appliedChangeId, headChangeId, lagChanges, lagMs, database } };
  }

  /**
   * The local index's own invariants, plus agreement with PostgreSQL once caught up (document and passage counts).
   * The local index is derived data: when it fails, it is rebuilt from PostgreSQL and checked again, and only what
   * the rebuilt index still shows is reported.
   */
  async verify(): Promise<VerifyReport> {
    await this.replica.catchUp();
    let problems = await this.localProblems();
    if (problems.length > 0) {
      await this.replica.rebuild(problems.join('; '));
      problems = await this.localProblems();
    }
    return { ok: problems.length === 0, problems, stats: await this.stats() };
  }

  private async localProblems(): Promise<string[]> {
    const report = await this.local.verify();
    const problems = [...report.problems];
    const counts = await corpus.collectionCounts(this.pool, this.name);
    const head = await corpus.headChange(this.pool, this.name);
    if (head === this.replica.status().appliedChangeId) {
      if (counts.documents !== report.stats.documents)
        problems.push(`local index has ${report.stats.documents} documents, PostgreSQL ${counts.documents}`);
      if (counts.passages !== report.stats.passages)
        problems.push(`local index has ${report.stats.passages} passages, PostgreSQL ${counts.passages}`);
    }
    return problems;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.onClose();
  }

  private assertOpen(): void {
    if (this.closed) throw new IndexStoreError(`collection "${this.name}" is closed`);
    if (this.replica.dropped) throw new CollectionDataNotFoundError(`collection "${this.name}" was dropped`);
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.readonly) throw new IndexStoreError(`collection "${this.name}" was opened read-only`);
  }
}
