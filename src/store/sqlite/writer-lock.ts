import { linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { IndexLockedError, IndexStoreError } from '../errors.js';

const LOCK_FILE = 'write.lock';

interface LockOwner {
  pid: number;
  host: string;
  /** The script the holder runs (`main.ts` for the server, `ingest.ts` for the CLI), so the refusal can say which. */
  command?: string;
}

/** The running script's file name: what a lock says about who holds it. */
const OWN_COMMAND = path.basename(process.argv[1] ?? '') || undefined;

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
    if (typeof owner.pid !== 'number' || typeof owner.host !== 'string') return undefined;
    return { pid: owner.pid, host: owner.host, ...(typeof owner.command === 'string' ? { command: owner.command } : {}) };
  } catch {
    return undefined;
  }
}

const UNWRITABLE = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT', 'EFBIG']);

/** Creates the lock with its content in one step (hard link of a finished temp file), so it is never seen half-written. */
function tryCreate(file: string): boolean {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, JSON.stringify({ pid: process.pid, host: os.hostname(), ...(OWN_COMMAND ? { command: OWN_COMMAND } : {}) }));
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

/** Who holds the lock and what to do about it: the advice depends on whether the holder is the server or an ingest. */
function lockedMessage(dir: string, file: string, owner: LockOwner | undefined): string {
  const who = owner ? `process ${owner.pid} on ${owner.host}${owner.command ? ` (${owner.command})` : ''}` : 'another process';
  const server =
    "it holds a collection's lock only while it writes it and for collections.writerIdleMs after its last write, so try " +
    'again then, or send the documents to it (POST /v1/documents, POST /v1/documents/files), or run it with server.readOnly: true';
  const ingest = 'wait for it to finish (a server that only serves searches can run beside it with server.readOnly: true)';
  const advice = /^main\./.test(owner?.command ?? '')
    ? `that is the server: ${server}`
    : /^ingest\./.test(owner?.command ?? '')
      ? `that is an ingest: ${ingest}`
      : `if that is the server, ${server}; if it is an ingest, ${ingest}`;
  return `index ${dir} is held by ${who}: ${advice} (a --dry-run needs no lock); if that process is gone, delete ${file}`;
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
        throw new IndexLockedError(lockedMessage(dir, file, owner));
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
