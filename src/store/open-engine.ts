import type { StoreEngine } from './engine.js';
import { SqliteEngine } from './sqlite/sqlite-engine.js';

/** Where a deployment keeps its collections; JSON-serialisable, so another process can open the same storage. */
export type EngineSpec = { kind: 'sqlite'; indexesDir: string };

/** The one way to get a storage engine: nothing outside `src/store` names a concrete engine. */
export async function openStoreEngine(spec: EngineSpec): Promise<StoreEngine> {
  switch (spec.kind) {
    case 'sqlite':
      return new SqliteEngine(spec.indexesDir);
  }
}
