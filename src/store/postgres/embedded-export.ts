/**
 * Reads an embedded (SQLite) index's documents with their passages and stored vectors, for the move into PostgreSQL.
 * Lives inside src/store because it knows the embedded engine's tables. It opens the database read-only, so it can
 * run beside a server that serves the index.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { IndexNotFoundError } from '../errors.js';
import type { DocumentWrite, Metadata } from '../types.js';

function parseMetadata(json: string): Metadata {
  const value = JSON.parse(json) as unknown;
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Metadata) : {};
}

/** Every document of the embedded index in `dir`, in pages of `pageDocuments`, ordered by id, from one snapshot. */
export async function* exportEmbeddedIndex(dir: string, pageDocuments: number): AsyncGenerator<DocumentWrite[]> {
  const file = path.join(dir, 'index.sqlite');
  if (!existsSync(file)) throw new IndexNotFoundError(`no embedded index at ${dir} (missing index.sqlite)`);
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    db.exec('BEGIN');
    const docs = db.prepare('SELECT id, title, content_hash, chunking, metadata FROM documents WHERE id > ? ORDER BY id LIMIT ?');
    const passages = db.prepare(
      'SELECT p.chunk_no, p.id, p.title, p.text, p.metadata, p.char_start, p.char_end, v.vector FROM passages p ' +
        'JOIN passage_vectors v ON v.label = p.label WHERE p.doc_id = ? ORDER BY p.chunk_no',
    );
    let after = '';
    for (;;) {
      const rows = docs.all(after, pageDocuments) as Array<{ id: string; title: string; content_hash: string; chunking: string; metadata: string }>;
      if (rows.length === 0) break;
      yield rows.map((d) => ({
        document: { id: d.id, title: d.title, contentHash: d.content_hash, chunking: d.chunking, metadata: parseMetadata(d.metadata) },
        passages: (passages.all(d.id) as Array<{
          chunk_no: number;
          id: string;
          title: string;
          text: string;
          metadata: string;
          char_start: number;
          char_end: number;
          vector: Buffer;
        }>).map((p) => ({
          id: p.id,
          chunkNo: p.chunk_no,
          title: p.title,
          text: p.text,
          metadata: parseMetadata(p.metadata),
          charStart: p.char_start,
          charEnd: p.char_end,
          vector: new Float32Array(new Uint8Array(p.vector).buffer),
        })),
      }));
      after = rows[rows.length - 1]!.id;
    }
    db.exec('COMMIT');
  } finally {
    db.close();
  }
}
