import { COLLECTION_NAME, isReservedCollectionName, RESERVED_NAME_MESSAGE } from '../common/collection-name.js';
import { InvalidCollectionNameError } from './errors.js';

/** Names become folder names (embedded engine) or keys: the pattern admits no separator, dot or upper case. */
export function assertCollectionName(name: string): void {
  if (typeof name !== 'string' || !COLLECTION_NAME.test(name)) {
    throw new InvalidCollectionNameError(
      `collection name ${JSON.stringify(name)} is not allowed: use 1-64 lower-case letters, digits, "_" or "-", starting with a letter or digit`,
    );
  }
  if (isReservedCollectionName(name))
    throw new InvalidCollectionNameError(`collection name ${JSON.stringify(name)} ${RESERVED_NAME_MESSAGE}`);
}
