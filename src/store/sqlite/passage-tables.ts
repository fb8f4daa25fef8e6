import type Database from 'better-sqlite3';
import { IndexStoreError } from '../errors.js';
import { filterToSql, isEmptyFilter } from '../filter-sql.js';
import type { DocumentInfo, DocumentPage, ListDocumentsOptions } from '../engine.js';
import { exactTopK } from '../exact-index.js';
import type {
  DeleteOutcome,
  DocumentState,
  DocumentWrite,
  LabelScore,
  Metadata,
  PassageRecord,
  SearchFilter,
  WriteOutcome,
} from '../types.js';
import { blobToVector, normalized, vectorToBlob } from '../vectors.js';

const SQL_BATCH = 500;
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

/** Plain words → an FTS5 MATCH expression: each word a quoted string (so never syntax), OR-ed. */
export function ftsMatchExpression(terms: readonly string[]): string {
  return terms.map((term) => `"${term.replaceAll('"', '""')}"`).join(' OR ');
}

/** What a committed write changed in the passage tables, for the vector index to follow. */
export interface TableChanges {
  added: Map<number, Float32Array>;
  removed: number[];
}

/**
 * The SQLite side of a collection: documents, passages, their FTS5 rows (kept by triggers, see schema.ts) and
 * stored unit vectors. Every write is one immediate transaction. Knows nothing of the HNSW graph.
 */
export class PassageTables {
  private readonly statementCache = new Map<string, Database.Statement>();

  constructor(
    readonly db: Database.Database,
    private readonly location: string,
  ) {}

  // ---------------------------------------------------------------- writes

  writeDocuments(writes: DocumentWrite[], dim: number): { outcome: WriteOutcome; changes: TableChanges } {
    const ids = new Set<string>();
    for (const { document, passages } of writes) {
      if (document.id === '') throw new IndexStoreError('document id must not be empty');
      if (ids.has(document.id)) throw new IndexStoreError(`document ${JSON.stringify(document.id)} occurs twice in one write`);
      ids.add(document.id);
      for (const p of passages) {
        if (p.vector.length !== dim) {
          throw new IndexStoreError(`passage ${p.id} has a ${p.vector.length}-d vector; index ${this.location} holds ${dim}-d`);
        }
      }
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

    const changes: TableChanges = { added: new Map(), removed: [] };
    const outcome: WriteOutcome = { inserted: 0, replaced: 0, passagesAdded: 0, passagesRemoved: 0, documents: [] };
    this.commit('write documents', () => {
      const now = Date.now();
      for (const { document, passages } of writes) {
        const existed = existsDoc.get(document.id) !== undefined;
        if (existed) {
          const labels = this.deletePassagesOf(document.id);
          changes.removed.push(...labels);
          outcome.passagesRemoved += labels.length;
          outcome.replaced++;
        } else {
          outcome.inserted++;
        }
        outcome.documents.push({ id: document.id, status: existed ? 'updated' : 'added', passages: passages.length });
        upsertDoc.run(document.id, document.title, document.contentHash, document.chunking, JSON.stringify(document.metadata), now);
        for (const p of passages) {
          const label = insertPassage.get(
            p.id, document.id, p.chunkNo, p.title, p.text, JSON.stringify(p.metadata), p.charStart, p.charEnd,
            p.pageStart ?? null, p.pageEnd ?? null, p.section ? JSON.stringify(p.section) : null,
          ) as number;
          const unit = normalized(p.vector);
          insertVector.run(label, vectorToBlob(unit));
          changes.added.set(label, unit);
          outcome.passagesAdded++;
        }
      }
    });
    return { outcome, changes };
  }

  deleteDocuments(ids: string[]): { outcome: DeleteOutcome; removed: number[] } {
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
    return { outcome, removed };
  }

  private deletePassagesOf(docId: string): number[] {
    this.prepare('DELETE FROM passage_vectors WHERE label IN (SELECT label FROM passages WHERE doc_id = ?)').run(docId);
    return this.prepare('DELETE FROM passages WHERE doc_id = ? RETURNING label').pluck().all(docId) as number[];
  }

  /**
   * One write transaction. SQLite reports a full disk or an exceeded file size limit as a bare "disk I/O error" or
   * "database or disk is full"; the error names the index and what to check, and that the transaction left nothing.
   */
  commit(what: string, body: () => void): void {
    try {
      this.db.transaction(body).immediate();
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'string' && STORAGE_FAILURES.test(code)) {
        throw new IndexStoreError(
          `could not ${what} in index ${this.location}: ${(err as Error).message} (${code}; disk full, file size limit, ` +
            'read-only or failing storage?). The transaction was rolled back; everything committed before is intact.',
          { cause: err },
        );
      }
      throw err;
    }
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
    const rows = this.prepare(
      `SELECT id, title, metadata, content_hash, chunking FROM documents p ${where} ORDER BY id LIMIT ?`,
    ).all(...params, limit + 1) as Row[];
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
          : this.prepare('SELECT id, title, metadata, content_hash, chunking FROM documents WHERE id > ? ORDER BY id LIMIT ?').all(after, limit)
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
    return new Set(this.prepare(`SELECT p.label FROM passages p WHERE ${where}`).pluck().all(...params) as number[]);
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
    return this.vectorRows(this.db.prepare('SELECT label, vector FROM passage_vectors').raw().iterate() as IterableIterator<[number, Buffer]>);
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
    const strayVectors = this.count('SELECT count(*) FROM passage_vectors v LEFT JOIN passages p ON p.label = v.label WHERE p.label IS NULL');
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
    let statement = this.statementCache.get(sql);
    if (!statement) {
      // Filter shapes generate distinct SQL texts; bound the cache rather than trusting their variety to stay small.
      if (this.statementCache.size >= 256) this.statementCache.clear();
      statement = this.db.prepare(sql);
      this.statementCache.set(sql, statement);
    }
    return statement;
  }

  close(): void {
    this.statementCache.clear();
    this.db.close();
  }
}
