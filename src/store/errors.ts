export class IndexStoreError extends Error {
  override name = 'IndexStoreError';
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

export class IndexNotFoundError extends IndexStoreError {
  override name = 'IndexNotFoundError';
}

export class IndexLockedError extends IndexStoreError {
  override name = 'IndexLockedError';
}

export class InvalidFilterError extends IndexStoreError {
  override name = 'InvalidFilterError';
}

export class InvalidCollectionNameError extends IndexStoreError {
  override name = 'InvalidCollectionNameError';
}
