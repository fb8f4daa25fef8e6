import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type {
  Bm25Options,
  CollectionManifest,
  DenseSearchOptions,
  DocumentInfo,
  DocumentPage,
  ListDocumentsOptions,
  OpenCollectionOptions,
  PassageStore,
} from '../engine.js';
import { CollectionDataNotFoundError, IndexStoreError } from '../errors.js';
import { isEmptyFilter } from '../filter-sql.js';
import type {
  DeleteOutcome,
  DocumentState,
  DocumentWrite,
  FaultPoint,
  LabelScore,
  PassageRecord,
  SearchFilter,
  StoreStats,
  VerifyReport,
  WriteOutcome,
} from '../types.js';
import { TimeSlice } from '../../common/time-slice.js';
import { normalized } from '../vectors.js';
import { GraphGenerations } from './graph-generations.js';
import { assertSameEmbedding, FORMAT_VERSION, readManifest, writeManifest, type IndexManifest } from './manifest.js';
import { PassageTables } from './passage-tables.js';
import { configureConnection, createSchema, hasSchema, readMeta } from './schema.js';
import { WriterLock } from './writer-lock.js';

const DB_FILE = 'index.sqlite';

function folderBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    try {
      const stat = statSync(path.join(dir, name));
      if (stat.isFile()) total += stat.size;
    } catch {
      // A checkpoint may remove an old graph file between listing and stat.
    }
  }
  return total;
}

/**
 * One collection of the embedded engine: a folder holding `manifest.json`, `index.sqlite` (documents, passages,
 * FTS5, vectors: the source of truth) and the saved HNSW graph of the current generation. Composes the passage tables
 * with the graph and its generation protocol. Reads run synchronously inside their promise; a write works in time
 * slices inside an open transaction of a second connection and becomes visible to every read at once, when it
 * commits and publishes its graph changes in the same turn.
 */
export class SqlitePassageStore implements PassageStore {
  private closed = false;
  /** The last write-side operation queued; the next one starts after it settles. */
  private writes: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly name: string,
    readonly location: string,
    readonly manifest: IndexManifest,
    private readonly tables: PassageTables,
    private readonly graph: GraphGenerations,
    private readonly lock: WriterLock | undefined,
    private readonly exactFilterThreshold: number,
    private readonly faultHook: ((point: FaultPoint) => void) | undefined,
  ) {}

  /** `faultHook` is a crash-test hook (see SqliteEngine): called at crash-relevant points of a write. */
  static async open(
    name: string,
    dir: string,
    options: OpenCollectionOptions,
    faultHook?: (point: FaultPoint) => void,
  ): Promise<SqlitePassageStore> {
    const readonly = options.readonly ?? false;
    const dbPath = path.join(dir, DB_FILE);
    const exists = readManifest(dir) !== undefined;
    if (!exists && (readonly || !options.create)) {
      throw new CollectionDataNotFoundError(`no index at ${dir} (missing manifest.json)`);
    }
    if (readonly && !existsSync(dbPath)) throw new CollectionDataNotFoundError(`no index at ${dir} (missing ${DB_FILE})`);
    if (!readonly) mkdirSync(dir, { recursive: true });
    const lock = readonly ? undefined : WriterLock.acquire(dir);
    let tables: PassageTables | undefined;
    let graph: GraphGenerations | undefined;
    try {
      const manifest = manifestFor(dir, dbPath, options);
      const db = new Database(dbPath, { readonly, fileMustExist: readonly });
      let writer: Database.Database | undefined;
      try {
        configureConnection(db, readonly);
        if (!readonly) {
          createSchema(db, manifest.embedModel, manifest.dim);
          writer = new Database(dbPath, { fileMustExist: true });
          configureConnection(writer, false);
        } else if (!hasSchema(db)) {
          throw new CollectionDataNotFoundError(`no index at ${dir} yet (its database was never initialised)`);
        }
      } catch (err) {
        writer?.close();
        db.close();
        throw err;
      }
      tables = new PassageTables(db, dir, writer);
      assertMetaMatches(db, manifest, dir);
      const fault = (point: FaultPoint) => faultHook?.(point);
      graph = new GraphGenerations(dir, tables, manifest.dim, { ...manifest.hnsw, efSearch: options.hnsw.efSearch }, readonly, fault);
      const store = new SqlitePassageStore(name, dir, manifest, tables, graph, lock, options.exactFilterThreshold, faultHook);
      if (!readonly) {
        graph.removeStrayFiles();
        // A missing or unreadable graph file breaks the on-disk invariant; restore it before anything else happens.
        if (graph.rebuiltFromVectors) await graph.checkpoint(new TimeSlice());
      }
      return store;
    } catch (err) {
      graph?.close();
      tables?.close();
      lock?.release();
      throw err;
    }
  }

  get readonly(): boolean {
    return this.lock === undefined;
  }

  get dim(): number {
    return this.manifest.dim;
  }

  get embedModel(): string {
    return this.manifest.embedModel;
  }

  // ---------------------------------------------------------------- writes

  /**
   * The SQL work and the graph insertions run in time slices on the writer connection, so a large write leaves the
   * event loop to searches; the commit, and the graph changes that publish it, happen together in one turn.
   */
  async writeDocuments(writes: DocumentWrite[]): Promise<WriteOutcome> {
    return this.exclusive(async () => {
      const slice = new TimeSlice();
      const staged = await this.tables.stageWrite(writes, this.dim, slice);
      try {
        await this.graph.stage(staged.changes.added, slice);
        staged.commit();
      } catch (err) {
        staged.rollback();
        this.graph.discard(staged.changes.added);
        throw err;
      }
      this.fault('after-sqlite-commit');
      this.graph.publish(staged.changes);
      return staged.outcome;
    });
  }

  async deleteDocuments(ids: string[]): Promise<DeleteOutcome> {
    return this.exclusive(async () => {
      const staged = await this.tables.stageDelete(ids, new TimeSlice());
      staged.commit();
      this.fault('after-sqlite-commit');
      this.graph.publish(staged.changes);
      return staged.outcome;
    });
  }

  async checkpoint(): Promise<boolean> {
    return this.exclusive(() => this.graph.checkpoint(new TimeSlice()));
  }

  // ---------------------------------------------------------------- lookups

  async documentStates(ids: string[]): Promise<Map<string, DocumentState>> {
    this.beginRead();
    return this.tables.documentStates(ids);
  }

  async listDocuments(options: ListDocumentsOptions = {}): Promise<DocumentPage> {
    this.beginRead();
    return this.tables.listDocuments(options);
  }

  async getDocument(id: string): Promise<DocumentInfo | undefined> {
    this.beginRead();
    return this.tables.getDocument(id);
  }

  async passagesOfDocument(docId: string): Promise<PassageRecord[]> {
    this.beginRead();
    return this.tables.passagesOfDocument(docId);
  }

  async passagesByLabels(labels: number[]): Promise<Map<number, PassageRecord>> {
    this.beginRead();
    return this.tables.passagesByLabels(labels);
  }

  async *exportDocuments(pageDocuments: number): AsyncIterable<DocumentWrite[]> {
    if (!Number.isInteger(pageDocuments) || pageDocuments < 1) throw new RangeError('pageDocuments must be a positive integer');
    let after: string | undefined;
    for (;;) {
      this.beginRead();
      const page = this.tables.exportPage(after, pageDocuments);
      if (page.length === 0) return;
      yield page;
      after = page[page.length - 1]!.document.id;
    }
  }

  // ---------------------------------------------------------------- search

  async bm25Search(terms: string[], k: number, options: Bm25Options): Promise<LabelScore[]> {
    this.beginRead();
    return this.tables.bm25Search(terms, k, options.filter, options.titleWeight, options.textWeight);
  }

  async denseSearch(vector: Float32Array, k: number, options: DenseSearchOptions = {}): Promise<LabelScore[]> {
    this.beginRead();
    this.assertQueryVector(vector);
    if (k <= 0) return [];
    let allow: ((label: number) => boolean) | undefined;
    if (!isEmptyFilter(options.filter)) {
      const allowed = this.tables.allowedLabels(options.filter!);
      if (allowed.size === 0) return [];
      // A graph walk that may only collect a handful of labels visits most of the graph anyway.
      if (allowed.size <= this.exactFilterThreshold) return this.tables.exactSearchAmong(normalized(vector), k, [...allowed]);
      allow = (label) => allowed.has(label);
    }
    return this.graph.search(vector, k, allow, options.ef);
  }

  async exactSearch(vector: Float32Array, k: number, filter?: SearchFilter): Promise<LabelScore[]> {
    this.beginRead();
    this.assertQueryVector(vector);
    if (k <= 0) return [];
    return this.tables.exactSearch(normalized(vector), k, filter);
  }

  // ---------------------------------------------------------------- health

  async stats(): Promise<StoreStats> {
    this.beginRead();
    return this.statsNow();
  }

  private statsNow(): StoreStats {
    const count = (sql: string) => this.tables.count(sql);
    return {
      embedModel: this.embedModel,
      dim: this.dim,
      documents: count('SELECT count(*) FROM documents'),
      passages: count('SELECT count(*) FROM passages'),
      vectors: count('SELECT count(*) FROM passage_vectors'),
      hnswLive: this.graph.searchableSize,
      pending: count('SELECT count(*) FROM passages WHERE in_hnsw = 0'),
      hnswCapacity: this.graph.index.capacity,
      generation: this.graph.currentGeneration,
      rebuiltFromVectors: this.graph.rebuiltFromVectors,
      bytes: folderBytes(this.location),
    };
  }

  /** Waits for a write in progress: the graph holds its staged vectors until it commits. */
  async verify(): Promise<VerifyReport> {
    const check = (): VerifyReport => {
      this.beginRead();
      const problems = [...this.tables.verifyTables(!this.readonly), ...this.graph.verify()];
      return { ok: problems.length === 0, problems, stats: this.statsNow() };
    };
    return this.readonly ? check() : this.exclusive(async () => check());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // A write in progress finishes (or fails) before the connections close under it.
    await this.writes.catch(() => undefined);
    if (this.closed) return;
    try {
      if (!this.readonly && this.graph.isDirty) await this.graph.checkpoint(new TimeSlice());
    } finally {
      this.closed = true;
      this.graph.close();
      this.tables.close();
      this.lock?.release();
    }
  }

  // ---------------------------------------------------------------- helpers

  /** Every read starts here: a closed store refuses, and a read-only one first follows other processes' commits. */
  private beginRead(): void {
    this.assertOpen();
    this.graph.refreshIfChanged();
  }

  /** Writes, checkpoints and verification run one at a time, each in the order called. */
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    this.assertWritable();
    const run = this.writes.then(() => {
      this.assertWritable();
      return work();
    });
    this.writes = run.catch(() => undefined);
    return run;
  }

  private fault(point: FaultPoint): void {
    this.faultHook?.(point);
  }

  private assertOpen(): void {
    if (this.closed) throw new IndexStoreError(`index ${this.location} is closed`);
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.readonly) throw new IndexStoreError(`index ${this.location} was opened read-only`);
  }

  private assertQueryVector(vector: Float32Array): void {
    if (vector.length !== this.dim) {
      throw new IndexStoreError(`query vector has ${vector.length} dimensions; index ${this.location} holds ${this.dim}-d vectors`);
    }
  }
}

function manifestFor(dir: string, dbPath: string, options: OpenCollectionOptions): IndexManifest {
  const existing = readManifest(dir);
  if (existing) {
    assertSameEmbedding(dir, existing, options.embedModel, options.dim);
    return existing;
  }
  if (existsSync(dbPath)) throw new IndexStoreError(`${dir} holds ${DB_FILE} but no manifest.json; it is not an index of this format`);
  if (!Number.isInteger(options.dim) || options.dim <= 0) throw new IndexStoreError(`invalid embedding dimension ${options.dim}`);
  const manifest: IndexManifest = {
    formatVersion: FORMAT_VERSION,
    embedModel: options.embedModel,
    dim: options.dim,
    space: 'cosine',
    hnsw: { ...options.hnsw },
    ...(options.chunk ? { chunk: { ...options.chunk } } : {}),
    createdAt: new Date().toISOString(),
  };
  // The manifest is written before the database, so a database without a manifest is never one of ours.
  writeManifest(dir, manifest);
  return manifest;
}

function assertMetaMatches(db: Database.Database, manifest: CollectionManifest, dir: string): void {
  const model = readMeta(db, 'embed_model');
  const dim = Number(readMeta(db, 'dim'));
  if (model !== manifest.embedModel || dim !== manifest.dim) {
    throw new IndexStoreError(
      `index ${dir} is inconsistent: manifest.json says "${manifest.embedModel}" (${manifest.dim}-d) but the database ` +
        `says "${model}" (${dim}-d)`,
    );
  }
}
