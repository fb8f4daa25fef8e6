import { DomainError, type ErrorKind } from '../common/errors.js';

/** Storage errors: a plain one is a fault (500); the subclasses below say which are refusals. */
export class IndexStoreError extends DomainError {
  override name = 'IndexStoreError';
  readonly kind: ErrorKind = 'internal';
  readonly code: string = 'internal_error';
}

/** The index was built with a different embedding model or dimension than the one configured now. */
export class EmbeddingMismatchError extends IndexStoreError {
  override name = 'EmbeddingMismatchError';
  constructor(
    readonly dir: string,
    readonly indexModel: string,
    readonly indexDim: number,
    readonly configuredModel: string,
    readonly configuredDim: number,
  ) {
    super(
      `index ${dir} was built with embedding model "${indexModel}" (${indexDim}-d) but the configured embedding model is ` +
        `"${configuredModel}" (${configuredDim}-d); vectors of different models are not comparable. ` +
        `Configure "${indexModel}" again, or ingest into a new index name.`,
    );
  }
}

/**
 * The storage holds no data for the collection (never created, dropped, or its files are gone). The service reports
 * it to clients as CollectionNotFoundError, by name; this one says where the storage looked.
 */
export class CollectionDataNotFoundError extends IndexStoreError {
  override name = 'CollectionDataNotFoundError';
  override readonly kind: ErrorKind = 'not_found';
  override readonly code: string = 'collection_not_found';
  override readonly field = 'collection';

  /** The message names storage folders; the client learns only that the collection is not there. */
  override get clientMessage(): string {
    return 'no such collection (it does not exist, or it was deleted)';
  }
}

export class IndexLockedError extends IndexStoreError {
  override name = 'IndexLockedError';
  // Another process (an `npm run ingest`) holds the collection's writer lock; it lets go when it finishes.
  override readonly kind: ErrorKind = 'busy';
  override readonly code: string = 'collection_busy';
  override readonly retryAfterSeconds = 5;
}

export class InvalidFilterError extends IndexStoreError {
  override name = 'InvalidFilterError';
  // The request schema refuses what the store refuses; this keeps any gap between them a 400, not a 500.
  override readonly kind: ErrorKind = 'invalid';
  override readonly code: string = 'invalid_request';
  override readonly field = 'filter';
}

export class InvalidCollectionNameError extends IndexStoreError {
  override name = 'InvalidCollectionNameError';
  override readonly kind: ErrorKind = 'invalid';
  override readonly code: string = 'invalid_request';
  override readonly field = 'collection';
}

/** The storage's server cannot be reached (PostgreSQL down or restarting). A write that failed before its commit changed nothing. */
export class StorageUnavailableError extends IndexStoreError {
  override name = 'StorageUnavailableError';
  // PostgreSQL deployment: searches keep being served from the local index meanwhile.
  override readonly kind: ErrorKind = 'unavailable';
  override readonly code: string = 'database_unavailable';
  override readonly retryAfterSeconds = 2;
  constructor(what: string, cause: unknown) {
    super(
      `the database is unavailable (${what}): ${(cause as Error)?.message ?? String(cause)}. Retry shortly: writes are ` +
        'idempotent upserts and deletes, so repeating one is safe.',
      { cause },
    );
  }
}
