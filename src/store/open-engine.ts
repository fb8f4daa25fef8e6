import type { StoreEngine } from './engine.js';
import { PostgresEngine, type PostgresEngineSpec, type EngineLog } from './postgres/engine.js';
import { SqliteEngine } from './sqlite/sqlite-engine.js';

/** Where a deployment keeps its collections; JSON-serialisable, so another process can open the same storage. */
export type EngineSpec = { kind: 'sqlite'; indexesDir: string } | PostgresEngineSpec;

/**
 * The one way to get a storage engine: nothing outside `src/store` names a concrete engine. `log` receives the
 * PostgreSQL engine's replication events (local index builds, database outages).
 */
export async function openStoreEngine(spec: EngineSpec, log?: EngineLog): Promise<StoreEngine> {
  switch (spec.kind) {
    case 'sqlite':
      return new SqliteEngine(spec.indexesDir);
    case 'postgres':
      return PostgresEngine.open(spec, log);
  }
}
