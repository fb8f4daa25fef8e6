import type pg from 'pg';

/**
 * Versioned schema changes, applied in order on start. A migration is never edited once released: a change to the
 * schema is a new entry, so every replica and every backup converges on the same schema.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * `changes.id` doubles as the replicas' checkpoint. It is drawn while holding a transaction-level advisory lock that
 * is kept until commit (see `appendChanges`), so ids become visible in increasing order: a follower that has seen
 * change N has also seen every change below N, and never skips one committed late.
 *
 * Text columns hold metadata as the exact JSON the writer serialised (jsonb would reorder keys), and vectors as
 * little-endian float32 bytes of the unit-length embedding: 1.5 KB per 384-d passage, no text parsing on rebuild.
 */
export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'collections, documents, passages, change log',
    sql: `
CREATE TABLE deployment (
  id uuid PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- manifest: the collection's CollectionManifest as JSON; created_change: the change that created this incarnation of
-- the name, so a replica can tell a dropped-and-recreated collection from the one its local index was built from.
CREATE TABLE collections (
  name text PRIMARY KEY,
  embed_model text NOT NULL,
  dim integer NOT NULL CHECK (dim > 0),
  manifest text NOT NULL,
  created_change bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE documents (
  collection text NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
  id text NOT NULL,
  title text NOT NULL,
  content_hash text NOT NULL,
  chunking text NOT NULL,
  metadata text NOT NULL,
  change_id bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (collection, id)
);
CREATE INDEX documents_by_change ON documents(collection, change_id, id);

CREATE TABLE passages (
  collection text NOT NULL,
  doc_id text NOT NULL,
  chunk_no integer NOT NULL,
  id text NOT NULL,
  title text NOT NULL,
  text text NOT NULL,
  metadata text NOT NULL,
  char_start integer NOT NULL,
  char_end integer NOT NULL,
  vector bytea NOT NULL,
  PRIMARY KEY (collection, doc_id, chunk_no),
  FOREIGN KEY (collection, doc_id) REFERENCES documents(collection, id) ON DELETE CASCADE
);

CREATE TABLE changes (
  id bigint PRIMARY KEY,
  collection text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('upsert', 'delete', 'create-collection', 'drop-collection')),
  doc_id text,
  -- The writing transaction: a follower never splits one transaction's changes across two local commits.
  txid bigint NOT NULL DEFAULT txid_current(),
  committed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX changes_by_collection ON changes(collection, id);
CREATE SEQUENCE changes_id_seq OWNED BY changes.id;
`,
  },
];

/** Key of the session advisory lock that serialises migrations across replicas starting together. */
const MIGRATION_LOCK = 0x72_61_67_01;

/**
 * Applies the missing migrations, each in its own transaction, while holding an advisory lock: a second replica
 * starting at the same moment waits, then finds nothing left to do.
 */
export async function migrate(pool: pg.Pool, log?: { info(obj: object, msg?: string): void }): Promise<number[]> {
  const client = await pool.connect();
  const applied: number[] = [];
  const ignore = () => undefined; // A lost connection surfaces through the next query.
  client.on('error', ignore);
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      await client.query(
        'CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
      );
      const done = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
      const latest = Math.max(...MIGRATIONS.map((m) => m.version));
      const newer = [...done].filter((v) => v > latest);
      if (newer.length > 0) {
        throw new Error(
          `the database has schema version ${Math.max(...newer)}, newer than this build knows (${latest}); upgrade the replica`,
        );
      }
      for (const migration of MIGRATIONS) {
        if (done.has(migration.version)) continue;
        await client.query('BEGIN');
        try {
          await client.query(migration.sql);
          if (migration.version === 1) await client.query('INSERT INTO deployment(id) VALUES (gen_random_uuid())');
          await client.query('INSERT INTO schema_migrations(version, name) VALUES ($1, $2)', [migration.version, migration.name]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK');
          throw err;
        }
        applied.push(migration.version);
        log?.info({ version: migration.version, name: migration.name }, 'database migration applied');
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
    }
  } finally {
    client.removeListener('error', ignore);
    client.release();
  }
  return applied;
}
