/**
 * A throwaway PostgreSQL server for tests, benchmarks and CI: `initdb` into a fresh temporary folder, listening on
 * loopback only at a free port, run as a non-root OS user (PostgreSQL refuses to run as root), removed on stop.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** The OS user PostgreSQL runs as when this process is root. */
const PG_OS_USER = 'postgres';

export class PostgresMissingError extends Error {
  override name = 'PostgresMissingError';
}

/** Folder holding `initdb`, `pg_ctl` and `postgres`: PATH, then `pg_config --bindir`, then Debian's versioned folders. */
export function findPostgresBinDir(): string | undefined {
  const candidates: string[] = [];
  if (process.env.RAG_PG_BINDIR) candidates.push(process.env.RAG_PG_BINDIR);
  candidates.push(...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean));
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    // No pg_config on PATH.
  }
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = readdirSync(debian)
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    candidates.push(...versions.map((v) => path.join(debian, v, 'bin')));
  }
  return candidates.find((dir) => ['initdb', 'pg_ctl', 'postgres'].every((bin) => existsSync(path.join(dir, bin))));
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function userIds(user: string): { uid: number; gid: number } | undefined {
  const result = spawnSync('id', ['-u', user], { encoding: 'utf8' });
  if (result.status !== 0) return undefined;
  const gid = spawnSync('id', ['-g', user], { encoding: 'utf8' });
  return { uid: Number(result.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** Root cannot run PostgreSQL: make sure the unprivileged user exists and return its ids. */
function ensureOsUser(): { uid: number; gid: number } {
  const existing = userIds(PG_OS_USER);
  if (existing) return existing;
  const created = spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', PG_OS_USER], { encoding: 'utf8' });
  const ids = userIds(PG_OS_USER);
  if (!ids) throw new Error(`cannot create the OS user "${PG_OS_USER}" to run PostgreSQL: ${created.stderr}`);
  return ids;
}

/** Runs a PostgreSQL program, as the unprivileged user when this process is root. */
function runPg(binDir: string, program: string, args: string[]): string {
  const file = path.join(binDir, program);
  const [cmd, cmdArgs] = isRoot() ? ['runuser', ['-u', PG_OS_USER, '--', file, ...args]] : [file, args];
  const result = spawnSync(cmd, cmdArgs, { encoding: 'utf8', cwd: os.tmpdir() });
  if (result.status !== 0) {
    throw new Error(`${program} ${args.join(' ')} failed (exit ${result.status}):\n${result.stdout}\n${result.stderr}`);
  }
  return result.stdout;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface ThrowawayPostgres {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` (trust authentication on loopback). */
  url: string;
  port: number;
  dataDir: string;
  /** A connection URL for another database of this server. */
  urlFor(database: string): string;
  /** Stops the server (fast shutdown) and keeps its data: `start()` brings it back on the same port. */
  stopServer(): void;
  start(): void;
  /** Stops the server and removes its folder. */
  stop(): void;
}

export interface ThrowawayOptions {
  /** Parent of the data folder; default the OS temp folder. It must be reachable by the `postgres` user. */
  parentDir?: string;
  /** Durability off (fsync, synchronous_commit) for speed; default true. Crash tests of PostgreSQL itself want false. */
  fast?: boolean;
}

export async function startThrowawayPostgres(options: ThrowawayOptions = {}): Promise<ThrowawayPostgres> {
  const binDir = findPostgresBinDir();
  if (!binDir) {
    throw new PostgresMissingError(
      'PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH, via pg_config --bindir or under ' +
        '/usr/lib/postgresql/*/bin; install them (Debian: apt-get install postgresql)',
    );
  }
  const root = mkdtempSync(path.join(options.parentDir ?? os.tmpdir(), 'rag-pg-'));
  const dataDir = path.join(root, 'data');
  if (isRoot()) {
    const { uid, gid } = ensureOsUser();
    chownSync(root, uid, gid);
  }
  chmodSync(root, 0o700);
  const port = await freePort();
  runPg(binDir, 'initdb', ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
  const settings = [
    "listen_addresses = '127.0.0.1'",
    `port = ${port}`,
    `unix_socket_directories = '${root}'`,
    'max_connections = 200',
    'shared_buffers = 32MB',
    ...(options.fast === false ? [] : ['fsync = off', 'synchronous_commit = off', 'full_page_writes = off']),
  ];
  writeFileSync(path.join(dataDir, 'postgresql.auto.conf'), settings.join('\n') + '\n');
  if (isRoot()) chownSync(path.join(dataDir, 'postgresql.auto.conf'), ensureOsUser().uid, ensureOsUser().gid);
  const logFile = path.join(root, 'server.log');
  let running = false;
  const start = () => {
    runPg(binDir, 'pg_ctl', ['-D', dataDir, '-l', logFile, '-w', '-t', '60', 'start']);
    running = true;
  };
  const stopServer = () => {
    if (!running) return;
    runPg(binDir, 'pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', '-t', '60', 'stop']);
    running = false;
  };
  try {
    start();
  } catch (err) {
    rmSync(root, { recursive: true, force: true });
    throw err;
  }
  const urlFor = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`;
  return {
    url: urlFor('postgres'),
    port,
    dataDir,
    urlFor,
    start,
    stopServer,
    stop() {
      try {
        stopServer();
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    },
  };
}

/** Stops a server started by `startThrowawayPostgres` in another process and removes its folder. */
export function stopThrowawayPostgres(dataDir: string): void {
  const binDir = findPostgresBinDir();
  const root = path.dirname(dataDir);
  try {
    if (binDir && existsSync(path.join(dataDir, 'postmaster.pid'))) {
      runPg(binDir, 'pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', '-t', '60', 'stop']);
    }
  } finally {
    if (path.basename(root).startsWith('rag-pg-')) rmSync(root, { recursive: true, force: true });
  }
}
