import { existsSync, mkdirSync, readdirSync, renameSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { fsyncDir, fsyncFile } from './atomic-file.js';
import { IndexNotFoundError, IndexStoreError } from './errors.js';
import { filterToSql, isEmptyFilter } from './filter-sql.js';
import { HnswGraph } from './hnsw-graph.js';
import { assertSameEmbedding, FORMAT_VERSION, readManifest, writeManifest, type IndexManifest } from './manifest.js';
import { configureConnection, createSchema, hasSchema, readMeta } from './schema.js';
import {
  DEFAULT_HNSW,
  type DeleteOutcome,
  type DocumentState,
  type DocumentWrite,
  type FaultPoint,
  type HnswParams,
  type LabelScore,
  type Metadata,
  type PassageRecord,
  type SearchFilter,
  type StoreStats,
  type VerifyReport,
  type WriteOutcome,
} from './types.js';
import { blobToVector, dot, normalized, TopK, vectorToBlob } from './vectors.js';
import { WriterLock } from './writer-lock.js';

export interface IndexStoreOptions {
  /** Embedding model id; must match the one the index was built with. */
  embedModel: string;
  dim: number;
  /** M and efConstruction apply when the index is created; efSearch applies to this open. */
  hnsw?: Partial<HnswParams>;
  /** Open for searching only: no lock, no writes, sees other processes' commits through `refresh()`. */
  readonly?: boolean;
  /**
   * A filter admitting at most this many passages is answered by exact search over just those vectors: a graph walk
   * that may only collect a handful of labels visits most of the graph anyway.
   */
  exactFilterThreshold?: number;
  /** Test hook: called at crash-relevant points of a write; tests kill the process here. */
  faultHook?: (point: FaultPoint) => void;
}

export interface DenseSearchOptions {
  filter?: SearchFilter;
  ef?: number;
}

export interface Bm25Options {
  filter?: SearchFilter;
  /** Column weights for bm25(); title is repeated on every passage of a document, so it usually weighs less. */
  titleWeight?: number;
  textWeight?: number;
}

const DB_FILE = 'index.sqlite';
const HNSW_FILE = /^hnsw-(\d+)\.bin(\.tmp.*)?$/;
const hnswFileName = (generation: number) => `hnsw-${generation}.bin`;
const SQL_BATCH = 500;
/** SQLite result codes that mean the storage refused a write, not that the statement was wrong. */
const STORAGE_FAILURES = /^SQLITE_(FULL|IOERR|READONLY|CANTOPEN)/;
// Measured crossover on 5k×384: exact over the allowed vectors wins below ~300 of them, the filtered graph walk above.
const DEFAULT_EXACT_FILTER_THRESHOLD = 256;

interface PassageRow {
  label: number;
  id: string;
  doc_id: string;
  chunk_no: number;
  title: string;
  text: string;
  metadata: string;
  char_start: number;
  char_end: number;
  page_start?: number | null;
  page_end?: number | null;
  section?: string | null;
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function parseMetadata(json: string): Metadata {
  const value = JSON.parse(json) as unknown;
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Metadata) : {};
}

function toPassageRecord(row: PassageRow): PassageRecord {
  return {
    label: row.label,
    id: row.id,
    docId: row.doc_id,
    chunkNo: row.chunk_no,
    title: row.title,
    text: row.text,
    metadata: parseMetadata(row.metadata),
    charStart: row.char_start,
    charEnd: row.char_end,
    ...(typeof row.page_start === 'number' ? { pageStart: row.page_start, pageEnd: row.page_end ?? row.page_start } : {}),
    ...(typeof row.section === 'string' ? { section: JSON.parse(row.section) as string[] } : {}),
  };
}

/**
 * One index folder: SQLite (documents, passages, FTS5, vectors) is the source of truth; the HNSW graph is a derived,
 * periodically saved acceleration structure.
 *
 * Crash protocol. SQLite rows and vectors are written in one transaction per batch with `in_hnsw = 0`. A checkpoint
 * writes the whole graph to `hnsw-<g+1>.bin.tmp`, fsyncs, renames it to `hnsw-<g+1>.bin`, and only then commits
 * `hnsw_generation = g+1` together with `in_hnsw = 1` for the labels it contains; the old file is removed last.
 * Whatever point a crash hits, SQLite names a generation whose file is complete, every `in_hnsw = 1` passage is live
 * in that file, and labels in the file that no passage owns are stale deletions. Opening reconciles: stale labels are
 * marked deleted, `in_hnsw = 0` passages are added from their stored vectors (no re-embedding), and the next checkpoint
 * persists the result.
 */
export class IndexStore {
  private graph!: HnswGraph;
  /** Labels in the in-memory graph whose SQLite rows still say `in_hnsw = 0`. */
  private unpersisted = new Set<number>();
  private dirty = false;
  private generation = 0;
  private dataVersion = 0;
  private rebuiltFromVectors = false;
  private closed = false;
  private readonly efSearch: number;
  private readonly statementCache = new Map<string, Database.Statement>();

  private constructor(
    readonly dir: string,
    readonly manifest: IndexManifest,
    private readonly db: Database.Database,
    private readonly lock: WriterLock | undefined,
    private readonly options: IndexStoreOptions,
  ) {
    this.efSearch = options.hnsw?.efSearch ?? manifest.hnsw.efSearch;
  }

  static open(dir: string, options: IndexStoreOptions): IndexStore {
    const readonly = options.readonly ?? false;
    const dbPath = path.join(dir, DB_FILE);
    if (readonly && !existsSync(dbPath)) throw new IndexNotFoundError(`no index at ${dir} (missing ${DB_FILE})`);
    if (!readonly) mkdirSync(dir, { recursive: true });
    const lock = readonly ? undefined : WriterLock.acquire(dir);
    let db: Database.Database | undefined;
    try {
      const manifest = IndexStore.manifestFor(dir, dbPath, options, readonly);
      db = new Database(dbPath, { readonly, fileMustExist: readonly });
      configureConnection(db, readonly);
      if (!readonly) createSchema(db, manifest.embedModel, manifest.dim);
      else if (!hasSchema(db)) throw new IndexNotFoundError(`no index at ${dir} yet (its database was never initialised)`);
      IndexStore.assertMetaMatches(db, manifest, dir);
      const store = new IndexStore(dir, manifest, db, lock, options);
      store.loadGraph();
      if (!readonly) {
        store.removeStrayFiles();
        // A missing or unreadable graph file breaks the on-disk invariant; restore it before anything else happens.
        if (store.rebuiltFromVectors) store.checkpoint();
      }
      return store;
    } catch (err) {
      db?.close();
      lock?.release();
      throw err;
    }
  }

  private static manifestFor(dir: string, dbPath: string, options: IndexStoreOptions, readonly: boolean): IndexManifest {
    const existing = readManifest(dir);
    if (existing) {
      assertSameEmbedding(dir, existing, options.embedModel, options.dim);
      return existing;
    }
    if (readonly) throw new IndexNotFoundError(`no index at ${dir} (missing manifest.json)`);
    if (existsSync(dbPath)) throw new IndexStoreError(`${dir} holds ${DB_FILE} but no manifest.json; it is not an index of this format`);
    if (!Number.isInteger(options.dim) || options.dim <= 0) throw new IndexStoreError(`invalid embedding dimension ${options.dim}`);
    const manifest: IndexManifest = {
      formatVersion: FORMAT_VERSION,
      embedModel: options.embedModel,
      dim: options.dim,
      space: 'cosine',
      hnsw: { ...DEFAULT_HNSW, ...options.hnsw },
      createdAt: new Date().toISOString(),
    };
    // The manifest is written before the database, so a database without a manifest is never one of ours.
    writeManifest(dir, manifest);
    return manifest;
  }

  private static assertMetaMatches(db: Database.Database, manifest: IndexManifest, dir: string): void {
    const model = readMeta(db, 'embed_model');
    const dim = Number(readMeta(db, 'dim'));
    if (model !== manifest.embedModel || dim !== manifest.dim) {
      throw new IndexStoreError(
        `index ${dir} is inconsistent: manifest.json says "${manifest.embedModel}" (${manifest.dim}-d) but the database ` +
          `says "${model}" (${dim}-d)`,
      );
    }
  }

  get readonly(): boolean {
    return this.options.readonly ?? false;
  }

  get dim(): number {
    return this.manifest.dim;
  }

  get embedModel(): string {
    return this.manifest.embedModel;
  }

  // ---------------------------------------------------------------- graph loading and reconciliation

  /**
   * Loads the graph of the current generation and reconciles it with SQLite, inside one read transaction so the
   * rows, flags and generation come from a single snapshot. A reader can lose a race with a writer's checkpoint (the
   * snapshot's file is replaced and deleted just before being opened); it then simply retries on a newer snapshot.
   */
  private loadGraph(): void {
    const maxAttempts = this.readonly ? 3 : 1;
    for (let attempt = 1; ; attempt++) {
      const loaded = this.db.transaction(() => this.loadGraphFromSnapshot(attempt === maxAttempts))();
      if (loaded) return;
    }
  }

  private loadGraphFromSnapshot(lastAttempt: boolean): boolean {
    const generation = Number(readMeta(this.db, 'hnsw_generation') ?? 0);
    const params: HnswParams = { ...this.manifest.hnsw, efSearch: this.efSearch };
    const file = path.join(this.dir, hnswFileName(generation));
    let graph: HnswGraph | undefined;
    let rebuilt = false;
    if (generation > 0) {
      try {
        graph = HnswGraph.load(file, this.dim, params);
      } catch {
        if (!lastAttempt) return false;
        // Missing or unreadable: every vector is also in SQLite, so the graph can be rebuilt from there.
        rebuilt = true;
      }
    }
    this.generation = generation;
    this.rebuiltFromVectors = rebuilt;
    const rows = this.db.prepare('SELECT label, in_hnsw FROM passages').raw().all() as Array<[number, number]>;
    const fromFile = graph !== undefined;
    graph ??= HnswGraph.create(this.dim, params, rows.length);

    const owned = new Set<number>();
    const pending: number[] = [];
    for (const [label, inHnsw] of rows) {
      owned.add(label);
      if (fromFile && inHnsw === 1 && graph.inFile(label)) graph.adoptFromFile(label);
      else pending.push(label);
    }
    let staleLabels = 0;
    if (fromFile) {
      for (const label of graph.labelsFromFile()) {
        if (!owned.has(label)) {
          graph.markDeletedQuietly(label);
          staleLabels++;
        }
      }
    }
    this.graph = graph;
    this.addFromStoredVectors(pending);
    this.unpersisted = new Set(pending);
    this.dirty = pending.length > 0 || this.rebuiltFromVectors || staleLabels > 0;
    this.dataVersion = this.readDataVersion();
    return true;
  }

  private addFromStoredVectors(labels: number[]): void {
    if (labels.length === 0) return;
    this.graph.reserve(labels.length);
    const select = this.db.prepare('SELECT label, vector FROM passage_vectors WHERE label IN (SELECT value FROM json_each(?))');
    for (const batch of chunks(labels, SQL_BATCH)) {
      for (const [label, blob] of select.raw().iterate(JSON.stringify(batch)) as IterableIterator<[number, Buffer]>) {
        this.graph.add(label, blobToVector(blob));
      }
    }
  }

  private readDataVersion(): number {
    return Number(this.db.pragma('data_version', { simple: true }));
  }

  /**
   * For read-only opens: picks up what other processes committed since the last call (new generation, added or
   * deleted passages). Cheap when nothing changed (one pragma). Returns whether anything was reloaded.
   */
  refresh(): boolean {
    this.assertOpen();
    if (!this.readonly) return false;
    const version = this.readDataVersion();
    if (version === this.dataVersion) return false;
    const generation = Number(readMeta(this.db, 'hnsw_generation') ?? 0);
    if (generation !== this.generation) {
      this.loadGraph();
      return true;
    }
    this.db.transaction(() => {
      const owned = new Set((this.db.prepare('SELECT label FROM passages').raw().all() as Array<[number]>).map((r) => r[0]));
      for (const label of [...this.graph.liveLabels()]) if (!owned.has(label)) this.graph.remove(label);
      this.addFromStoredVectors([...owned].filter((label) => !this.graph.isLive(label)));
      this.dataVersion = this.readDataVersion();
    })();
    return true;
  }

  private removeStrayFiles(): void {
    for (const name of readdirSync(this.dir)) {
      const match = HNSW_FILE.exec(name);
      if (!match) continue;
      const isCurrent = Number(match[1]) === this.generation && match[2] === undefined;
      if (!isCurrent) unlinkSync(path.join(this.dir, name));
    }
  }

  // ---------------------------------------------------------------- reads used by ingest

  documentStates(ids: string[]): Map<string, DocumentState> {
    this.assertOpen();
    const out = new Map<string, DocumentState>();
    const select = this.prepare(
      'SELECT id, content_hash, chunking FROM documents WHERE id IN (SELECT value FROM json_each(?))',
    );
    for (const batch of chunks(ids, SQL_BATCH)) {
      for (const row of select.all(JSON.stringify(batch)) as Array<{ id: string; content_hash: string; chunking: string }>) {
        out.set(row.id, { contentHash: row.content_hash, chunking: row.chunking });
      }
    }
    return out;
  }

  getDocument(id: string): { id: string; title: string; metadata: Metadata; contentHash: string; passages: number } | undefined {
    this.assertOpen();
    const row = this.prepare(
      'SELECT d.id, d.title, d.metadata, d.content_hash, (SELECT count(*) FROM passages p WHERE p.doc_id = d.id) AS passages ' +
        'FROM documents d WHERE d.id = ?',
    ).get(id) as { id: string; title: string; metadata: string; content_hash: string; passages: number } | undefined;
    if (!row) return undefined;
    return { id: row.id, title: row.title, metadata: parseMetadata(row.metadata), contentHash: row.content_hash, passages: row.passages };
  }

  passagesOfDocument(docId: string): PassageRecord[] {
    this.assertOpen();
    const rows = this.prepare('SELECT * FROM passages WHERE doc_id = ? ORDER BY chunk_no').all(docId) as PassageRow[];
    return rows.map(toPassageRecord);
  }

  // ---------------------------------------------------------------- writes

  /**
   * Inserts or replaces documents with their passages and vectors in one SQLite transaction, then updates the
   * in-memory graph. The graph reaches disk at the next `checkpoint()`; until then a crash only costs re-adding
   * stored vectors on open.
   */
  writeDocuments(writes: DocumentWrite[]): WriteOutcome {
    this.assertWritable();
    for (const { document, passages } of writes) {
      for (const p of passages) {
        if (p.vector.length !== this.dim) {
          throw new IndexStoreError(`passage ${p.id} has a ${p.vector.length}-d vector; index ${this.dir} holds ${this.dim}-d`);
        }
      }
      if (document.id === '') throw new IndexStoreError('document id must not be empty');
    }
    const existsDoc = this.prepare('SELECT 1 FROM documents WHERE id = ?').pluck();
    const upsertDoc = this.prepare(
      'INSERT INTO documents (id, title, content_hash, chunking, metadata, updated_at) VALUES (?, ?, ?, ?, ?, ?) ' +
        'ON CONFLICT(id) DO UPDATE SET title = excluded.title, content_hash = excluded.content_hash, ' +
        'chunking = excluded.chunking, metadata = excluded.metadata, updated_at = excluded.updated_at',
    );
    const insertPassage = this.prepare(
      'INSERT INTO passages (id, doc_id, chunk_no, title, text, metadata, char_start, char_end, page_start, page_end, section, in_hnsw) ' +
        'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0) RETURNING label',
    ).pluck();
    const insertVector = this.prepare('INSERT INTO passage_vectors (label, vector) VALUES (?, ?)');

    const added = new Map<number, Float32Array>();
    const removed: number[] = [];
    const outcome: WriteOutcome = { inserted: 0, replaced: 0, passagesAdded: 0, passagesRemoved: 0 };
    this.commit('write documents', () => {
      const now = Date.now();
      for (const { document, passages } of writes) {
        const existed = existsDoc.get(document.id) !== undefined;
        if (existed) {
          const labels = this.deletePassagesOf(document.id);
          removed.push(...labels);
          outcome.passagesRemoved += labels.length;
          outcome.replaced++;
        } else {
          outcome.inserted++;
        }
        upsertDoc.run(document.id, document.title, document.contentHash, document.chunking, JSON.stringify(document.metadata), now);
        for (const p of passages) {
          const label = insertPassage.get(
            p.id, document.id, p.chunkNo, p.title, p.text, JSON.stringify(p.metadata), p.charStart, p.charEnd,
            p.pageStart ?? null, p.pageEnd ?? null, p.section ? JSON.stringify(p.section) : null,
          ) as number;
          const unit = normalized(p.vector);
          insertVector.run(label, vectorToBlob(unit));
          added.set(label, unit);
          outcome.passagesAdded++;
        }
      }
    });
    this.fault('after-sqlite-commit');
    this.applyToGraph(added, removed);
    return outcome;
  }

  /** Removes documents, their passages, FTS rows and vectors; the graph forgets them now and on disk at checkpoint. */
  deleteDocuments(ids: string[]): DeleteOutcome {
    this.assertWritable();
    const deleteDoc = this.prepare('DELETE FROM documents WHERE id = ?');
    const outcome: DeleteOutcome = { deleted: [], missing: [], passagesRemoved: 0 };
    const removed: number[] = [];
    this.commit('delete documents', () => {
      for (const id of new Set(ids)) {
        const labels = this.deletePassagesOf(id);
        removed.push(...labels);
        outcome.passagesRemoved += labels.length;
        if (deleteDoc.run(id).changes > 0) outcome.deleted.push(id);
        else outcome.missing.push(id);
      }
    });
    this.fault('after-sqlite-commit');
    this.applyToGraph(new Map(), removed);
    return outcome;
  }

  private deletePassagesOf(docId: string): number[] {
    this.prepare('DELETE FROM passage_vectors WHERE label IN (SELECT label FROM passages WHERE doc_id = ?)').run(docId);
    return this.prepare('DELETE FROM passages WHERE doc_id = ? RETURNING label').pluck().all(docId) as number[];
  }

  private applyToGraph(added: Map<number, Float32Array>, removed: number[]): void {
    for (const label of removed) {
      this.graph.remove(label);
      this.unpersisted.delete(label);
    }
    this.graph.reserve(added.size);
    for (const [label, vector] of added) {
      this.graph.add(label, vector);
      this.unpersisted.add(label);
    }
    if (added.size > 0 || removed.length > 0) this.dirty = true;
  }

  /**
   * Saves the graph if it changed: temp file, fsync, rename to the next generation's name, then one SQLite
   * transaction switches the generation and flags the saved labels. Returns whether a file was written.
   */
  checkpoint(): boolean {
    this.assertWritable();
    if (!this.dirty) return false;
    const next = this.generation + 1;
    const file = path.join(this.dir, hnswFileName(next));
    const tmp = `${file}.tmp`;
    try {
      this.graph.write(tmp);
      fsyncFile(tmp);
    } catch (err) {
      // Nothing was committed: the previous generation stays current and the new passages stay pending in SQLite.
      // The partial file goes at once, since a full disk is the usual cause.
      try {
        unlinkSync(tmp);
      } catch {
        // Never created.
      }
      throw new IndexStoreError(
        `could not save the HNSW graph of index ${this.dir} (disk full, file size limit or read-only folder?): ` +
          `${(err as Error).message}. Nothing is lost: the stored passages are re-added on the next open.`,
        { cause: err },
      );
    }
    this.fault('before-hnsw-rename');
    renameSync(tmp, file);
    fsyncDir(this.dir);
    this.fault('after-hnsw-rename');

    const saved = [...this.unpersisted];
    const markSaved = this.prepare('UPDATE passages SET in_hnsw = 1 WHERE label IN (SELECT value FROM json_each(?))');
    const setGeneration = this.prepare("UPDATE meta SET value = ? WHERE key = 'hnsw_generation'");
    this.commit('switch to the saved HNSW graph', () => {
      for (const batch of chunks(saved, SQL_BATCH * 20)) markSaved.run(JSON.stringify(batch));
      setGeneration.run(String(next));
    });
    this.fault('after-generation-commit');

    const previous = this.generation;
    this.generation = next;
    this.unpersisted.clear();
    this.dirty = false;
    if (previous > 0) {
      try {
        unlinkSync(path.join(this.dir, hnswFileName(previous)));
      } catch {
        // Already gone; a leftover would be removed on the next open anyway.
      }
    }
    return true;
  }

  // ---------------------------------------------------------------- search primitives

  /** Passage labels admitted by a filter, computed in SQL so the graph search can test membership per candidate. */
  allowedLabels(filter: SearchFilter): Set<number> {
    this.assertOpen();
    const { where, params } = filterToSql(filter);
    const labels = this.prepare(`SELECT p.label FROM passages p WHERE ${where}`).pluck().all(...params) as number[];
    return new Set(labels);
  }

  /** Approximate nearest neighbours by cosine similarity; a filter is applied inside the graph walk. */
  denseSearch(vector: Float32Array, k: number, options: DenseSearchOptions = {}): LabelScore[] {
    this.assertOpen();
    this.assertQueryVector(vector);
    if (k <= 0) return [];
    let allow: ((label: number) => boolean) | undefined;
    if (!isEmptyFilter(options.filter)) {
      const allowed = this.allowedLabels(options.filter!);
      if (allowed.size === 0) return [];
      if (allowed.size <= (this.options.exactFilterThreshold ?? DEFAULT_EXACT_FILTER_THRESHOLD)) {
        return this.exactSearchAmong(vector, k, [...allowed]);
      }
      allow = (label) => allowed.has(label);
    }
    return this.graph.search(vector, k, options.ef ?? this.efSearch, allow);
  }

  /** Brute-force cosine similarity over the stored vectors (the reference for HNSW recall). */
  exactSearch(vector: Float32Array, k: number, filter?: SearchFilter): LabelScore[] {
    this.assertOpen();
    this.assertQueryVector(vector);
    if (k <= 0) return [];
    const query = normalized(vector);
    const { where, params } = filterToSql(filter);
    const select = isEmptyFilter(filter)
      ? this.prepare('SELECT label, vector FROM passage_vectors')
      : this.prepare(`SELECT v.label, v.vector FROM passage_vectors v JOIN passages p ON p.label = v.label WHERE ${where}`);
    const top = new TopK(k);
    for (const [label, blob] of select.raw().iterate(...params) as IterableIterator<[number, Buffer]>) {
      top.offer(label, dot(query, blobToVector(blob)));
    }
    return top.result();
  }

  private exactSearchAmong(vector: Float32Array, k: number, labels: number[]): LabelScore[] {
    const query = normalized(vector);
    const top = new TopK(k);
    const select = this.prepare('SELECT label, vector FROM passage_vectors WHERE label IN (SELECT value FROM json_each(?))');
    for (const batch of chunks(labels, SQL_BATCH * 4)) {
      for (const [label, blob] of select.raw().iterate(JSON.stringify(batch)) as IterableIterator<[number, Buffer]>) {
        top.offer(label, dot(query, blobToVector(blob)));
      }
    }
    return top.result();
  }

  /**
   * BM25 over FTS5, higher is better. `match` must already be a safe FTS5 expression (see the retrieval stage's
   * query builder); the filter is joined in SQL.
   */
  bm25Search(match: string, k: number, options: Bm25Options = {}): LabelScore[] {
    this.assertOpen();
    if (k <= 0 || match.trim() === '') return [];
    const { where, params } = filterToSql(options.filter);
    const titleWeight = options.titleWeight ?? 1;
    const textWeight = options.textWeight ?? 1;
    // Without a filter the join is pure overhead: every FTS row has its passage.
    const join = isEmptyFilter(options.filter) ? '' : `JOIN passages p ON p.label = passages_fts.rowid AND ${where} `;
    const select = this.prepare(
      'SELECT passages_fts.rowid AS label, -bm25(passages_fts, ?, ?) AS score FROM passages_fts ' +
        `${join}WHERE passages_fts MATCH ? ORDER BY score DESC, passages_fts.rowid LIMIT ?`,
    );
    return select.all(titleWeight, textWeight, ...(join ? params : []), match, k) as LabelScore[];
  }

  passagesByLabels(labels: number[]): Map<number, PassageRecord> {
    this.assertOpen();
    const out = new Map<number, PassageRecord>();
    const select = this.prepare('SELECT * FROM passages WHERE label IN (SELECT value FROM json_each(?))');
    for (const batch of chunks(labels, SQL_BATCH)) {
      for (const row of select.all(JSON.stringify(batch)) as PassageRow[]) out.set(row.label, toPassageRecord(row));
    }
    return out;
  }

  // ---------------------------------------------------------------- health

  stats(): StoreStats {
    this.assertOpen();
    const count = (sql: string) => Number(this.prepare(sql).pluck().get());
    return {
      embedModel: this.embedModel,
      dim: this.dim,
      documents: count('SELECT count(*) FROM documents'),
      passages: count('SELECT count(*) FROM passages'),
      vectors: count('SELECT count(*) FROM passage_vectors'),
      hnswLive: this.graph.liveCount,
      pending: count('SELECT count(*) FROM passages WHERE in_hnsw = 0'),
      hnswCapacity: this.graph.capacity,
      generation: this.generation,
      rebuiltFromVectors: this.rebuiltFromVectors,
    };
  }

  /**
   * Checks every cross-store invariant: SQLite ↔ FTS ↔ vectors ↔ in-memory graph (each passage live with its own
   * vector, nothing else live), and that the saved file of the current generation holds every `in_hnsw = 1` passage.
   */
  verify(): VerifyReport {
    this.assertOpen();
    const problems: string[] = [];
    const count = (sql: string) => Number(this.prepare(sql).pluck().get());

    const orphans = count('SELECT count(*) FROM passages p LEFT JOIN documents d ON d.id = p.doc_id WHERE d.id IS NULL');
    if (orphans > 0) problems.push(`${orphans} passages belong to no document`);
    const noVector = count('SELECT count(*) FROM passages p LEFT JOIN passage_vectors v ON v.label = p.label WHERE v.label IS NULL');
    if (noVector > 0) problems.push(`${noVector} passages have no stored vector`);
    const strayVectors = count('SELECT count(*) FROM passage_vectors v LEFT JOIN passages p ON p.label = v.label WHERE p.label IS NULL');
    if (strayVectors > 0) problems.push(`${strayVectors} stored vectors belong to no passage`);
    const passages = count('SELECT count(*) FROM passages');
    const ftsRows = count('SELECT count(*) FROM passages_fts_docsize');
    if (ftsRows !== passages) problems.push(`FTS index has ${ftsRows} rows for ${passages} passages`);
    if (!this.readonly) {
      try {
        this.db.prepare("INSERT INTO passages_fts(passages_fts, rank) VALUES ('integrity-check', 1)").run();
      } catch (err) {
        problems.push(`FTS integrity check failed: ${(err as Error).message}`);
      }
    }

    const owned = new Map<number, Float32Array>();
    const vectors = this.db.prepare('SELECT label, vector FROM passage_vectors').raw();
    for (const [label, blob] of vectors.iterate() as IterableIterator<[number, Buffer]>) owned.set(label, blobToVector(blob));
    for (const [label, vector] of owned) {
      const inGraph = this.graph.isLive(label) ? this.graph.storedVector(label) : undefined;
      if (!inGraph) problems.push(`passage label ${label} is not searchable in the HNSW graph`);
      else if (Math.abs(dot(inGraph, vector) - 1) > 1e-3) problems.push(`HNSW vector of label ${label} differs from the stored one`);
    }
    for (const label of this.graph.allGraphLabels()) {
      if (!owned.has(label) && this.graph.storedVector(label) !== undefined) {
        problems.push(`HNSW label ${label} is searchable but has no passage`);
      }
    }
    problems.push(...this.verifySavedFile());
    return { ok: problems.length === 0, problems, stats: this.stats() };
  }

  private verifySavedFile(): string[] {
    const problems: string[] = [];
    const saved = this.prepare('SELECT label FROM passages WHERE in_hnsw = 1').pluck().all() as number[];
    if (this.generation === 0) {
      if (saved.length > 0) problems.push(`${saved.length} passages are flagged in_hnsw but no HNSW file was ever saved`);
      return problems;
    }
    const file = path.join(this.dir, hnswFileName(this.generation));
    let fileGraph: HnswGraph;
    try {
      fileGraph = HnswGraph.load(file, this.dim, this.manifest.hnsw);
    } catch (err) {
      return [`HNSW file ${file} of generation ${this.generation} cannot be read: ${(err as Error).message}`];
    }
    const missing = saved.filter((label) => fileGraph.storedVector(label) === undefined);
    if (missing.length > 0) problems.push(`${missing.length} passages flagged in_hnsw are not live in ${hnswFileName(this.generation)}`);
    if (!this.readonly) {
      const pending = this.prepare('SELECT label FROM passages WHERE in_hnsw = 0').pluck().all() as number[];
      const untracked = pending.filter((label) => !this.unpersisted.has(label));
      if (untracked.length > 0) problems.push(`${untracked.length} pending passages are not scheduled for the next checkpoint`);
    }
    return problems;
  }

  close(): void {
    if (this.closed) return;
    try {
      if (!this.readonly && this.dirty) this.checkpoint();
    } finally {
      this.closed = true;
      this.statementCache.clear();
      this.db.close();
      this.lock?.release();
    }
  }

  // ---------------------------------------------------------------- helpers

  private prepare(sql: string): Database.Statement {
    let statement = this.statementCache.get(sql);
    if (!statement) {
      // Filter shapes generate distinct SQL texts; bound the cache rather than trusting their variety to stay small.
      if (this.statementCache.size >= 256) this.statementCache.clear();
      statement = this.db.prepare(sql);
      this.statementCache.set(sql, statement);
    }
    return statement;
  }

  /**
   * One write transaction. SQLite reports a full disk or an exceeded file size limit as a bare "disk I/O error" or
   * "database or disk is full"; the error names the index and what to check, and that the transaction left nothing.
   */
  private commit(what: string, body: () => void): void {
    try {
      this.db.transaction(body).immediate();
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'string' && STORAGE_FAILURES.test(code)) {
        throw new IndexStoreError(
          `could not ${what} in index ${this.dir}: ${(err as Error).message} (${code}; disk full, file size limit, ` +
            'read-only or failing storage?). The transaction was rolled back; everything committed before is intact.',
          { cause: err },
        );
      }
      throw err;
    }
  }

  private fault(point: FaultPoint): void {
    this.options.faultHook?.(point);
  }

  private assertOpen(): void {
    if (this.closed) throw new IndexStoreError(`index ${this.dir} is closed`);
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.readonly) throw new IndexStoreError(`index ${this.dir} was opened read-only`);
  }

  private assertQueryVector(vector: Float32Array): void {
    if (vector.length !== this.dim) {
      throw new IndexStoreError(`query vector has ${vector.length} dimensions; index ${this.dir} holds ${this.dim}-d vectors`);
    }
  }
}
