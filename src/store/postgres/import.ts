import type { CollectionManifest } from '../engine.js';
import { EmbeddingMismatchError, CollectionDataNotFoundError } from '../errors.js';
import { SqliteEngine } from '../sqlite/sqlite-engine.js';
import type { DocumentWrite } from '../types.js';
import * as corpus from './corpus.js';
import { createPool, redactedUrl } from './database.js';
import { migrate } from './migrations.js';

export interface ImportTarget {
  url: string;
  connectTimeoutMs: number;
}

export interface ImportSummary {
  documents: number;
  passages: number;
  /** Whether the collection was created by this import (false: documents were upserted into an existing one). */
  created: boolean;
}

/**
 * Copies documents with their passages and stored vectors into a PostgreSQL collection, one transaction per page.
 * Nothing is embedded again. Upserts are idempotent, so an interrupted import is finished by running it again; each
 * page is also a change-log entry per document, so running replicas pick the documents up as they arrive.
 */
export async function importIntoPostgres(
  target: ImportTarget,
  name: string,
  manifest: CollectionManifest,
  pages: AsyncIterable<DocumentWrite[]>,
  onPage?: (progress: { documents: number; passages: number }) => void,
): Promise<ImportSummary> {
  const pool = createPool({ url: target.url, max: 2, connectTimeoutMs: target.connectTimeoutMs });
  try {
    await migrate(pool);
    const existing = await corpus.describeCollection(pool, name);
    if (existing && (existing.manifest.embedModel !== manifest.embedModel || existing.manifest.dim !== manifest.dim)) {
      throw new EmbeddingMismatchError(
        `collection "${name}" at ${redactedUrl(target.url)}`,
        existing.manifest.embedModel,
        existing.manifest.dim,
        manifest.embedModel,
        manifest.dim,
      );
    }
    if (!existing) await corpus.createCollection(pool, name, manifest);
    const summary: ImportSummary = { documents: 0, passages: 0, created: !existing };
    for await (const page of pages) {
      if (page.length === 0) continue;
      await corpus.writeDocuments(pool, name, manifest.dim, page);
      summary.documents += page.length;
      summary.passages += page.reduce((n, w) => n + w.passages.length, 0);
      onPage?.({ documents: summary.documents, passages: summary.passages });
    }
    return summary;
  } finally {
    await pool.end();
  }
}

export interface MoveOptions extends ImportTarget {
  /** The embedded deployment's indexes folder and the collection in it to move. */
  indexesDir: string;
  source: string;
  /** Target collection name in PostgreSQL. */
  collection: string;
  pageDocuments: number;
  onPage?: (progress: { documents: number; passages: number }) => void;
}

/** `npm run migrate-to-postgres`: an embedded collection's documents, passages and vectors into a PostgreSQL collection. */
export async function moveEmbeddedIndexToPostgres(options: MoveOptions): Promise<ImportSummary> {
  const embedded = new SqliteEngine(options.indexesDir);
  const manifest = await embedded.describeCollection(options.source);
  if (!manifest) throw new CollectionDataNotFoundError(`no embedded collection "${options.source}" in ${options.indexesDir}`);
  // Read-only: no writer lock, so it can run beside a server that serves the collection.
  const store = await embedded.openCollection(options.source, {
    embedModel: manifest.embedModel,
    dim: manifest.dim,
    hnsw: manifest.hnsw,
    readonly: true,
    exactFilterThreshold: 0,
  });
  try {
    const { createdAt, embedModel, dim, space, hnsw, chunk } = manifest;
    const target: CollectionManifest = { embedModel, dim, space, hnsw, ...(chunk ? { chunk } : {}), createdAt };
    return await importIntoPostgres(options, options.collection, target, store.exportDocuments(options.pageDocuments), options.onPage);
  } finally {
    await store.close();
    await embedded.close();
  }
}
