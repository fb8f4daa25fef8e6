/**
 * The real server (`src/main.ts`) as a child process on the fixture models, for tests and benchmarks that kill it,
 * limit it or measure it from outside.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findRepoRoot } from '../../src/fixtures/index.js';

const REPO_ROOT = findRepoRoot(fileURLToPath(new URL('.', import.meta.url)));

const MAIN = path.join(REPO_ROOT, 'src', 'main.ts');

export interface ServerProcessOptions {
  /** Folder holding the fixture model folders. */
  modelsDir: string;
  embedModel: string;
  readerModel: string;
  indexesDir: string;
  corpusDir: string;
  /** Config file (JSON) for everything the environment variables do not cover. */
  configFile: string;
  /** Extra environment, e.g. RAG_AUTH_DISABLED. */
  env?: Record<string, string>;
  /** Milliseconds to wait for /readyz. */
  readyTimeoutMs?: number;
}

export interface ServerProcess {
  child: ChildProcess;
  pid: number;
  base: string;
  /** Everything the server wrote to stdout and stderr (pino JSON lines). */
  output(): string;
  /** Resolves with how the process ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns the server on an ephemeral loopback port and resolves once /readyz answers 200. */
export async function startServerProcess(options: ServerProcessOptions): Promise<ServerProcess> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RAG_')));
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
    cwd: REPO_ROOT,
    env: {
      ...inherited,
      RAG_CONFIG: options.configFile,
      RAG_MODELS_DIR: options.modelsDir,
      RAG_EMBED_MODEL: options.embedModel,
      RAG_READER_MODEL: options.readerModel,
      RAG_QUANTIZED: 'false',
      RAG_ALLOW_REMOTE: 'false',
      RAG_INDEXES_DIR: options.indexesDir,
      RAG_CORPUS_DIR: options.corpusDir,
      RAG_LOG_LEVEL: 'info',
      HOST: '127.0.0.1',
      PORT: '0',
      ...options.env,
    },
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );

  const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
  let base: string | undefined;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`server exited during start-up:\n${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server not ready within ${options.readyTimeoutMs ?? 60_000} ms:\n${output}`);
    }
    base ??= listeningBase(output);
    if (base) {
      const ready = await fetch(`${base}/readyz`).then(
        (r) => r.status,
        () => 0,
      );
      if (ready === 200) break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, pid: child.pid!, base, output: () => output, exited };
}

/** The port from the server's `listening` log line. */
function listeningBase(output: string): string | undefined {
  for (const line of output.split('\n')) {
    if (!line.includes('"listening"')) continue;
    try {
      const entry = JSON.parse(line) as { msg?: string; port?: number };
      if (entry.msg === 'listening' && typeof entry.port === 'number') return `http://127.0.0.1:${entry.port}`;
    } catch {
      // A partial line; the next poll sees it whole.
    }
  }
  return undefined;
}

/** Resident set size of a process in bytes, from /proc (Linux). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!kb) throw new Error(`no VmRSS for process ${pid}`);
  return Number(kb[1]) * 1024;
}
