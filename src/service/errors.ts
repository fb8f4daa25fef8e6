import { DomainError, type ErrorKind } from '../common/errors.js';
import { QueueFullError } from './admission-queue.js';

/** Service-level errors: a plain one is a fault (500); the subclasses are refusals, each of its kind. */
export class ServiceError extends DomainError {
  override name = 'ServiceError';
  readonly kind: ErrorKind = 'internal';
  readonly code: string = 'internal_error';
}

/** Too many write requests are already waiting; nothing was changed. */
export class WriteQueueFullError extends QueueFullError {
  override name = 'WriteQueueFullError';
  override readonly code: string = 'write_queue_full';
  constructor(retryAfterSeconds: number) {
    super(retryAfterSeconds, 'too many document writes are waiting; retry later');
  }
}

/** A write was cancelled (timeout, client gone, shutdown) before its transaction committed: nothing was changed. */
export class WriteCancelledError extends ServiceError {
  override name = 'WriteCancelledError';
  override readonly kind: ErrorKind = 'cancelled';
  override readonly code: string = 'write_cancelled';
  override readonly outcome = 'the write was not applied, nothing was changed';
  constructor(readonly reason: unknown) {
    super('the write was cancelled before it was applied; nothing was changed', { cause: reason });
  }

  override get clientMessage(): string {
    return `the write was cancelled; ${this.outcome}`;
  }
}

/** The server opened its index read-only (`server.readOnly`). */
export class ReadOnlyIndexError extends ServiceError {
  override name = 'ReadOnlyIndexError';
  override readonly kind: ErrorKind = 'read_only';
  override readonly code: string = 'read_only';
}

/** SQLite, FTS and HNSW disagree in a way the store cannot reconcile by itself. */
export class IndexInconsistentError extends ServiceError {
  override name = 'IndexInconsistentError';
  constructor(
    readonly dir: string,
    readonly problems: string[],
  ) {
    const shown = problems.slice(0, 5).join('; ') + (problems.length > 5 ? `; … ${problems.length - 5} more` : '');
    super(
      `index ${dir} is inconsistent: ${shown}. Its files disagree beyond what crash recovery repairs. To repair, stop ` +
        `the server, move the folder ${dir} aside and rebuild the index by re-running the ingest of your sources ` +
        '(npm run ingest -- <paths> --collection <name>; with server.ingestCorpusOnStart a missing index is rebuilt from ' +
        'corpusDir on start). Set server.verifyIndexOnStart to false only to inspect it.',
    );
  }
}

/** No collection of this name exists. */
export class CollectionNotFoundError extends ServiceError {
  override name = 'CollectionNotFoundError';
  override readonly kind: ErrorKind = 'not_found';
  override readonly code: string = 'collection_not_found';
  override readonly field = 'collection';
  constructor(readonly collection: string) {
    super(`no collection named "${collection}"`);
  }
}

/** A collection of this name exists already. */
export class CollectionExistsError extends ServiceError {
  override name = 'CollectionExistsError';
  override readonly kind: ErrorKind = 'conflict';
  override readonly code: string = 'collection_exists';
  override readonly field = 'name';
  constructor(readonly collection: string) {
    super(`a collection named "${collection}" exists already`);
  }
}

/** The default collection is what the unscoped routes use; it cannot be deleted. */
export class CollectionProtectedError extends ServiceError {
  override name = 'CollectionProtectedError';
  override readonly kind: ErrorKind = 'conflict';
  override readonly code: string = 'collection_protected';
  override readonly field = 'name';
}
