/** A replica's local derived index of one collection: the embedded engine's store, in a folder the replica manages. */
import type { ChunkingParams, PassageStore } from '../engine.js';
import { SqlitePassageStore } from '../sqlite/sqlite-store.js';
import type { HnswParams } from '../types.js';

export interface LocalOpenOptions {
  embedModel: string;
  dim: number;
  hnsw: HnswParams;
  chunk?: ChunkingParams;
  exactFilterThreshold: number;
}

/** Opens (creating when absent) the embedded index in `dir` as this replica's writable local index. */
export function openLocalIndex(name: string, dir: string, options: LocalOpenOptions): Promise<PassageStore> {
  return SqlitePassageStore.open(name, dir, { ...options, create: true, readonly: false });
}
