import type pg from 'pg';
import { parseMetadata } from '../../common/metadata.js';
import type { CollectionManifest } from '../engine.js';
import { CollectionDataNotFoundError, IndexStoreError } from '../errors.js';
import type { DeleteOutcome, DocumentState, DocumentWrite, PassageInput, StoredDocument, WriteOutcome } from '../types.js';
import { normalized, vectorToBlob } from '../vectors.js';
import { inTransaction, query } from './database.js';

/** Channel on which every commit that appends to the change log notifies, with `collection` as payload. */
export const CHANGES_CHANNEL = 'rag_changes';

/**
 * Held from the moment a transaction draws its change ids until it commits. Ids therefore become visible in increasing
 * order, which is what lets a follower keep a single "applied up to" number. Only the last statements of a write run
 * under it; embedding and row writes happen before.
 */
const CHANGE_LOG_LOCK = 0x72_61_67_02;

export type ChangeKind = 'upsert' | 'delete' | 'create-collection' | 'drop-collection';

export interface Change {
  id: number;
  kind: ChangeKind;
  docId: string | null;
  /** The PostgreSQL transaction that wrote it. */
  txid: number;
}

export interface CollectionRow {
  name: string;
  manifest: CollectionManifest;
  /** The change that created this incarnation of the name. */
  createdChange: number;
}

/** A document as stored in PostgreSQL, with the change that last wrote it. */
export interface StoredDocumentWrite extends DocumentWrite {
  changeId: number;
}

/** Bytes from PostgreSQL may sit at any offset of a shared buffer; Float32Array views need 4-byte alignment. */
function bytesToVector(bytes: Buffer): Float32Array {
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Float32Array(copy.buffer);
}

async function appendChanges(
  client: pg.PoolClient,
  collection: string,
  kind: ChangeKind,
  docIds: Array<string | null>,
): Promise<Map<string | null, number>> {
  await client.query('SELECT pg_advisory_xact_lock($1)', [CHANGE_LOG_LOCK]);
  const { rows } = await client.query<{ id: number; doc_id: string | null }>(
    `INSERT INTO changes(id, collection, kind, doc_id)
     SELECT nextval('changes_id_seq'), $1, $2, d FROM unnest($3::text[]) WITH ORDINALITY AS t(d, n) ORDER BY n
     RETURNING id, doc_id`,
    [collection, kind, docIds],
  );
  await client.query('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, collection]);
  return new Map(rows.map((r) => [r.doc_id, r.id]));
}

function manifestFromRow(row: { manifest: string }): CollectionManifest {
  return JSON.parse(row.manifest) as CollectionManifest;
}

export async function listCollections(pool: pg.Pool): Promise<CollectionRow[]> {
  const { rows } = await query<{ name: string; manifest: string; created_change: number }>(
    pool,
    'list collections',
    'SELECT name, manifest, created_change FROM collections ORDER BY name',
  );
  return rows.map((r) => ({ name: r.name, manifest: manifestFromRow(r), createdChange: r.created_change }));
}

export async function describeCollection(pool: pg.Pool, name: string): Promise<CollectionRow | undefined> {
  const { rows } = await query<{ name: string; manifest: string; created_change: number }>(
    pool,
    'describe collection',
    'SELECT name, manifest, created_change FROM collections WHERE name = $1',
    [name],
  );
  const row = rows[0];
  return row && { name: row.name, manifest: manifestFromRow(row), createdChange: row.created_change };
}

/** Creates the collection unless it exists; two replicas creating it at once both get the one that won. */
export async function createCollection(pool: pg.Pool, name: string, manifest: CollectionManifest): Promise<CollectionRow> {
  return inTransaction(pool, 'create collection', async (client) => {
    // The name's row lock: a concurrent creator waits here and then sees the winner's row.
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`collection:${name}`]);
    const existing = await client.query<{ manifest: string; created_change: number }>(
      'SELECT manifest, created_change FROM collections WHERE name = $1',
      [name],
    );
    if (existing.rows[0]) return { name, manifest: manifestFromRow(existing.rows[0]), createdChange: existing.rows[0].created_change };
    const ids = await appendChanges(client, name, 'create-collection', [null]);
    const createdChange = ids.get(null)!;
    await client.query('INSERT INTO collections(name, embed_model, dim, manifest, created_change) VALUES ($1, $2, $3, $4, $5)', [
      name,
      manifest.embedModel,
      manifest.dim,
      JSON.stringify(manifest),
      createdChange,
    ]);
    return { name, manifest, createdChange };
  });
}

export async function dropCollection(pool: pg.Pool, name: string): Promise<boolean> {
  return inTransaction(pool, 'drop collection', async (client) => {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`collection:${name}`]);
    // Waits for writes in flight (they hold the row FOR SHARE), then removes everything by cascade.
    const { rowCount } = await client.query('DELETE FROM collections WHERE name = $1', [name]);
    if (!rowCount) return false;
    await appendChanges(client, name, 'drop-collection', [null]);
    return true;
  });
}

/** Locks the collection against a concurrent drop for the rest of the transaction. */
async function lockCollection(client: pg.PoolClient, name: string): Promise<void> {
  const { rowCount } = await client.query('SELECT 1 FROM collections WHERE name = $1 FOR SHARE', [name]);
  if (!rowCount) throw new CollectionDataNotFoundError(`collection "${name}" does not exist (it may have been dropped by another replica)`);
}

export async function documentStates(pool: pg.Pool, collection: string, ids: string[]): Promise<Map<string, DocumentState>> {
  const { rows } = await query<{ id: string; content_hash: string; chunking: string; passages: number }>(
    pool,
    'read document states',
    `SELECT d.id, d.content_hash, d.chunking,
            (SELECT count(*) FROM passages p WHERE p.collection = d.collection AND p.doc_id = d.id)::int AS passages
     FROM documents d WHERE d.collection = $1 AND d.id = ANY($2::text[])`,
    [collection, ids],
  );
  return new Map(rows.map((r) => [r.id, { contentHash: r.content_hash, chunking: r.chunking, passages: r.passages }]));
}

/**
 * Upserts a batch in one transaction. Documents are written in id order, so two batches sharing ids lock them in the
 * same order (no deadlock cycle); `INSERT … ON CONFLICT` takes each document's row lock, so the same id written
 * through two replicas is serialised: the later transaction replaces the earlier one's passages whole.
 * Resolves with the outcome and the highest change id of the batch.
 */
export async function writeDocuments(
  pool: pg.Pool,
  collection: string,
  dim: number,
  writes: DocumentWrite[],
): Promise<{ outcome: WriteOutcome; changeId: number | undefined }> {
  const seen = new Set<string>();
  for (const { document, passages } of writes) {
    if (document.id === '') throw new IndexStoreError('document id must not be empty');
    if (seen.has(document.id)) throw new IndexStoreError(`document id "${document.id}" occurs twice in one batch`);
    seen.add(document.id);
    for (const p of passages) {
      if (p.vector.length !== dim) {
        throw new IndexStoreError(`passage ${p.id} has a ${p.vector.length}-d vector; collection "${collection}" holds ${dim}-d`);
      }
    }
  }
  if (writes.length === 0) {
    return { outcome: { inserted: 0, replaced: 0, passagesAdded: 0, passagesRemoved: 0, documents: [] }, changeId: undefined };
  }

  return inTransaction(pool, 'write documents', async (client) => {
    await lockCollection(client, collection);
    const ordered = [...writes].sort((a, b) => (a.document.id < b.document.id ? -1 : a.document.id > b.document.id ? 1 : 0));
    const docs = ordered.map((w) => w.document);
    // Rows are inserted (and so locked) in the order given, which is the same id order in every transaction.
    const { rows } = await client.query<{ id: string; inserted: boolean }>(
      `INSERT INTO documents(collection, id, title, content_hash, chunking, metadata, change_id)
       SELECT $1, d.id, d.title, d.content_hash, d.chunking, d.metadata, 0
       FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS d(id, title, content_hash, chunking, metadata, n)
       ORDER BY d.n
       ON CONFLICT (collection, id) DO UPDATE SET title = EXCLUDED.title, content_hash = EXCLUDED.content_hash,
         chunking = EXCLUDED.chunking, metadata = EXCLUDED.metadata, updated_at = now()
       RETURNING id, (xmax = 0) AS inserted`,
      [
        collection,
        docs.map((d) => d.id),
        docs.map((d) => d.title),
        docs.map((d) => d.contentHash),
        docs.map((d) => d.chunking),
        docs.map((d) => JSON.stringify(d.metadata)),
      ],
    );
    const inserted = new Map(rows.map((r) => [r.id, r.inserted]));
    const replacedIds = docs.filter((d) => !inserted.get(d.id)).map((d) => d.id);
    const removed =
      replacedIds.length > 0
        ? await client.query('DELETE FROM passages WHERE collection = $1 AND doc_id = ANY($2::text[])', [collection, replacedIds])
        : undefined;
    const passagesRemoved = removed?.rowCount ?? 0;
    await insertPassages(client, collection, ordered);
    const perDoc = new Map(
      ordered.map((w) => [
        w.document.id,
        { status: inserted.get(w.document.id) ? ('added' as const) : ('updated' as const), passages: w.passages.length },
      ]),
    );
    const changeIds = await appendChanges(
      client,
      collection,
      'upsert',
      ordered.map((w) => w.document.id),
    );
    await client.query(
      `UPDATE documents d SET change_id = c.change_id
       FROM unnest($2::text[], $3::bigint[]) AS c(id, change_id) WHERE d.collection = $1 AND d.id = c.id`,
      [collection, [...changeIds.keys()], [...changeIds.values()]],
    );
    const documents = writes.map((w) => ({ id: w.document.id, ...perDoc.get(w.document.id)! }));
    const outcome: WriteOutcome = {
      inserted: documents.filter((d) => d.status === 'added').length,
      replaced: documents.filter((d) => d.status === 'updated').length,
      passagesAdded: writes.reduce((n, w) => n + w.passages.length, 0),
      passagesRemoved,
      documents,
    };
    return { outcome, changeId: Math.max(...changeIds.values()) };
  });
}

async function insertPassages(client: pg.PoolClient, collection: string, writes: DocumentWrite[]): Promise<void> {
  const rows = writes.flatMap((w) => w.passages.map((p) => ({ docId: w.document.id, p })));
  if (rows.length === 0) return;
  await client.query(
    `INSERT INTO passages(collection, doc_id, chunk_no, id, title, text, metadata, char_start, char_end, vector)
     SELECT $1, * FROM unnest($2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[], $9::int[], $10::bytea[])`,
    [
      collection,
      rows.map((r) => r.docId),
      rows.map((r) => r.p.chunkNo),
      rows.map((r) => r.p.id),
      rows.map((r) => r.p.title),
      rows.map((r) => r.p.text),
      rows.map((r) => JSON.stringify(r.p.metadata)),
      rows.map((r) => r.p.charStart),
      rows.map((r) => r.p.charEnd),
      // Stored unit-length, as every engine stores them; replicas apply these exact bytes.
      rows.map((r) => vectorToBlob(normalized(r.p.vector))),
    ],
  );
}

export async function deleteDocuments(
  pool: pg.Pool,
  collection: string,
  ids: string[],
): Promise<{ outcome: DeleteOutcome; changeId: number | undefined }> {
  const unique = [...new Set(ids)].sort();
  return inTransaction(pool, 'delete documents', async (client) => {
    await lockCollection(client, collection);
    const removed = await client.query('DELETE FROM passages WHERE collection = $1 AND doc_id = ANY($2::text[])', [collection, unique]);
    const { rows } = await client.query<{ id: string }>(
      'DELETE FROM documents WHERE collection = $1 AND id = ANY($2::text[]) RETURNING id',
      [collection, unique],
    );
    const deletedSet = new Set(rows.map((r) => r.id));
    const deleted = unique.filter((id) => deletedSet.has(id));
    const changeIds = deleted.length > 0 ? await appendChanges(client, collection, 'delete', deleted) : new Map();
    return {
      outcome: { deleted, missing: unique.filter((id) => !deletedSet.has(id)), passagesRemoved: removed.rowCount ?? 0 },
      changeId: changeIds.size > 0 ? Math.max(...changeIds.values()) : undefined,
    };
  });
}

/**
 * Changes of one collection after `after`, oldest first: about `limit` of them, extended so that the last
 * transaction's changes are all included (a follower applies each transaction in one local commit).
 */
export async function changesAfter(pool: pg.Pool, collection: string, after: number, limit: number): Promise<Change[]> {
  type Row = { id: number; kind: ChangeKind; doc_id: string | null; txid: number };
  const page = await query<Row>(
    pool,
    'read the change log',
    'SELECT id, kind, doc_id, txid FROM changes WHERE collection = $1 AND id > $2 ORDER BY id LIMIT $3',
    [collection, after, limit],
  );
  const rows = page.rows;
  const last = rows[rows.length - 1];
  if (last && rows.length === limit) {
    const rest = await query<Row>(
      pool,
      'read the change log',
      'SELECT id, kind, doc_id, txid FROM changes WHERE collection = $1 AND txid = $2 AND id > $3 ORDER BY id',
      [collection, last.txid, last.id],
    );
    rows.push(...rest.rows);
  }
  return rows.map((r) => ({ id: r.id, kind: r.kind, docId: r.doc_id, txid: r.txid }));
}

/** The newest change of a collection and when it committed (0 when there is none). */
export async function headChange(pool: pg.Pool, collection: string): Promise<number> {
  const { rows } = await query<{ id: number | null }>(
    pool,
    'read the change log',
    'SELECT max(id) AS id FROM changes WHERE collection = $1',
    [collection],
  );
  return rows[0]?.id ?? 0;
}

interface DocumentRow {
  id: string;
  title: string;
  content_hash: string;
  chunking: string;
  metadata: string;
  change_id: number;
}

interface PassageRow {
  doc_id: string;
  chunk_no: number;
  id: string;
  title: string;
  text: string;
  metadata: string;
  char_start: number;
  char_end: number;
  vector: Buffer;
}

function assemble(docs: DocumentRow[], passages: PassageRow[]): StoredDocumentWrite[] {
  const byDoc = new Map<string, PassageInput[]>();
  for (const p of passages) {
    let list = byDoc.get(p.doc_id);
    if (!list) byDoc.set(p.doc_id, (list = []));
    list.push({
      id: p.id,
      chunkNo: p.chunk_no,
      title: p.title,
      text: p.text,
      metadata: parseMetadata(p.metadata),
      charStart: p.char_start,
      charEnd: p.char_end,
      vector: bytesToVector(p.vector),
    });
  }
  return docs.map((d) => {
    const document: StoredDocument = {
      id: d.id,
      title: d.title,
      contentHash: d.content_hash,
      chunking: d.chunking,
      metadata: parseMetadata(d.metadata),
    };
    return { document, passages: byDoc.get(d.id) ?? [], changeId: d.change_id };
  });
}

const DOC_COLUMNS = 'id, title, content_hash, chunking, metadata, change_id';
const PASSAGE_COLUMNS = 'doc_id, chunk_no, id, title, text, metadata, char_start, char_end, vector';

/** Current state of the given documents (absent ones are deleted), read from one snapshot. */
export async function currentDocuments(pool: pg.Pool, collection: string, ids: string[]): Promise<Map<string, StoredDocumentWrite>> {
  return inTransaction(
    pool,
    'read documents',
    async (client) => {
      const docs = await client.query<DocumentRow>(`SELECT ${DOC_COLUMNS} FROM documents WHERE collection = $1 AND id = ANY($2::text[])`, [
        collection,
        ids,
      ]);
      const passages = await client.query<PassageRow>(
        `SELECT ${PASSAGE_COLUMNS} FROM passages WHERE collection = $1 AND doc_id = ANY($2::text[]) ORDER BY doc_id, chunk_no`,
        [collection, ids],
      );
      return new Map(assemble(docs.rows, passages.rows).map((w) => [w.document.id, w]));
    },
    'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
  );
}

/**
 * Every document of a collection in the order replicas apply them (by the change that last wrote each), from one
 * snapshot, in pages handed to `onPage`. Resolves with the snapshot's newest change of the collection: everything up
 * to it is in the pages, nothing after it is.
 */
export async function snapshotDocuments(
  pool: pg.Pool,
  collection: string,
  pageDocuments: number,
  onPage: (page: StoredDocumentWrite[]) => Promise<void>,
): Promise<number> {
  return inTransaction(
    pool,
    'read a collection snapshot',
    async (client) => {
      const head = await client.query<{ id: number | null }>('SELECT max(id) AS id FROM changes WHERE collection = $1', [collection]);
      let after: [number, string] = [-1, ''];
      for (;;) {
        const docs = await client.query<DocumentRow>(
          `SELECT ${DOC_COLUMNS} FROM documents WHERE collection = $1 AND (change_id, id) > ($2, $3)
           ORDER BY change_id, id LIMIT $4`,
          [collection, after[0], after[1], pageDocuments],
        );
        if (docs.rows.length === 0) break;
        const passages = await client.query<PassageRow>(
          `SELECT ${PASSAGE_COLUMNS} FROM passages WHERE collection = $1 AND doc_id = ANY($2::text[]) ORDER BY doc_id, chunk_no`,
          [collection, docs.rows.map((d) => d.id)],
        );
        await onPage(assemble(docs.rows, passages.rows));
        const last = docs.rows[docs.rows.length - 1]!;
        after = [last.change_id, last.id];
      }
      return head.rows[0]?.id ?? 0;
    },
    'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
  );
}

/** Documents and passages of a collection in PostgreSQL, for verify() and stats. */
export async function collectionCounts(pool: pg.Pool, collection: string): Promise<{ documents: number; passages: number }> {
  const { rows } = await query<{ documents: number; passages: number }>(
    pool,
    'count documents',
    `SELECT (SELECT count(*) FROM documents WHERE collection = $1) AS documents,
            (SELECT count(*) FROM passages WHERE collection = $1) AS passages`,
    [collection],
  );
  return rows[0]!;
}

export async function deploymentId(pool: pg.Pool): Promise<string> {
  const { rows } = await query<{ id: string }>(pool, 'read the deployment id', 'SELECT id FROM deployment LIMIT 1');
  if (!rows[0]) throw new IndexStoreError('the database has no deployment id; was it migrated?');
  return rows[0].id;
}

/** One page of documents with passages and vectors, ordered by id in binary order, read from one snapshot. */
export async function exportPage(pool: pg.Pool, collection: string, afterId: string | undefined, limit: number): Promise<DocumentWrite[]> {
  return inTransaction(
    pool,
    'export documents',
    async (client) => {
      const docs = await client.query<DocumentRow>(
        `SELECT ${DOC_COLUMNS} FROM documents WHERE collection = $1 AND ($2::text IS NULL OR id COLLATE "C" > $2::text)
         ORDER BY id COLLATE "C" LIMIT $3`,
        [collection, afterId ?? null, limit],
      );
      if (docs.rows.length === 0) return [];
      const passages = await client.query<PassageRow>(
        `SELECT ${PASSAGE_COLUMNS} FROM passages WHERE collection = $1 AND doc_id = ANY($2::text[]) ORDER BY doc_id, chunk_no`,
        [collection, docs.rows.map((d) => d.id)],
      );
      return assemble(docs.rows, passages.rows).map(({ document, passages: p }) => ({ document, passages: p }));
    },
    'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
  );
}
