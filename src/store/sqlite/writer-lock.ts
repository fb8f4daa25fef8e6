import { linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { IndexLockedError, IndexStoreError } from '../errors.js';

const LOCK_FILE = 'write.lock';

interface LockOwner {
  pid: number;
  host: string;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readOwner(file: string): LockOwner | undefined {
  try {
    const owner = JSON.parse(readFileSync(file, 'utf8')) as Partial<LockOwner>;
    return typeof owner.pid === 'number' && typeof owner.host === 'string' ? { pid: owner.pid, host: owner.host } : undefined;
  } catch {
    return undefined;
  }
}

const UNWRITABLE = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT', 'EFBIG']);

/** Creates the lock with its content in one step (hard link of a finished temp file), so it is never seen half-written. */
function tryCreate(file: string): boolean {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, JSON.stringify({ pid: process.pid, host: os.hostname() }));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    // The lock is the first file a writer creates, so this is where an unwritable index folder shows.
    if (UNWRITABLE.has(code)) {
      unlinkQuietly(tmp);
      throw new IndexStoreError(`index folder ${path.dirname(file)} is not writable (${code}): ${(err as Error).message}`, { cause: err });
    }
    throw err;
  }
  try {
    linkSync(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return false;
  } finally {
    unlinkQuietly(tmp);
  }
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // Already gone.
  }
}

/**
 * One writer per index: the HNSW graph lives in the writer's memory, so two writers would each save a graph missing
 * the other's passages. A lock left by a killed process (dead pid on this host) is taken over.
 */
export class WriterLock {
  private released = false;

  private constructor(readonly file: string) {}

  static acquire(dir: string): WriterLock {
    const file = path.join(dir, LOCK_FILE);
    for (let attempt = 0; attempt < 2; attempt++) {
      if (tryCreate(file)) return new WriterLock(file);
      const owner = readOwner(file);
      const stale = owner !== undefined && owner.host === os.hostname() && !isAlive(owner.pid);
      if (!stale) {
        const who = owner ? `process ${owner.pid} on ${owner.host}` : 'another process';
        throw new IndexLockedError(
          `index ${dir} is held by ${who}: if that is the server, stop it or send the documents to POST /v1/documents ` +
            `(or run the server with server.readOnly: true); if it is an ingest, wait for it to finish; ` +
            `if that process is gone, delete ${file}`,
        );
      }
      unlinkSync(file);
    }
    throw new IndexLockedError(`could not take the write lock ${file}`);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    unlinkQuietly(this.file);
  }
}
