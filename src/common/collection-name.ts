/** Collection names: lower-case letters, digits, `_` and `-`, starting with a letter or digit, at most 64. */
export const COLLECTION_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** Names the pattern admits that cannot be folder names on Windows: its device names. */
const RESERVED_COLLECTION_NAME = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])$/;

export const RESERVED_NAME_MESSAGE =
  'is reserved: con, prn, aux, nul, com0-com9 and lpt0-lpt9 are device names on Windows, where collection names become folder names';

export const isReservedCollectionName = (name: string): boolean => RESERVED_COLLECTION_NAME.test(name);
