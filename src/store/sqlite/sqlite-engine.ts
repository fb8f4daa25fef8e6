import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { CollectionInfo, CollectionManifest, OpenCollectionOptions, StoreEngine } from '../engine.js';
import type { FaultPoint } from '../types.js';
import { assertCollectionName } from '../collection-name.js';
import { fsyncDir } from './atomic-file.js';
import { readManifest } from './manifest.js';
import { SqlitePassageStore } from './sqlite-store.js';
import { WriterLock } from './writer-lock.js';

const TRASH_PREFIX = '.dropped-';

/** Steps of a collection drop, for crash tests: the drop is decided but nothing moved / the name is free, data left. */
export type DropFaultPoint = 'drop-before-rename' | 'drop-after-rename';

/**
 * The embedded engine: one folder per collection under `indexesDir`. The hooks are for crash tests only (production
 * opens it through `openStoreEngine`, without them): called at crash-relevant points of a drop, and of every write of
 * the collections it opens; the tests kill the process there.
 */
export class SqliteEngine implements StoreEngine {
  readonly kind = 'sqlite';

  constructor(
    private readonly indexesDir: string,
    private readonly dropFaultHook?: (point: DropFaultPoint) => void,
    private readonly writeFaultHook?: (point: FaultPoint) => void,
  ) {
    this.removeDroppedLeftovers();
  }

  async listCollections(): Promise<CollectionInfo[]> {
    if (!existsSync(this.indexesDir)) return [];
    const out: CollectionInfo[] = [];
    for (const entry of readdirSync(this.indexesDir, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
      let manifest: CollectionManifest | undefined;
      try {
        assertCollectionName(entry.name);
        manifest = readManifest(path.join(this.indexesDir, entry.name));
      } catch {
        // Not a collection of this server (another name format, or not an index folder at all).
        continue;
      }
      if (manifest) out.push({ name: entry.name, manifest });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async describeCollection(name: string): Promise<CollectionManifest | undefined> {
    return readManifest(this.dirOf(name));
  }

  async openCollection(name: string, options: OpenCollectionOptions): Promise<SqlitePassageStore> {
    return SqlitePassageStore.open(name, this.dirOf(name), options, this.writeFaultHook);
  }

  /**
   * Takes the collection's writer lock (so no process is writing it), renames the folder out of the namespace in one
   * step, then removes it: whenever the process dies, the collection is whole or gone. A crash after the rename leaves
   * a `.dropped-*` folder that the next engine open removes.
   */
  async dropCollection(name: string): Promise<boolean> {
    const dir = this.dirOf(name);
    if (!existsSync(dir)) return false;
    const lock = WriterLock.acquire(dir);
    const trash = path.join(this.indexesDir, `${TRASH_PREFIX}${name}-${process.pid}-${Date.now()}`);
    try {
      this.dropFaultHook?.('drop-before-rename');
      renameSync(dir, trash);
    } catch (err) {
      lock.release();
      throw err;
    }
    // Durable before any file goes: after a power loss the folder is back whole or stays a tombstone.
    fsyncDir(this.indexesDir);
    this.dropFaultHook?.('drop-after-rename');
    // The lock file went with the folder and goes with it.
    rmSync(trash, { recursive: true, force: true });
    return true;
  }

  async close(): Promise<void> {
    // Collections are closed by whoever opened them; the engine itself holds nothing open.
  }

  private dirOf(name: string): string {
    assertCollectionName(name);
    return path.join(this.indexesDir, name);
  }

  private removeDroppedLeftovers(): void {
    if (!existsSync(this.indexesDir)) {
      mkdirSync(this.indexesDir, { recursive: true });
      return;
    }
    for (const entry of readdirSync(this.indexesDir)) {
      if (entry.startsWith(TRASH_PREFIX)) rmSync(path.join(this.indexesDir, entry), { recursive: true, force: true });
    }
  }
}
