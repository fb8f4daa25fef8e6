import type Database from 'better-sqlite3';
import { registerFilterFunctions } from '../filter-sql.js';

export const SCHEMA_VERSION = 1;

/**
 * `passages.label` is the SQLite rowid, the FTS5 rowid and the HNSW label at once; AUTOINCREMENT guarantees a label
 * is never handed out twice, so a label found in an old HNSW file can only mean "that passage" or "deleted".
 * `in_hnsw` = 1 iff the passage's vector is in the HNSW file of the current `hnsw_generation`.
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS documents (
  id TEXT PRIMARY KEY,
  title TEXT NOT NULL,
  content_hash TEXT NOT NULL,
  chunking TEXT NOT NULL,
  metadata TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS passages (
  label INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  chunk_no INTEGER NOT NULL,
  title TEXT NOT NULL,
  text TEXT NOT NULL,
  metadata TEXT NOT NULL,
  char_start INTEGER NOT NULL,
  char_end INTEGER NOT NULL,
  in_hnsw INTEGER NOT NULL DEFAULT 0,
  page_start INTEGER,
  page_end INTEGER,
  section TEXT
);
CREATE INDEX IF NOT EXISTS passages_by_doc ON passages(doc_id, chunk_no);
CREATE INDEX IF NOT EXISTS passages_pending ON passages(label) WHERE in_hnsw = 0;

CREATE TABLE IF NOT EXISTS passage_vectors (
  label INTEGER PRIMARY KEY REFERENCES passages(label) ON DELETE CASCADE,
  vector BLOB NOT NULL
);

CREATE VIRTUAL TABLE IF NOT EXISTS passages_fts USING fts5(
  title, text, content='passages', content_rowid='label', tokenize='porter unicode61'
);

CREATE TRIGGER IF NOT EXISTS passages_fts_insert AFTER INSERT ON passages BEGIN
  INSERT INTO passages_fts(rowid, title, text) VALUES (new.label, new.title, new.text);
END;
CREATE TRIGGER IF NOT EXISTS passages_fts_delete AFTER DELETE ON passages BEGIN
  INSERT INTO passages_fts(passages_fts, rowid, title, text) VALUES ('delete', old.label, old.title, old.text);
END;
CREATE TRIGGER IF NOT EXISTS passages_fts_update AFTER UPDATE OF title, text ON passages BEGIN
  INSERT INTO passages_fts(passages_fts, rowid, title, text) VALUES ('delete', old.label, old.title, old.text);
  INSERT INTO passages_fts(rowid, title, text) VALUES (new.label, new.title, new.text);
END;
`;

export function configureConnection(db: Database.Database, readonly: boolean): void {
  if (!readonly) {
    db.pragma('journal_mode = WAL');
    // FULL: a committed generation switch must survive power loss, because the old HNSW file is deleted after it.
    db.pragma('synchronous = FULL');
  }
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  registerFilterFunctions(db);
}

/** Tables and meta rows in one transaction: a process killed while creating an index leaves all of it or none. */
export function createSchema(db: Database.Database, embedModel: string, dim: number): void {
  db.transaction(() => {
    db.exec(SCHEMA);
    const insertMeta = db.prepare('INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)');
    insertMeta.run('schema_version', String(SCHEMA_VERSION));
    insertMeta.run('embed_model', embedModel);
    insertMeta.run('dim', String(dim));
    insertMeta.run('hnsw_generation', '0');
    addLayoutColumns(db);
  })();
}

/** Whether the database holds an initialised index (a creator may have died before its schema transaction). */
export function hasSchema(db: Database.Database): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get() !== undefined;
}

export function readMeta(db: Database.Database, key: string): string | undefined {
  const row = db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
  return row?.value;
}

/** Indexes made before passages had page ranges and heading paths get the (nullable) columns on their next writable open. */
function addLayoutColumns(db: Database.Database): void {
  const columns = new Set((db.prepare('PRAGMA table_info(passages)').all() as Array<{ name: string }>).map((c) => c.name));
  for (const [name, type] of [
    ['page_start', 'INTEGER'],
    ['page_end', 'INTEGER'],
    ['section', 'TEXT'],
  ]) {
    if (!columns.has(name!)) db.exec(`ALTER TABLE passages ADD COLUMN ${name} ${type}`);
  }
}
