/** Service-level refusals; the HTTP layer maps each to a status code. */
export class ServiceError extends Error {
  override name = 'ServiceError';
}

/** Too many write requests are already waiting; nothing was changed. */
export class WriteQueueFullError extends ServiceError {
  override name = 'WriteQueueFullError';
  constructor(readonly retryAfterSeconds: number) {
    super('too many document writes are waiting; retry later');
  }
}

/** A write was cancelled (timeout, client gone, shutdown) before its transaction committed: nothing was changed. */
export class WriteCancelledError extends ServiceError {
  override name = 'WriteCancelledError';
  constructor(readonly reason: unknown) {
    super('the write was cancelled before it was applied; nothing was changed', { cause: reason });
  }
}

/** The server opened its index read-only (`server.readOnly`). */
export class ReadOnlyIndexError extends ServiceError {
  override name = 'ReadOnlyIndexError';
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
        '(npm run ingest -- <paths> --index <name>; with server.ingestCorpusOnStart a missing index is rebuilt from ' +
        'corpusDir on start). Set server.verifyIndexOnStart to false only to inspect it.',
    );
  }
}

/** No collection of this name exists. */
export class CollectionNotFoundError extends ServiceError {
  override name = 'CollectionNotFoundError';
  constructor(readonly collection: string) {
    super(`no collection named "${collection}"`);
  }
}

/** A collection of this name exists already. */
export class CollectionExistsError extends ServiceError {
  override name = 'CollectionExistsError';
  constructor(readonly collection: string) {
    super(`a collection named "${collection}" exists already`);
  }
}

/** The default collection is what the unscoped routes use; it cannot be deleted. */
export class CollectionProtectedError extends ServiceError {
  override name = 'CollectionProtectedError';
}
