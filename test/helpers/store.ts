import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config/index.js';
import type { IngestEmbedder, IngestOptions, WriteSettings } from '../../src/ingest/index.js';
import { openStoreEngine, type FaultPoint, type HnswParams, type PassageStore } from '../../src/store/index.js';
import { SqliteEngine } from '../../src/store/sqlite/sqlite-engine.js';

/** The config schema's defaults: tests take every default from the one place the product does. */
export const DEFAULTS = loadConfig({ env: {}, cwd: os.tmpdir() });

export interface TestStoreOptions {
  embedModel: string;
  dim: number;
  readonly?: boolean;
  hnsw?: Partial<HnswParams>;
  exactFilterThreshold?: number;
  faultHook?: (point: FaultPoint) => void;
}

/**
 * Opens (creating unless read-only) the collection whose folder is `dir`, through the public factory: the folder's
 * parent is the engine's indexes folder and its name the collection's.
 */
export async function openTestStore(dir: string, options: TestStoreOptions): Promise<PassageStore> {
  // The write fault hook is a test-only option of the embedded engine, not of the production open options.
  const engine = options.faultHook
    ? new SqliteEngine(path.dirname(dir), undefined, options.faultHook)
    : await openStoreEngine({ kind: 'sqlite', indexesDir: path.dirname(dir) });
  return engine.openCollection(path.basename(dir), {
    embedModel: options.embedModel,
    dim: options.dim,
    hnsw: { ...DEFAULTS.hnsw, ...options.hnsw },
    readonly: options.readonly ?? false,
    create: !(options.readonly ?? false),
    exactFilterThreshold: options.exactFilterThreshold ?? DEFAULTS.retrieval.exactFilterThreshold,
  });
}

/** Bulk write settings as the config schema gives them, with a test's changes. */
export function writeSettings(changes: Partial<WriteSettings> = {}): WriteSettings {
  return {
    chunk: DEFAULTS.chunk,
    embedTitle: DEFAULTS.ingest.embedTitle,
    batchPassages: DEFAULTS.ingest.batchPassages,
    checkpoint: { everyPassages: DEFAULTS.ingest.checkpointEveryPassages, atEnd: true },
    rules: { rejectEmptyText: DEFAULTS.ingest.rejectEmptyText },
    ...changes,
  };
}

/** Complete ingest options for a store and embedder: defaults from the schema, no progress bar. */
export function ingestOptions(store: PassageStore, embedder: IngestEmbedder, changes: Partial<IngestOptions> = {}): IngestOptions {
  return { ...writeSettings(), store, embedder, progress: false, ...changes };
}

export const BULK_CHECKPOINTS = { everyPassages: DEFAULTS.ingest.checkpointEveryPassages, atEnd: true };

/** Opens an existing collection folder as a writer with the model its manifest names (what a later process does). */
export async function openExistingTestStore(dir: string): Promise<PassageStore> {
  const engine = await openStoreEngine({ kind: 'sqlite', indexesDir: path.dirname(dir) });
  const manifest = await engine.describeCollection(path.basename(dir));
  if (!manifest) throw new Error(`no collection at ${dir}`);
  return openTestStore(dir, { embedModel: manifest.embedModel, dim: manifest.dim });
}
