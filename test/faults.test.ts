/**
 * Fault injection with real processes: `kill -9` of the ingest CLI at random moments, a full disk (file size limit, and
 * a real full tmpfs where the sandbox allows mounting), and a read-only index folder. After each fault the index must
 * open consistent, lose nothing that was committed, and a re-run must complete it to exactly the state of a run
 * that never failed.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statfsSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import Database from 'better-sqlite3';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '../src/fixtures/prng.js';
import { Embedder } from '../src/models/index.js';
import { queryTerms } from '../src/retrieval/index.js';
import { CollectionDataNotFoundError, type PassageStore } from '../src/store/index.js';
import { BERT_TINY, FIXTURES_DIR, REPO_ROOT, T5_TINY } from './helpers/fixtures.js';
import { openTestStore } from './helpers/store.js';
import { startServerProcess, type ServerProcess } from '../scripts/lib/server-process.js';

const INGEST = path.join(REPO_ROOT, 'scripts', 'ingest.ts');
const N_DOCS = 400;
// Small passages: ~3 per document, ~1200 in all, so an ingest commits several 256-passage batches.
const CHUNK_ARGS = ['--chunk-tokens', '16', '--overlap', '4'];
const IS_ROOT = process.getuid?.() === 0;

const workDir = mkdtempSync(path.join(os.tmpdir(), 'faults-'));
// Children that drop privileges (read-only test) must be able to reach the corpus and the index.
chmodSync(workDir, 0o755);
const configFile = path.join(workDir, 'rag.config.json');
writeFileSync(configFile, '{}');

interface Doc {
  id: string;
  title: string;
  text: string;
  metadata: Record<string, unknown>;
}

function makeDoc(i: number): Doc {
  const sentences = Array.from(
    { length: 1 + (i % 5) },
    (_, s) => `Document ${i} sentence ${s} mentions marker${i}x and topic${i % 7} among other words.`,
  );
  return { id: `doc-${i}`, title: `Doc ${i}`, text: sentences.join(' '), metadata: { group: i % 3 } };
}

const ALL = Array.from({ length: N_DOCS }, (_, i) => makeDoc(i));
const EXTRA = Array.from({ length: 5 }, (_, i) => makeDoc(N_DOCS + i));

function writeCorpus(name: string, docs: Doc[]): string {
  const dir = path.join(workDir, `corpus-${name}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'docs.jsonl'), docs.map((d) => JSON.stringify(d)).join('\n') + '\n');
  chmodSync(dir, 0o755);
  return dir;
}

function newIndexesDir(label: string): string {
  const dir = mkdtempSync(path.join(workDir, `${label}-`));
  chmodSync(dir, 0o755);
  return dir;
}

const indexDirOf = (indexesDir: string) => path.join(indexesDir, 'default');

/** The fixture-model environment of the CLI, without any RAG_* setting of the machine running the tests. */
function childEnv(indexesDir: string): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RAG_')));
  return {
    ...env,
    RAG_MODELS_DIR: FIXTURES_DIR,
    RAG_EMBED_MODEL: BERT_TINY,
    RAG_QUANTIZED: 'false',
    RAG_ALLOW_REMOTE: 'false',
    RAG_INDEXES_DIR: indexesDir,
    RAG_LOG_LEVEL: 'warn',
  };
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Milliseconds from taking the index lock to exit (only when the lock was seen). */
  afterLockMs?: number;
}

interface RunOptions {
  /** SIGKILL this many ms after the child holds the index lock (i.e. the store is open and ingest starts). */
  killAfterLockMs?: number;
  /** SIGKILL this many ms after spawning (may land in start-up). */
  killAfterSpawnMs?: number;
  /** RLIMIT_FSIZE in 512-byte blocks: writes past this size fail with EFBIG (node ignores SIGXFSZ). */
  fileSizeLimitBlocks?: number;
}

function lockOwner(indexDir: string): number | undefined {
  try {
    return (JSON.parse(readFileSync(path.join(indexDir, 'write.lock'), 'utf8')) as { pid?: number }).pid;
  } catch {
    return undefined;
  }
}

function runIngest(indexesDir: string, corpus: string, options: RunOptions = {}): Promise<RunResult> {
  const args = ['--import', 'tsx', INGEST, corpus, ...CHUNK_ARGS, '--config', configFile, '--no-progress'];
  const env = childEnv(indexesDir);
  const child: ChildProcess =
    options.fileSizeLimitBlocks !== undefined
      ? spawn('/bin/sh', ['-c', `ulimit -f ${options.fileSizeLimitBlocks} && exec "$0" "$@"`, process.execPath, ...args], {
          cwd: REPO_ROOT,
          env,
        })
      : spawn(process.execPath, args, { cwd: REPO_ROOT, env });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let lockedAt: number | undefined;
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  const timers: NodeJS.Timeout[] = [];
  if (options.killAfterSpawnMs !== undefined) timers.push(setTimeout(kill, options.killAfterSpawnMs));
  // Poll for the child's own lock: it is taken when the store opens, after the models loaded.
  const poll = setInterval(() => {
    if (lockedAt === undefined && child.pid !== undefined && lockOwner(indexDirOf(indexesDir)) === child.pid) {
      lockedAt = performance.now();
      if (options.killAfterLockMs !== undefined) timers.push(setTimeout(kill, options.killAfterLockMs));
    }
  }, 2);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearInterval(poll);
      for (const t of timers) clearTimeout(t);
      resolve({ code, signal, stdout, stderr, afterLockMs: lockedAt === undefined ? undefined : performance.now() - lockedAt });
    });
  });
}

function expectCompleted(run: RunResult): void {
  expect(run.code, `ingest should complete; stderr:\n${run.stderr}\nstdout:\n${run.stdout}`).toBe(0);
}

/** "ingest: documents seen N, added A, updated U, unchanged C, ..." → numbers. */
function summary(run: RunResult): { seen: number; added: number; updated: number; unchanged: number } {
  const m = /documents seen (\d+), added (\d+), updated (\d+), unchanged (\d+)/.exec(run.stdout);
  expect(m, run.stdout).not.toBeNull();
  return { seen: Number(m![1]), added: Number(m![2]), updated: Number(m![3]), unchanged: Number(m![4]) };
}

// ---------------------------------------------------------------- index inspection

let embedder: Embedder;

function openStore(indexesDir: string, readonly = false): Promise<PassageStore> {
  return openTestStore(indexDirOf(indexesDir), { embedModel: embedder.modelId, dim: embedder.dim, readonly });
}

type Contents = Map<string, string[]>;

/** Document id → its passages (id, span, text): what a correct index holds, independent of labels and order. */
async function contents(store: PassageStore, docs: Doc[]): Promise<Contents> {
  const out: Contents = new Map();
  for (const d of docs) {
    if (!(await store.getDocument(d.id))) continue;
    out.set(
      d.id,
      (await store.passagesOfDocument(d.id)).map((p) => `${p.id}|${p.charStart}-${p.charEnd}|${p.text}`),
    );
  }
  return out;
}

/** Consistent, and every document present is complete (never a half-written one). */
async function expectConsistent(store: PassageStore, reference: Contents, docs: Doc[]): Promise<Contents> {
  const report = await store.verify();
  expect(report.problems).toEqual([]);
  const found = await contents(store, docs);
  for (const [id, passages] of found) expect(passages, `document ${id}`).toEqual(reference.get(id));
  const stats = await store.stats();
  const passages = [...found.values()].reduce((n, p) => n + p.length, 0);
  expect(stats.documents).toBe(found.size);
  expect(stats.passages).toBe(passages);
  expect(stats.vectors).toBe(passages);
  expect(stats.hnswLive).toBe(passages);
  return found;
}

/** Each document found by BM25 (its unique marker) and by dense search (its own passage first), exactly once. */
async function expectSearchableOnce(store: PassageStore, docs: Doc[], markerOf = (d: Doc) => /marker\d+x/.exec(d.text)![0]): Promise<void> {
  for (const d of docs) {
    const marker = markerOf(d);
    const labels = (await store.bm25Search(queryTerms(marker), 50, { titleWeight: 1, textWeight: 1 })).map((h) => h.label);
    const hits = [...(await store.passagesByLabels(labels)).values()];
    expect(hits.length, `${marker} hits`).toBe(labels.length);
    expect(new Set(hits.map((h) => h.docId)), marker).toEqual(new Set([d.id]));
    expect(hits.length).toBe((await store.passagesOfDocument(d.id)).filter((p) => p.text.includes(marker)).length);
  }
  const firsts = await Promise.all(docs.map(async (d) => (await store.passagesOfDocument(d.id))[0]!));
  const vectors = await embedder.embedPassages(firsts.map((p) => `${p.title}\n${p.text}`));
  for (const [i, p] of firsts.entries()) {
    // Random fixture weights make similar texts near-collinear, so "found" means: among the top 10, and scored as
    // high as the best hit (ties within rounding of the batched embedding).
    const top = await store.denseSearch(vectors[i]!, 10);
    const own = top.find((h) => h.label === p.label);
    const records = await store.passagesByLabels(top.slice(0, 3).map((h) => h.label));
    const shown = top.slice(0, 3).map((h) => `${records.get(h.label)?.id ?? `orphan ${h.label}`}=${h.score.toFixed(5)}`);
    expect(own, `dense search for ${p.id}: ${shown.join(', ')}`).toBeDefined();
    expect(own!.score, `dense search for ${p.id}: ${shown.join(', ')}`).toBeGreaterThan(top[0]!.score - 1e-3);
  }
}

// ---------------------------------------------------------------- reference

const corpusAll = writeCorpus('all', ALL);
const corpusFirst100 = writeCorpus('first100', ALL.slice(0, 100));
const corpusExtra = writeCorpus('extra', EXTRA);
let reference: Contents;
let referenceDir: string;
/** Duration of the ingest phase (lock taken → exit) of an uninterrupted run: the window random kills aim at. */
let ingestWindowMs = 0;

beforeAll(async () => {
  embedder = await Embedder.load(BERT_TINY, { modelsDir: FIXTURES_DIR, allowRemote: false, quantized: false, batchSize: 32 });
  referenceDir = newIndexesDir('reference');
  const run = await runIngest(referenceDir, corpusAll);
  expectCompleted(run);
  expect(run.afterLockMs).toBeDefined();
  ingestWindowMs = run.afterLockMs!;
  const store = await openStore(referenceDir);
  try {
    reference = await contents(store, ALL);
    expect(reference.size).toBe(N_DOCS);
    expect((await store.verify()).problems).toEqual([]);
  } finally {
    await store.close();
  }
});

afterAll(() => {
  rmSync(workDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------- kill -9 during ingest

describe('kill -9 during the ingest CLI', () => {
  const SEEDS = [11, 23, 37, 41, 59, 73];

  it.each(SEEDS)('seed %i: killed twice at random moments, the index stays consistent and a re-run completes it exactly', async (seed) => {
    const random = mulberry32(seed);
    const indexes = newIndexesDir(`kill-${seed}`);
    const landed: string[] = [];

    // Two interrupted runs: the second one also has to recover what the first left behind.
    for (let attempt = 0; attempt < 2; attempt++) {
      // One kill in six may land in start-up (model loading), the rest inside the ingest itself.
      const options: RunOptions =
        random() < 1 / 6
          ? { killAfterSpawnMs: Math.floor(random() * 3000) }
          : { killAfterLockMs: Math.floor(random() * ingestWindowMs * 1.1) };
      const run = await runIngest(indexes, corpusAll, options);
      // Judged by how the process ended: a kill sent just as it exited on its own does not count.
      const killed = run.signal === 'SIGKILL';
      landed.push(killed ? `killed ${JSON.stringify(options)}` : `completed before ${JSON.stringify(options)}`);
      if (!killed) expectCompleted(run);
      if (!existsSync(path.join(indexDirOf(indexes), 'index.sqlite'))) continue;

      // A reader sees a consistent index while the writer's lock is stale; documents are whole or absent.
      let reader: PassageStore;
      try {
        reader = await openStore(indexes, true);
      } catch (err) {
        // Killed while creating the index, before its schema transaction: there is no index yet.
        expect(err).toBeInstanceOf(CollectionDataNotFoundError);
        continue;
      }
      try {
        const found = await contents(reader, ALL);
        for (const [id, passages] of found) expect(passages, `document ${id} after ${landed.at(-1)}`).toEqual(reference.get(id));
        expect((await reader.verify()).problems).toEqual([]);
      } finally {
        await reader.close();
      }
    }

    const committed = await (async () => {
      if (!existsSync(path.join(indexDirOf(indexes), 'index.sqlite'))) return 0;
      let s: PassageStore;
      try {
        s = await openStore(indexes, true);
      } catch (err) {
        if (err instanceof CollectionDataNotFoundError) return 0;
        throw err;
      }
      try {
        return (await s.stats()).documents;
      } finally {
        await s.close();
      }
    })();

    const final = await runIngest(indexes, corpusAll);
    expectCompleted(final);
    // Documents committed before the kills are recognised as unchanged; nothing is processed twice.
    expect(summary(final), landed.join('; ')).toEqual({ seen: N_DOCS, added: N_DOCS - committed, updated: 0, unchanged: committed });

    const store = await openStore(indexes);
    try {
      const found = await expectConsistent(store, reference, ALL);
      expect(found).toEqual(reference);
      expect((await store.stats()).pending).toBe(0);
      expect(readdirSync(indexDirOf(indexes)).filter((f) => f.startsWith('hnsw-'))).toHaveLength(1);
      await expectSearchableOnce(store, ALL);
    } finally {
      await store.close();
    }
  });
});

describe('an index whose creator died before its schema transaction', () => {
  it('is "not found" to readers, and the next writer initialises it', async () => {
    const indexes = newIndexesDir('half-created');
    const dir = indexDirOf(indexes);
    mkdirSync(dir);
    // What a creator leaves when killed right after opening the database: the manifest, and a WAL-mode file with no tables.
    cpSync(path.join(indexDirOf(referenceDir), 'manifest.json'), path.join(dir, 'manifest.json'));
    const raw = new Database(path.join(dir, 'index.sqlite'));
    raw.pragma('journal_mode = WAL');
    raw.close();
    await expect(openStore(indexes, true)).rejects.toThrow(CollectionDataNotFoundError);
    const run = await runIngest(indexes, corpusExtra);
    expectCompleted(run);
    const store = await openStore(indexes, true);
    try {
      expect((await store.verify()).problems).toEqual([]);
      expect((await store.stats()).documents).toBe(EXTRA.length);
    } finally {
      await store.close();
    }
  });
});

// ---------------------------------------------------------------- disk full

/** A base index built without limits from `corpus`, copied so each scenario starts from the same files. */
async function baseIndex(label: string, corpus: string): Promise<string> {
  const indexes = newIndexesDir(label);
  expectCompleted(await runIngest(indexes, corpus));
  return indexes;
}

const DISK_FULL = /disk full|disk is full|SQLITE_FULL|ENOSPC|EFBIG|file too large|size limit/i;
/** Which index could not be written, and that committed data is intact. */
const NAMES_INDEX = /in index \/\S+|of index \/\S+/;

describe('disk full (RLIMIT_FSIZE: writes past the limit fail with EFBIG)', () => {
  it('while SQLite grows: clear error, committed documents intact, re-run completes', async () => {
    const indexes = await baseIndex('fsize-sqlite', corpusFirst100);
    const run = await runIngest(indexes, corpusAll, { fileSizeLimitBlocks: 512 });
    expect(run.code, run.stdout + run.stderr).not.toBe(0);
    expect(run.signal).toBeNull();
    expect(run.stderr).toMatch(/^ingest failed: /m);
    expect(run.stderr).toMatch(DISK_FULL);
    expect(run.stderr).toMatch(NAMES_INDEX);

    const store = await openStore(indexes);
    try {
      const found = await expectConsistent(store, reference, ALL);
      for (const d of ALL.slice(0, 100)) expect(found.has(d.id), d.id).toBe(true);
      expect(found.size).toBeLessThan(N_DOCS);
    } finally {
      await store.close();
    }
    expectCompleted(await runIngest(indexes, corpusAll));
    const after = await openStore(indexes);
    try {
      expect(await expectConsistent(after, reference, ALL)).toEqual(reference);
    } finally {
      await after.close();
    }
  });

  it('while saving the HNSW graph: the short file is detected, not committed; nothing is lost', async () => {
    const indexes = await baseIndex('fsize-hnsw', corpusAll);
    const dir = indexDirOf(indexes);
    const graphFile = readdirSync(dir).find((f) => f.startsWith('hnsw-'))!;
    const graphBytes = readFileSync(path.join(dir, graphFile)).length;
    // Room for the small SQLite transaction of five documents, not for a whole new graph file.
    const run = await runIngest(indexes, corpusExtra, { fileSizeLimitBlocks: Math.floor(graphBytes / 2 / 512) });
    expect(run.code, run.stdout + run.stderr).not.toBe(0);
    expect(run.stderr).toMatch(/could not save the HNSW graph/);
    expect(run.stderr).toMatch(DISK_FULL);
    // The committed generation's file is untouched and no partial file is left behind.
    expect(readdirSync(dir).filter((f) => f.startsWith('hnsw-'))).toEqual([graphFile]);

    const store = await openStore(indexes);
    try {
      const extraReference = new Map([...reference, ...EXTRA.map((d) => [d.id, expectedPassages(d)] as const)]);
      const found = await expectConsistent(store, extraReference, [...ALL, ...EXTRA]);
      // The old graph loads as saved; the five new documents were committed to SQLite and are re-added from there.
      expect((await store.stats()).rebuiltFromVectors).toBe(false);
      expect(found.size).toBe(N_DOCS + EXTRA.length);
      await expectSearchableOnce(store, EXTRA);
    } finally {
      await store.close();
    }
  });
});

/** Passages a clean ingest gives a document, computed with the same CLI settings into a scratch index. */
const extraPassages = new Map<string, string[]>();
function expectedPassages(doc: Doc): string[] {
  const passages = extraPassages.get(doc.id);
  if (!passages) throw new Error(`no reference passages for ${doc.id}`);
  return passages;
}

beforeAll(async () => {
  const indexes = newIndexesDir('extra-reference');
  expectCompleted(await runIngest(indexes, corpusExtra));
  const store = await openStore(indexes);
  try {
    for (const [id, passages] of await contents(store, EXTRA)) extraPassages.set(id, passages);
  } finally {
    await store.close();
  }
});

// ---------------------------------------------------------------- real full disk and read-only file system (tmpfs)

function tryMountTmpfs(dir: string, sizeBytes: number): string | undefined {
  const result = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0755`, 'tmpfs', dir], { encoding: 'utf8' });
  return result.status === 0 ? undefined : (result.stderr || result.error?.message || 'mount failed').trim();
}

function unmount(dir: string): void {
  spawnSync('umount', [dir]);
}

const tmpfsDir = path.join(workDir, 'tmpfs');
mkdirSync(tmpfsDir);
const tmpfsUnavailable = tryMountTmpfs(tmpfsDir, 8 * 1024 * 1024);
if (tmpfsUnavailable === undefined) unmount(tmpfsDir);

describe.skipIf(tmpfsUnavailable !== undefined)(
  `real file system faults on tmpfs${tmpfsUnavailable ? ` (skipped: ${tmpfsUnavailable})` : ''}`,
  () => {
    beforeAll(() => {
      expect(tryMountTmpfs(tmpfsDir, 8 * 1024 * 1024)).toBeUndefined();
    });
    afterAll(() => unmount(tmpfsDir));

    it('ENOSPC while ingesting, then space is freed: nothing lost, re-run completes', async () => {
      const indexes = path.join(tmpfsDir, 'indexes');
      cpSync(referenceDir, indexes, { recursive: true });
      // Leave 64 KiB: enough for the lock and a small transaction, not for the new graph file.
      const { bavail, bsize } = statfsSync(tmpfsDir);
      const filler = path.join(tmpfsDir, 'filler');
      writeFileSync(filler, Buffer.alloc(Math.max(0, bavail * bsize - 64 * 1024)));

      const run = await runIngest(indexes, corpusExtra);
      expect(run.code, run.stdout + run.stderr).not.toBe(0);
      expect(run.stderr).toMatch(/^ingest failed: /m);
      expect(run.stderr).toMatch(DISK_FULL);

      rmSync(filler);
      const store = await openStore(indexes);
      try {
        const extraReference = new Map([...reference, ...EXTRA.map((d) => [d.id, expectedPassages(d)] as const)]);
        const found = await expectConsistent(store, extraReference, [...ALL, ...EXTRA]);
        for (const d of ALL) expect(found.has(d.id), d.id).toBe(true);
      } finally {
        await store.close();
      }
      const rerun = await runIngest(indexes, corpusExtra);
      expectCompleted(rerun);
      const after = await openStore(indexes);
      try {
        expect((await after.verify()).problems).toEqual([]);
        expect((await after.stats()).documents).toBe(N_DOCS + EXTRA.length);
      } finally {
        await after.close();
      }
    });

    it('EROFS (file system remounted read-only): clear error, index unchanged', async () => {
      const indexes = path.join(tmpfsDir, 'indexes-ro');
      cpSync(referenceDir, indexes, { recursive: true });
      expect(spawnSync('mount', ['-o', 'remount,ro', tmpfsDir]).status).toBe(0);
      try {
        const run = await runIngest(indexes, corpusExtra);
        expect(run.code).toBe(1);
        expect(run.stderr).toMatch(/^ingest failed: index folder .* is not writable \(EROFS\)/m);
      } finally {
        expect(spawnSync('mount', ['-o', 'remount,rw', tmpfsDir]).status).toBe(0);
      }
      const store = await openStore(indexes);
      try {
        expect(await expectConsistent(store, reference, [...ALL, ...EXTRA])).toEqual(reference);
      } finally {
        await store.close();
      }
    });
  },
);

// ---------------------------------------------------------------- read-only index folder

describe('read-only index folder', () => {
  /**
   * Root ignores file modes, so as root the folder or file is made immutable (chattr +i), which stops root too; as any
   * other user chmod does it. (Running the ingest as another user instead would need that user to read the checkout.)
   */
  function freeze(target: string, mode: number): () => void {
    if (!IS_ROOT) {
      chmodSync(target, mode);
      return () => chmodSync(target, 0o755);
    }
    execFileSync('chattr', ['+i', target]);
    return () => execFileSync('chattr', ['-i', target]);
  }

  const canFreeze = !IS_ROOT || probeChattr();

  it.skipIf(!canFreeze)('unwritable index folder: the ingest fails with a clear error and the index is unchanged', async () => {
    const indexes = newIndexesDir('readonly-dir');
    cpSync(referenceDir, indexes, { recursive: true });
    const thaw = freeze(indexDirOf(indexes), 0o555);
    try {
      const run = await runIngest(indexes, corpusExtra);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/^ingest failed: index folder .* is not writable \((EACCES|EPERM)\)/m);
    } finally {
      thaw();
    }
    const store = await openStore(indexes);
    try {
      expect(await expectConsistent(store, reference, [...ALL, ...EXTRA])).toEqual(reference);
    } finally {
      await store.close();
    }
  });

  it.skipIf(!canFreeze)('unwritable database file in a writable folder: clear error, nothing lost, works again once writable', async () => {
    const indexes = newIndexesDir('readonly-db');
    cpSync(referenceDir, indexes, { recursive: true });
    const thaw = freeze(path.join(indexDirOf(indexes), 'index.sqlite'), 0o444);
    try {
      const run = await runIngest(indexes, corpusExtra);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/^ingest failed: .*(readonly|read-only|not writable|EACCES|EPERM)/im);
    } finally {
      thaw();
    }
    const store = await openStore(indexes);
    try {
      expect(await expectConsistent(store, reference, [...ALL, ...EXTRA])).toEqual(reference);
    } finally {
      await store.close();
    }
    expectCompleted(await runIngest(indexes, corpusExtra));
  });
});

/** Whether this file system honours the immutable attribute (ext4, xfs, btrfs do; tmpfs and overlayfs may not). */
function probeChattr(): boolean {
  const probe = path.join(workDir, 'chattr-probe');
  writeFileSync(probe, '');
  try {
    execFileSync('chattr', ['+i', probe], { stdio: 'ignore' });
  } catch {
    return false;
  }
  try {
    writeFileSync(probe, 'x');
    return false;
  } catch {
    return true;
  } finally {
    execFileSync('chattr', ['-i', probe], { stdio: 'ignore' });
  }
}

// ---------------------------------------------------------------- kill -9 during REST batch upserts

describe('kill -9 of the server during REST batch upserts', () => {
  const SERVER_CONFIG = path.join(workDir, 'server.config.json');
  writeFileSync(
    SERVER_CONFIG,
    JSON.stringify({
      chunk: { maxTokens: 16, overlapTokens: 4 },
      server: { rateLimit: { max: 0 } },
      // Frequent graph saves, so kills also land in and around checkpoints.
      documents: { checkpointEveryPassages: 150, checkpointIdleMs: 200 },
    }),
  );
  const emptyCorpus = path.join(workDir, 'empty-corpus');
  mkdirSync(emptyCorpus, { recursive: true });

  function serverAt(indexes: string): Promise<ServerProcess> {
    return startServerProcess({
      modelsDir: FIXTURES_DIR,
      embedModel: BERT_TINY,
      readerModel: T5_TINY,
      indexesDir: indexes,
      corpusDir: emptyCorpus,
      configFile: SERVER_CONFIG,
      env: { RAG_AUTH_DISABLED: 'true' },
    });
  }

  /** Version `v` of REST document `id`: every passage carries the id's marker and the version's marker. */
  function restDoc(id: number, v: number): Doc {
    const sentences = Array.from(
      { length: 1 + ((id + v) % 4) },
      (_, s) => `Rest ${id} version ${v} part ${s} has marker${id}r and stamp${id}v${v} words.`,
    );
    return { id: `rest-${id}`, title: `Rest ${id}`, text: sentences.join(' '), metadata: { v } };
  }

  const SEEDS = [5, 17, 29];

  it.each(SEEDS)('seed %i: every acknowledged write survives exactly once; unacknowledged ones are all-or-nothing', async (seed) => {
    const random = mulberry32(seed);
    const indexes = newIndexesDir(`rest-${seed}`);
    let server = await serverAt(indexes);

    // Per document id: the versions the index may hold after the crash. An acknowledged version replaces the set;
    // a request that got no answer adds its version as possible (it may or may not have committed).
    const possible = new Map<string, Set<number | undefined>>();
    const WRITERS = 3;
    const IDS_PER_WRITER = 40;
    let stop = false;
    let acknowledged = 0;

    async function writer(w: number): Promise<void> {
      const version = new Map<number, number>();
      while (!stop) {
        const size = 1 + Math.floor(random() * 8);
        const batch: Doc[] = [];
        const chosen = new Set<number>();
        while (chosen.size < size) chosen.add(w * IDS_PER_WRITER + Math.floor(random() * IDS_PER_WRITER));
        for (const id of chosen) {
          const v = (version.get(id) ?? 0) + 1;
          version.set(id, v);
          batch.push(restDoc(id, v));
        }
        for (const d of batch) {
          const set = possible.get(d.id) ?? new Set<number | undefined>([undefined]);
          set.add(d.metadata.v as number);
          possible.set(d.id, set);
        }
        let status: number;
        try {
          const res = await fetch(`${server.base}/v1/documents`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ documents: batch }),
          });
          status = res.status;
          await res.text();
        } catch {
          return; // The server died with this request in flight: its versions stay "possible".
        }
        expect(status).toBe(200);
        acknowledged++;
        for (const d of batch) possible.set(d.id, new Set([d.metadata.v as number]));
      }
    }

    const writers = Array.from({ length: WRITERS }, (_, w) => writer(w));
    // The kill lands at a random moment after the first acknowledgement, so every seed has something to lose.
    const deadline = Date.now() + 60_000;
    while (acknowledged === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    const killAfter = Math.floor(random() * 2500);
    await new Promise((r) => setTimeout(r, killAfter));
    server.child.kill('SIGKILL');
    stop = true;
    expect((await server.exited).signal).toBe('SIGKILL');
    await Promise.all(writers);
    expect(acknowledged, 'no write was acknowledged before the kill').toBeGreaterThan(0);

    // Restart: the server verifies the index on start (it refuses an inconsistent one) and takes over the stale lock.
    server = await serverAt(indexes);
    const held = new Map<string, number>();
    try {
      const stats = (await (await fetch(`${server.base}/v1/stats`)).json()) as {
        documents: number;
        passages: number;
        hnsw: { live: number };
      };
      for (const [id, versions] of possible) {
        const res = await fetch(`${server.base}/v1/documents/${id}`);
        if (res.status === 404) {
          expect(versions.has(undefined), `${id} was acknowledged but is missing`).toBe(true);
          continue;
        }
        const doc = (await res.json()) as { metadata: { v: number }; passages: Array<{ text: string }> };
        const v = doc.metadata.v;
        expect([...versions], `${id} holds version ${v}`).toContain(v);
        // One version, whole: every passage is from it, and together they are its text's passages.
        const stamp = `stamp${id.slice(5)}v${v}`;
        for (const p of doc.passages) expect(p.text).not.toMatch(new RegExp(`stamp${id.slice(5)}v(?!${v}\\b)\\d+`));
        expect(doc.passages.some((p) => p.text.includes(stamp))).toBe(true);
        held.set(id, v);
      }
      expect(stats.documents).toBe(held.size);
      expect(stats.hnsw.live).toBe(stats.passages);

      // Searchable exactly once through the API: a document's marker finds only that document, with no repeats.
      for (const [id] of [...held].slice(0, 30)) {
        const marker = `marker${id.slice(5)}r`;
        const res = (await (
          await fetch(`${server.base}/v1/search`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ query: marker, mode: 'bm25', k: 50 }),
          })
        ).json()) as { results: Array<{ passageId: string; docId: string }> };
        expect(new Set(res.results.map((r) => r.docId)), marker).toEqual(new Set([id]));
        expect(new Set(res.results.map((r) => r.passageId)).size).toBe(res.results.length);
      }
    } finally {
      server.child.kill('SIGTERM');
      const ended = await server.exited;
      expect(ended.code, server.output().slice(-2000)).toBe(0);
    }

    // After a clean shutdown: every store agrees, nothing pending, no orphan vectors, dense search finds each passage.
    const store = await openStore(indexes);
    try {
      const report = await store.verify();
      expect(report.problems).toEqual([]);
      expect(report.stats.pending).toBe(0);
      expect(report.stats.vectors).toBe(report.stats.passages);
      expect(report.stats.documents).toBe(held.size);
      const docs = [...held].map(([id, v]) => restDoc(Number(id.slice(5)), v));
      await expectSearchableOnce(store, docs, (d) => /marker\d+r/.exec(d.text)![0]);
    } finally {
      await store.close();
    }
  });
});
