import type Database from 'better-sqlite3';
import { parseMetadata } from '../../common/metadata.js';
import type { TimeSlice } from '../../common/time-slice.js';
import { IndexStoreError } from '../errors.js';
import { filterToSql, isEmptyFilter } from '../filter-sql.js';
import type { DocumentInfo, DocumentPage, ListDocumentsOptions } from '../engine.js';
import { exactTopK } from '../exact-index.js';
import type { DeleteOutcome, DocumentState, DocumentWrite, LabelScore, PassageRecord, SearchFilter, WriteOutcome } from '../types.js';
import { blobToVector, normalized, vectorToBlob } from '../vectors.js';

const SQL_BATCH = 500;
/** Labels per DELETE statement: small enough that one statement (FTS rows included) stays within a time slice. */
const DELETE_BATCH = 64;
/** Labels flagged per UPDATE statement of a generation switch. */
const FLAG_BATCH = 1000;
const MAX_PAGE = 1000;
/** SQLite result codes that mean the storage refused a write, not that the statement was wrong. */
const STORAGE_FAILURES = /^SQLITE_(FULL|IOERR|READONLY|CANTOPEN)/;

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

export function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
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

/** Plain words → an FTS5 MATCH expression: each word a quoted string (so never syntax), OR-ed. */
export function ftsMatchExpression(terms: readonly string[]): string {
  return terms.map((term) => `"${term.replaceAll('"', '""')}"`).join(' OR ');
}

/** What a committed write changed in the passage tables, for the vector index to follow. */
export interface TableChanges {
  added: Map<number, Float32Array>;
  removed: number[];
}

/** A write performed inside an open transaction of the writer connection, waiting for its commit or rollback. */
export interface StagedWrite<Outcome> {
  outcome: Outcome;
  changes: TableChanges;
  /** Makes the write visible to every reader at once; on failure the transaction is rolled back and the error thrown. */
  commit(): void;
  rollback(): void;
}

/**
 * The SQLite side of a collection: documents, passages, their FTS5 rows (kept by triggers, see schema.ts) and
 * stored unit vectors. Every write is one immediate transaction. Knows nothing of the HNSW graph.
 */
export class PassageTables {
  private readonly statementCache = new Map<string, Database.Statement>();
  private readonly writerStatements = new Map<string, Database.Statement>();

  constructor(
    /** Reads, and the short synchronous protocol transactions. */
    readonly db: Database.Database,
    private readonly location: string,
    /**
     * Writers only: a second connection to the same database for document writes, whose transactions span
     * event-loop turns. WAL gives `db` a snapshot of the last commit meanwhile, so reads never see half a write.
     */
    private readonly writer?: Database.Database,
  ) {}

  // ---------------------------------------------------------------- writes

  /**
   * Opens the write transaction of a batch of documents on the writer connection and performs it there, returning
   * to the event loop whenever `slice` is used up. Nothing is visible to this process's reads (or any other's) until
   * the caller commits; it must commit or roll back before any other write.
   */
  async stageWrite(writes: DocumentWrite[], dim: number, slice: TimeSlice): Promise<StagedWrite<WriteOutcome>> {
    const ids = new Set<string>();
    let passageCount = 0;
    for (const { document, passages } of writes) {
      if (document.id === '') throw new IndexStoreError('document id must not be empty');
      if (ids.has(document.id)) throw new IndexStoreError(`document ${JSON.stringify(document.id)} occurs twice in one write`);
      ids.add(document.id);
      for (const p of passages) {
        if (p.vector.length !== dim) {
          throw new IndexStoreError(`passage ${p.id} has a ${p.vector.length}-d vector; index ${this.location} holds ${dim}-d`);
        }
      }
      passageCount += passages.length;
    }
    const what = 'write documents';
    const writer = this.writerConnection();
    let label = passageCount > 0 ? this.reserveLabels(writer, passageCount) : 0;
    const existsDoc = this.prepareOn(writer, 'SELECT 1 FROM documents WHERE id = ?').pluck();
    const upsertDoc = this.prepareOn(
      writer,
      'INSERT INTO documents (id, title, content_hash, chunking, metadata, updated_at) VALUES (?, ?, ?, ?, ?, ?) ' +
        'ON CONFLICT(id) DO UPDATE SET title = excluded.title, content_hash = excluded.content_hash, ' +
        'chunking = excluded.chunking, metadata = excluded.metadata, updated_at = excluded.updated_at',
    );
    const insertPassage = this.prepareOn(
      writer,
      'INSERT INTO passages (label, id, doc_id, chunk_no, title, text, metadata, char_start, char_end, page_start, page_end, section, in_hnsw) ' +
        'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)',
    );
    const insertVector = this.prepareOn(writer, 'INSERT INTO passage_vectors (label, vector) VALUES (?, ?)');

    const changes: TableChanges = { added: new Map(), removed: [] };
    const outcome: WriteOutcome = { inserted: 0, replaced: 0, passagesAdded: 0, passagesRemoved: 0, documents: [] };
    const tx = this.begin(writer, what);
    try {
      const now = Date.now();
      for (const { document, passages } of writes) {
        const existed = existsDoc.get(document.id) !== undefined;
        if (existed) {
          const labels = await this.deletePassagesOf(writer, document.id, slice);
          changes.removed.push(...labels);
          outcome.passagesRemoved += labels.length;
          outcome.replaced++;
        } else {
          outcome.inserted++;
        }
        outcome.documents.push({ id: document.id, status: existed ? 'updated' : 'added', passages: passages.length });
        upsertDoc.run(document.id, document.title, document.contentHash, document.chunking, JSON.stringify(document.metadata), now);
        for (const p of passages) {
          insertPassage.run(
            label,
            p.id,
            document.id,
            p.chunkNo,
            p.title,
            p.text,
            JSON.stringify(p.metadata),
            p.charStart,
            p.charEnd,
            p.pageStart ?? null,
            p.pageEnd ?? null,
            p.section ? JSON.stringify(p.section) : null,
          );
          const unit = normalized(p.vector);
          insertVector.run(label, vectorToBlob(unit));
          changes.added.set(label++, unit);
          outcome.passagesAdded++;
          if (slice.due) await slice.next();
        }
      }
    } catch (err) {
      tx.rollback();
      throw this.storageError(what, err);
    }
    return { outcome, changes, commit: () => tx.commit(), rollback: () => tx.rollback() };
  }

  /** Like `stageWrite`, for deleting documents (a missing id is reported, not an error). */
  async stageDelete(ids: string[], slice: TimeSlice): Promise<StagedWrite<DeleteOutcome>> {
    const what = 'delete documents';
    const writer = this.writerConnection();
    const deleteDoc = this.prepareOn(writer, 'DELETE FROM documents WHERE id = ?');
    const outcome: DeleteOutcome = { deleted: [], missing: [], passagesRemoved: 0 };
    const changes: TableChanges = { added: new Map(), removed: [] };
    const tx = this.begin(writer, what);
    try {
      for (const id of new Set(ids)) {
        const labels = await this.deletePassagesOf(writer, id, slice);
        changes.removed.push(...labels);
        outcome.passagesRemoved += labels.length;
        if (deleteDoc.run(id).changes > 0) outcome.deleted.push(id);
        else outcome.missing.push(id);
        if (slice.due) await slice.next();
      }
    } catch (err) {
      tx.rollback();
      throw this.storageError(what, err);
    }
    return { outcome, changes, commit: () => tx.commit(), rollback: () => tx.rollback() };
  }

  /** Deletes a document's passages (FTS rows go with them, by trigger) in slices of labels. */
  private async deletePassagesOf(writer: Database.Database, docId: string, slice: TimeSlice): Promise<number[]> {
    const labels = this.prepareOn(writer, 'SELECT label FROM passages WHERE doc_id = ?').pluck().all(docId) as number[];
    const deleteVectors = this.prepareOn(writer, 'DELETE FROM passage_vectors WHERE label IN (SELECT value FROM json_each(?))');
    const deletePassages = this.prepareOn(writer, 'DELETE FROM passages WHERE label IN (SELECT value FROM json_each(?))');
    for (const batch of chunks(labels, DELETE_BATCH)) {
      const json = JSON.stringify(batch);
      deleteVectors.run(json);
      deletePassages.run(json);
      if (slice.due) await slice.next();
    }
    return labels;
  }

  /**
   * Hands out `count` passage labels in a transaction of its own, committed before the write that uses them: a write
   * rolled back after its passages entered the in-memory graph can then never give those labels to other passages.
   */
  private reserveLabels(writer: Database.Database, count: number): number {
    let first = 1;
    this.commitOn(writer, 'reserve passage labels', () => {
      const seq = this.prepareOn(writer, "SELECT seq FROM sqlite_sequence WHERE name = 'passages'").pluck().get() as number | undefined;
      if (seq === undefined) {
        this.prepareOn(writer, "INSERT INTO sqlite_sequence (name, seq) VALUES ('passages', ?)").run(count);
      } else {
        this.prepareOn(writer, "UPDATE sqlite_sequence SET seq = ? WHERE name = 'passages'").run(seq + count);
        first = seq + 1;
      }
    });
    return first;
  }

  private writerConnection(): Database.Database {
    if (!this.writer) throw new IndexStoreError(`index ${this.location} was opened read-only`);
    return this.writer;
  }

  /** BEGIN IMMEDIATE on `db`: the write lock is taken now, so the transaction cannot fail later for want of it. */
  private begin(db: Database.Database, what: string): { commit(): void; rollback(): void } {
    try {
      db.exec('BEGIN IMMEDIATE');
    } catch (err) {
      throw this.storageError(what, err);
    }
    return {
      commit: () => {
        try {
          db.exec('COMMIT');
        } catch (err) {
          if (db.inTransaction) db.exec('ROLLBACK');
          throw this.storageError(what, err);
        }
      },
      rollback: () => {
        if (db.inTransaction) db.exec('ROLLBACK');
      },
    };
  }

  /**
   * A checkpoint's generation switch: flags the labels the saved graph holds and names the new generation, in one
   * transaction of the writer connection worked in time slices (a first checkpoint may flag a whole bulk ingest).
   */
  async switchGeneration(saved: number[], generation: number, slice: TimeSlice): Promise<void> {
    const what = 'switch to the saved HNSW graph';
    const writer = this.writerConnection();
    const markSaved = this.prepareOn(writer, 'UPDATE passages SET in_hnsw = 1 WHERE label IN (SELECT value FROM json_each(?))');
    const setGeneration = this.prepareOn(writer, "UPDATE meta SET value = ? WHERE key = 'hnsw_generation'");
    const tx = this.begin(writer, what);
    try {
      for (const batch of chunks(saved, FLAG_BATCH)) {
        markSaved.run(JSON.stringify(batch));
        if (slice.due) await slice.next();
      }
      setGeneration.run(String(generation));
    } catch (err) {
      tx.rollback();
      throw this.storageError(what, err);
    }
    tx.commit();
  }

  private commitOn(db: Database.Database, what: string, body: () => void): void {
    try {
      db.transaction(body).immediate();
    } catch (err) {
      throw this.storageError(what, err);
    }
  }

  /**
   * SQLite reports a full disk or an exceeded file size limit as a bare "disk I/O error" or "database or disk is
   * full"; the error names the index and what to check, and that the transaction left nothing.
   */
  private storageError(what: string, err: unknown): unknown {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && STORAGE_FAILURES.test(code)) {
      return new IndexStoreError(
        `could not ${what} in index ${this.location}: ${(err as Error).message} (${code}; disk full, file size limit, ` +
          'read-only or failing storage?). The transaction was rolled back; everything committed before is intact.',
        { cause: err },
      );
    }
    return err;
  }

  // ---------------------------------------------------------------- lookups

  documentStates(ids: string[]): Map<string, DocumentState> {
    const out = new Map<string, DocumentState>();
    const select = this.prepare(
      'SELECT d.id, d.content_hash, d.chunking, (SELECT count(*) FROM passages p WHERE p.doc_id = d.id) AS passages ' +
        'FROM documents d WHERE d.id IN (SELECT value FROM json_each(?))',
    );
    for (const batch of chunks(ids, SQL_BATCH)) {
      type Row = { id: string; content_hash: string; chunking: string; passages: number };
      for (const row of select.all(JSON.stringify(batch)) as Row[]) {
        out.set(row.id, { contentHash: row.content_hash, chunking: row.chunking, passages: row.passages });
      }
    }
    return out;
  }

  listDocuments(options: ListDocumentsOptions): DocumentPage {
    const limit = Math.min(MAX_PAGE, Math.max(1, options.limit ?? 100));
    const clauses: string[] = [];
    const params: Array<string | number> = [];
    if (options.idPrefix !== undefined && options.idPrefix !== '') {
      // substr, not LIKE/GLOB: the prefix is data, and ids may hold % _ * ? [.
      clauses.push('substr(id, 1, length(?)) = ?');
      params.push(options.idPrefix, options.idPrefix);
    }
    if (options.after !== undefined) {
      clauses.push('id > ?');
      params.push(options.after);
    }
    if (options.metadata !== undefined && Object.keys(options.metadata).length > 0) {
      // Documents carry the same metadata as their passages; the filter SQL addresses the `p` alias.
      const { where, params: filterParams } = filterToSql({ metadata: options.metadata });
      clauses.push(`(${where})`);
      params.push(...filterParams);
    }
    const where = clauses.length > 0 ? `WHERE ${clauses.join(' AND ')}` : '';
    type Row = { id: string; title: string; metadata: string; content_hash: string; chunking: string };
    const rows = this.prepare(`SELECT id, title, metadata, content_hash, chunking FROM documents p ${where} ORDER BY id LIMIT ?`).all(
      ...params,
      limit + 1,
    ) as Row[];
    const page = rows.slice(0, limit).map((r) => ({
      id: r.id,
      title: r.title,
      metadata: parseMetadata(r.metadata),
      contentHash: r.content_hash,
      chunking: r.chunking,
    }));
    return rows.length > limit ? { documents: page, next: page[page.length - 1]!.id } : { documents: page };
  }

  getDocument(id: string): DocumentInfo | undefined {
    type Row = { id: string; title: string; metadata: string; content_hash: string; chunking: string; passages: number };
    const row = this.prepare(
      'SELECT d.id, d.title, d.metadata, d.content_hash, d.chunking, ' +
        '(SELECT count(*) FROM passages p WHERE p.doc_id = d.id) AS passages FROM documents d WHERE d.id = ?',
    ).get(id) as Row | undefined;
    if (!row) return undefined;
    return {
      id: row.id,
      title: row.title,
      metadata: parseMetadata(row.metadata),
      contentHash: row.content_hash,
      chunking: row.chunking,
      passages: row.passages,
    };
  }

  passagesOfDocument(docId: string): PassageRecord[] {
    const rows = this.prepare('SELECT * FROM passages WHERE doc_id = ? ORDER BY chunk_no').all(docId) as PassageRow[];
    return rows.map(toPassageRecord);
  }

  /** One page of documents after `after` (by id) with passages and stored vectors, read in one transaction. */
  exportPage(after: string | undefined, limit: number): DocumentWrite[] {
    return this.db.transaction(() => {
      type Row = { id: string; title: string; metadata: string; content_hash: string; chunking: string };
      const docs = (
        after === undefined
          ? this.prepare('SELECT id, title, metadata, content_hash, chunking FROM documents ORDER BY id LIMIT ?').all(limit)
          : this.prepare('SELECT id, title, metadata, content_hash, chunking FROM documents WHERE id > ? ORDER BY id LIMIT ?').all(
              after,
              limit,
            )
      ) as Row[];
      const select = this.prepare(
        'SELECT p.*, v.vector FROM passages p JOIN passage_vectors v ON v.label = p.label WHERE p.doc_id = ? ORDER BY p.chunk_no',
      );
      return docs.map((d) => ({
        document: { id: d.id, title: d.title, contentHash: d.content_hash, chunking: d.chunking, metadata: parseMetadata(d.metadata) },
        passages: (select.all(d.id) as Array<PassageRow & { vector: Buffer }>).map((row) => {
          const { label: _label, docId: _docId, ...fields } = toPassageRecord(row);
          // A copy: the blob's memory belongs to SQLite's row buffer.
          return { ...fields, vector: Float32Array.from(blobToVector(row.vector)) };
        }),
      }));
    })();
  }

  passagesByLabels(labels: number[]): Map<number, PassageRecord> {
    const out = new Map<number, PassageRecord>();
    const select = this.prepare('SELECT * FROM passages WHERE label IN (SELECT value FROM json_each(?))');
    for (const batch of chunks(labels, SQL_BATCH)) {
      for (const row of select.all(JSON.stringify(batch)) as PassageRow[]) out.set(row.label, toPassageRecord(row));
    }
    return out;
  }

  // ---------------------------------------------------------------- search

  /** BM25 over FTS5, higher is better; the filter is joined in SQL. */
  bm25Search(terms: readonly string[], k: number, filter: SearchFilter | undefined, titleWeight: number, textWeight: number): LabelScore[] {
    const match = ftsMatchExpression(terms.filter((t) => t !== ''));
    if (k <= 0 || match === '') return [];
    const { where, params } = filterToSql(filter);
    // Without a filter the join is pure overhead: every FTS row has its passage.
    const join = isEmptyFilter(filter) ? '' : `JOIN passages p ON p.label = passages_fts.rowid AND ${where} `;
    const select = this.prepare(
      'SELECT passages_fts.rowid AS label, -bm25(passages_fts, ?, ?) AS score FROM passages_fts ' +
        `${join}WHERE passages_fts MATCH ? ORDER BY score DESC, passages_fts.rowid LIMIT ?`,
    );
    return select.all(titleWeight, textWeight, ...(join ? params : []), match, k) as LabelScore[];
  }

  /** Passage labels admitted by a filter, computed in SQL so a graph search can test membership per candidate. */
  allowedLabels(filter: SearchFilter): Set<number> {
    const { where, params } = filterToSql(filter);
    return new Set(
      this.prepare(`SELECT p.label FROM passages p WHERE ${where}`)
        .pluck()
        .all(...params) as number[],
    );
  }

  /** Brute force over the stored (unit) vectors passing the filter, streamed so memory stays flat. */
  exactSearch(unitQuery: Float32Array, k: number, filter: SearchFilter | undefined): LabelScore[] {
    const { where, params } = filterToSql(filter);
    const select = isEmptyFilter(filter)
      ? this.prepare('SELECT label, vector FROM passage_vectors')
      : this.prepare(`SELECT v.label, v.vector FROM passage_vectors v JOIN passages p ON p.label = v.label WHERE ${where}`);
    return exactTopK(unitQuery, this.vectorRows(select.raw().iterate(...params) as IterableIterator<[number, Buffer]>), k);
  }

  /** Brute force over the given labels only (a filter admitting few passages). */
  exactSearchAmong(unitQuery: Float32Array, k: number, labels: number[]): LabelScore[] {
    return exactTopK(unitQuery, this.storedVectors(labels), k);
  }

  /** Stored unit vectors of the given labels (missing labels are skipped). */
  *storedVectors(labels: number[]): Generator<[number, Float32Array]> {
    const select = this.prepare('SELECT label, vector FROM passage_vectors WHERE label IN (SELECT value FROM json_each(?))');
    for (const batch of chunks(labels, SQL_BATCH * 4)) {
      yield* this.vectorRows(select.raw().iterate(JSON.stringify(batch)) as IterableIterator<[number, Buffer]>);
    }
  }

  /** Every stored vector. */
  allVectors(): Generator<[number, Float32Array]> {
    return this.vectorRows(
      this.db.prepare('SELECT label, vector FROM passage_vectors').raw().iterate() as IterableIterator<[number, Buffer]>,
    );
  }

  private *vectorRows(rows: IterableIterator<[number, Buffer]>): Generator<[number, Float32Array]> {
    for (const [label, blob] of rows) yield [label, blobToVector(blob)];
  }

  // ---------------------------------------------------------------- counts and invariants

  count(sql: string): number {
    return Number(this.prepare(sql).pluck().get());
  }

  /** Problems among the tables themselves (orphans, missing vectors, FTS out of step). */
  verifyTables(runFtsIntegrityCheck: boolean): string[] {
    const problems: string[] = [];
    const orphans = this.count('SELECT count(*) FROM passages p LEFT JOIN documents d ON d.id = p.doc_id WHERE d.id IS NULL');
    if (orphans > 0) problems.push(`${orphans} passages belong to no document`);
    const noVector = this.count('SELECT count(*) FROM passages p LEFT JOIN passage_vectors v ON v.label = p.label WHERE v.label IS NULL');
    if (noVector > 0) problems.push(`${noVector} passages have no stored vector`);
    const strayVectors = this.count(
      'SELECT count(*) FROM passage_vectors v LEFT JOIN passages p ON p.label = v.label WHERE p.label IS NULL',
    );
    if (strayVectors > 0) problems.push(`${strayVectors} stored vectors belong to no passage`);
    const passages = this.count('SELECT count(*) FROM passages');
    const ftsRows = this.count('SELECT count(*) FROM passages_fts_docsize');
    if (ftsRows !== passages) problems.push(`FTS index has ${ftsRows} rows for ${passages} passages`);
    if (runFtsIntegrityCheck) {
      try {
        this.db.prepare("INSERT INTO passages_fts(passages_fts, rank) VALUES ('integrity-check', 1)").run();
      } catch (err) {
        problems.push(`FTS integrity check failed: ${(err as Error).message}`);
      }
    }
    return problems;
  }

  prepare(sql: string): Database.Statement {
    return this.prepareOn(this.db, sql);
  }

  private prepareOn(db: Database.Database, sql: string): Database.Statement {
    const cache = db === this.db ? this.statementCache : this.writerStatements;
    let statement = cache.get(sql);
    if (!statement) {
      // Filter shapes generate distinct SQL texts; bound the cache rather than trusting their variety to stay small.
      if (cache.size >= 256) cache.clear();
      statement = db.prepare(sql);
      cache.set(sql, statement);
    }
    return statement;
  }

  close(): void {
    this.statementCache.clear();
    this.writerStatements.clear();
    this.writer?.close();
    this.db.close();
  }
}
