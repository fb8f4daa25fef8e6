import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { yieldToEventLoop } from '../../common/yield.js';
import { writeFileAtomic } from '../sqlite/atomic-file.js';
import { WriterLock } from '../sqlite/writer-lock.js';
import type { PassageStore } from '../engine.js';
import type { DocumentWrite } from '../types.js';
import {
  changesAfter,
  collectionCounts,
  currentDocuments,
  headChange,
  snapshotDocuments,
  type Change,
  type CollectionRow,
} from './corpus.js';
import { IndexLockedError, IndexStoreError, StorageUnavailableError } from '../errors.js';
import { isUnavailable } from './database.js';
import { openLocalIndex, type LocalOpenOptions } from './local-sqlite.js';

/** Written next to the local index after every applied batch: what it was built from and how far it got. */
interface ReplicaCheckpoint {
  deploymentId: string;
  collection: string;
  /** The change that created the collection's current incarnation: a recreated collection needs a fresh index. */
  createdChange: number;
  embedModel: string;
  dim: number;
  /** Every change of the collection up to this id is applied to the local index. */
  appliedChangeId: number;
}

export const CHECKPOINT_FILE = 'replica.json';

export interface ReplicaLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface ReplicaContext {
  pool: pg.Pool;
  deploymentId: string;
  /** Folder of this replica's local derived indexes, one sub-folder per collection. */
  localDir: string;
  applyBatchChanges: number;
  /** Documents per page when building a local index from a snapshot. */
  rebuildPageDocuments: number;
  log?: ReplicaLog;
}

export interface ReplicationStatus {
  /** Every change of the collection up to this id is applied to this replica's local index. */
  appliedChangeId: number;
  /** The newest change this replica knows of (from NOTIFY or the last poll). */
  headChangeId: number;
  lagChanges: number;
  /** How long the oldest change not yet applied has been known to this replica; 0 when caught up. */
  lagMs: number;
  /** Whether the last exchange with PostgreSQL succeeded. */
  database: 'ok' | 'unavailable';
  /** True when the collection was dropped in PostgreSQL; the local index is gone. */
  dropped: boolean;
}

/** Whether a live process other than this one holds the embedded engine's writer lock on `dir`. */
function heldByAnotherProcess(dir: string): boolean {
  if (!existsSync(dir)) return false;
  try {
    WriterLock.acquire(dir).release();
    return false;
  } catch (err) {
    if (err instanceof IndexLockedError) return true;
    return false;
  }
}

function readCheckpoint(dir: string): ReplicaCheckpoint | undefined {
  try {
    return JSON.parse(readFileSync(path.join(dir, CHECKPOINT_FILE), 'utf8')) as ReplicaCheckpoint;
  } catch {
    return undefined;
  }
}

/**
 * One collection's local derived index on this replica: an embedded SQLite FTS5 + HNSW index built from PostgreSQL
 * (from the stored vectors, never re-embedding) and kept current by applying the change log in order.
 *
 * Determinism: each document is applied at the position of the change that last wrote it (earlier changes of it are
 * skipped), and a rebuild inserts documents in that same order, so every replica assigns its local labels in the
 * same relative order and BM25 ties break identically everywhere.
 */
export class CollectionReplica {
  private applied: number;
  private head: number;
  private behindSince: number | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private lastError: unknown;
  private databaseOk = true;
  private droppedFlag = false;
  private closed = false;

  private constructor(
    private readonly ctx: ReplicaContext,
    private readonly row: CollectionRow,
    private readonly dir: string,
    private store: PassageStore,
    private readonly localOptions: LocalOpenOptions,
    applied: number,
    /** A private index of this process only (the shared folder was held by another process): removed on close. */
    private readonly ephemeral: boolean,
  ) {
    this.applied = applied;
    this.head = applied;
  }

  get local(): PassageStore {
    return this.store;
  }

  get name(): string {
    return this.row.name;
  }

  get dropped(): boolean {
    return this.droppedFlag;
  }

  /**
   * Opens the local index and catches up; builds it from PostgreSQL when it is missing, unreadable, from another
   * deployment, another incarnation of the collection or another embedding model.
   */
  static async open(ctx: ReplicaContext, row: CollectionRow, localOptions: LocalOpenOptions): Promise<CollectionReplica> {
    let dir = path.join(ctx.localDir, row.name);
    let ephemeral = false;
    if (heldByAnotherProcess(dir)) {
      // Another live process uses this folder (two replicas given one indexesDir, or a tool beside the server):
      // rebuilding it would pull the index from under that process. Serve from a private index instead.
      ephemeral = true;
      dir = path.join(ctx.localDir, '.private', `${row.name}.${process.pid}.${Date.now()}`);
      ctx.log?.warn(
        { collection: row.name, folder: path.join(ctx.localDir, row.name) },
        'another process holds this local index; using a private one for this process (give each replica its own indexesDir)',
      );
    }
    const expected = {
      deploymentId: ctx.deploymentId,
      collection: row.name,
      createdChange: row.createdChange,
      embedModel: row.manifest.embedModel,
      dim: row.manifest.dim,
    };
    const checkpoint = readCheckpoint(dir);
    const matches =
      checkpoint !== undefined && (Object.keys(expected) as Array<keyof typeof expected>).every((k) => checkpoint[k] === expected[k]);
    let store: PassageStore | undefined;
    let reason: string | undefined = matches
      ? undefined
      : existsSync(dir)
        ? 'its checkpoint does not match this collection'
        : 'it does not exist';
    if (matches) {
      try {
        store = await openLocalIndex(row.name, dir, localOptions);
      } catch (err) {
        reason = `it cannot be opened (${(err as Error).message})`;
      }
    }
    let applied = checkpoint?.appliedChangeId ?? 0;
    if (!store) {
      ctx.log?.info({ collection: row.name, reason }, 'building the local index from PostgreSQL');
      ({ store, applied } = await CollectionReplica.build(ctx, row, dir, localOptions));
    }
    const replica = new CollectionReplica(ctx, row, dir, store, localOptions, applied, ephemeral);
    await replica.catchUp();
    await replica.checkLocalMatchesDatabase();
    return replica;
  }

  /**
   * Builds the local index into a staging folder from one PostgreSQL snapshot and swaps it in by rename, so a crash
   * mid-build leaves either the old folder or none, never a half-built index that looks complete.
   */
  private static async build(
    ctx: ReplicaContext,
    row: CollectionRow,
    dir: string,
    localOptions: LocalOpenOptions,
  ): Promise<{ store: PassageStore; applied: number }> {
    const started = performance.now();
    const staging = path.join(ctx.localDir, '.staging', `${row.name}.${process.pid}.${Date.now()}`);
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(path.dirname(staging), { recursive: true });
    let store = await openLocalIndex(row.name, staging, localOptions);
    let passages = 0;
    let head: number;
    try {
      head = await snapshotDocuments(ctx.pool, row.name, ctx.rebuildPageDocuments, async (page) => {
        await store.writeDocuments(page.map(({ document, passages: p }) => ({ document, passages: p })));
        passages += page.reduce((n, w) => n + w.passages.length, 0);
      });
      await store.checkpoint();
    } finally {
      await store.close();
    }
    writeCheckpointFile(staging, ctx, row, Math.max(head, row.createdChange));
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(path.dirname(dir), { recursive: true });
    renameSync(staging, dir);
    store = await openLocalIndex(row.name, dir, localOptions);
    ctx.log?.info(
      { collection: row.name, passages, appliedChangeId: head, ms: Math.round(performance.now() - started) },
      'local index built from PostgreSQL',
    );
    return { store, applied: Math.max(head, row.createdChange) };
  }

  /** Replaces the local index by a fresh build from PostgreSQL (used when verify() finds it inconsistent). */
  async rebuild(reason: string): Promise<void> {
    await this.exclusive(async () => {
      this.ctx.log?.warn({ collection: this.row.name, reason }, 'rebuilding the local index from PostgreSQL');
      await this.store.close();
      const built = await CollectionReplica.build(this.ctx, this.row, this.dir, this.localOptions);
      this.store = built.store;
      this.applied = built.applied;
      this.head = built.applied;
    });
    // Changes announced while the rebuild ran.
    this.wake();
  }

  /** A caught-up local index must hold exactly PostgreSQL's document and passage counts; else it is rebuilt. */
  private async checkLocalMatchesDatabase(): Promise<void> {
    const counts = await collectionCounts(this.ctx.pool, this.row.name);
    const head = await headChange(this.ctx.pool, this.row.name);
    if (head < this.applied) {
      // The database went back in time (restored from a backup): the local index holds changes it no longer has.
      await this.rebuild(`local index applied change ${this.applied} but the database's newest change is ${head}`);
      return;
    }
    if (head !== this.applied) return; // Writes arrived meanwhile: the counts would not be comparable.
    const stats = await this.store.stats();
    if (stats.documents !== counts.documents || stats.passages !== counts.passages) {
      await this.rebuild(
        `local index holds ${stats.documents} documents / ${stats.passages} passages, PostgreSQL ${counts.documents} / ${counts.passages}`,
      );
    }
  }

  status(): ReplicationStatus {
    const lag = Math.max(0, this.head - this.applied);
    return {
      appliedChangeId: this.applied,
      headChangeId: Math.max(this.head, this.applied),
      lagChanges: lag,
      lagMs: lag > 0 && this.behindSince !== undefined ? Date.now() - this.behindSince : 0,
      database: this.databaseOk ? 'ok' : 'unavailable',
      dropped: this.droppedFlag,
    };
  }

  /** A NOTIFY or poll says there may be changes: apply them in the background. */
  wake(): void {
    if (this.closed || this.droppedFlag) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
  }

  /** Resolves once every change up to `changeId` is applied locally (a writer's read-your-writes). */
  async waitApplied(changeId: number): Promise<void> {
    this.head = Math.max(this.head, changeId);
    while (this.applied < changeId) {
      if (this.closed) throw new IndexStoreError(`collection "${this.row.name}" was closed`);
      if (this.droppedFlag) throw new IndexStoreError(`collection "${this.row.name}" was dropped`);
      this.lastError = undefined;
      this.wake();
      await this.running;
      if (this.applied < changeId && this.lastError !== undefined) throw this.lastError;
    }
  }

  /** Applies everything PostgreSQL has now; rejects when it cannot be read. */
  async catchUp(): Promise<void> {
    this.lastError = undefined;
    this.wake();
    await this.running;
    if (this.lastError !== undefined) throw this.lastError;
  }

  /** Runs `body` while no change is being applied. */
  private async exclusive(body: () => Promise<void>): Promise<void> {
    while (this.running) await this.running;
    const run = body();
    this.running = run.catch(() => undefined);
    try {
      await run;
    } finally {
      this.running = undefined;
    }
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.applyAvailable();
        this.databaseOk = true;
      } catch (err) {
        this.lastError = err;
        if (isUnavailable(err) || err instanceof StorageUnavailableError) {
          if (this.databaseOk)
            this.ctx.log?.warn(
              { collection: this.row.name, err: (err as Error).message },
              'PostgreSQL unavailable; serving the local index as it is',
            );
          this.databaseOk = false;
          return;
        }
        this.ctx.log?.warn({ collection: this.row.name, err }, 'applying the change log failed');
        return;
      }
    } while (this.again && !this.closed);
  }

  private async applyAvailable(): Promise<void> {
    for (;;) {
      if (this.closed || this.droppedFlag) return;
      const changes = await changesAfter(this.ctx.pool, this.row.name, this.applied, this.ctx.applyBatchChanges);
      if (changes.length === 0) {
        this.behindSince = undefined;
        return;
      }
      const newest = changes[changes.length - 1]!.id;
      if (newest > this.head) {
        this.head = newest;
      }
      this.behindSince ??= Date.now();
      await this.apply(changes);
      if (changes.length < this.ctx.applyBatchChanges) {
        if (this.applied >= this.head) this.behindSince = undefined;
        return;
      }
      // Let searches run between large catch-up batches.
      await yieldToEventLoop();
    }
  }

  private async apply(changes: Change[]): Promise<void> {
    const ended = changes.find((c) => c.kind === 'drop-collection' || (c.kind === 'create-collection' && c.id !== this.row.createdChange));
    const relevant = ended ? changes.filter((c) => c.id < ended.id) : changes;

    const docIds = [...new Set(relevant.filter((c) => c.docId !== null).map((c) => c.docId!))];
    const current = docIds.length > 0 ? await currentDocuments(this.ctx.pool, this.row.name, docIds) : new Map();

    // Consecutive operations of one kind are applied in one local transaction: never less than one PostgreSQL
    // transaction, since each writes changes of a single kind.
    let writes: DocumentWrite[] = [];
    let deletes: string[] = [];
    const flush = async () => {
      if (writes.length > 0) await this.store.writeDocuments(writes);
      if (deletes.length > 0) await this.store.deleteDocuments(deletes);
      writes = [];
      deletes = [];
    };
    for (const change of relevant) {
      if (change.docId === null) continue;
      const doc = current.get(change.docId);
      const op: 'write' | 'delete' | 'skip' = !doc
        ? 'delete'
        : doc.changeId === change.id
          ? 'write'
          : doc.changeId > change.id
            ? 'skip'
            : 'write';
      if (op === 'skip') continue;
      if ((op === 'write' && deletes.length > 0) || (op === 'delete' && writes.length > 0)) await flush();
      if (op === 'write') writes.push({ document: doc!.document, passages: doc!.passages });
      else deletes.push(change.docId);
    }
    await flush();

    if (ended) {
      await this.dropLocal();
      return;
    }
    this.applied = changes[changes.length - 1]!.id;
    writeCheckpointFile(this.dir, this.ctx, this.row, this.applied);
  }

  private async dropLocal(): Promise<void> {
    this.droppedFlag = true;
    await this.store.close();
    rmSync(this.dir, { recursive: true, force: true });
    this.ctx.log?.info({ collection: this.row.name }, 'collection dropped in PostgreSQL; local index removed');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.running) await this.running;
    if (!this.droppedFlag) await this.store.close();
    if (this.ephemeral) rmSync(this.dir, { recursive: true, force: true });
  }
}

function writeCheckpointFile(dir: string, ctx: ReplicaContext, row: CollectionRow, appliedChangeId: number): void {
  const checkpoint: ReplicaCheckpoint = {
    deploymentId: ctx.deploymentId,
    collection: row.name,
    createdChange: row.createdChange,
    embedModel: row.manifest.embedModel,
    dim: row.manifest.dim,
    appliedChangeId,
  };
  writeFileAtomic(path.join(dir, CHECKPOINT_FILE), JSON.stringify(checkpoint) + '\n');
}
