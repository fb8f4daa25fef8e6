/**
 * The server as a real process (`node --import tsx src/main.ts`, or the tsx CLI as `npm start` runs it) on a config
 * file, with its JSON log lines collected, for tests of what happens to the process: kill -9, signals, hostile input.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hashApiKey } from '../../src/api/index.js';
import { BERT_TINY, FIXTURES_DIR, REPO_ROOT, T5_TINY } from './fixtures.js';

const TSX = path.join(REPO_ROOT, 'node_modules', '.bin', 'tsx');
const MAIN = path.join(REPO_ROOT, 'src', 'main.ts');

export interface Child {
  process: ChildProcess;
  base: string;
  logs: Array<Record<string, any>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

export function serverSetup(extra: Record<string, unknown> = {}) {
  const work = mkdtempSync(path.join(os.tmpdir(), 'rag-server-'));
  const corpus = path.join(work, 'corpus');
  const indexes = path.join(work, 'indexes');
  const configFile = path.join(work, 'rag.config.json');
  const config = {
    modelsDir: FIXTURES_DIR,
    embedModel: BERT_TINY,
    readerModel: T5_TINY,
    quantized: false,
    allowRemote: false,
    indexesDir: indexes,
    corpusDir: corpus,
    host: '127.0.0.1',
    port: 0,
    logLevel: 'info',
    ...extra,
  };
  writeFileSync(configFile, JSON.stringify(config));
  return { configFile, dir: path.join(indexes, 'default') };
}

/** `via: 'tsx'` runs what `npm start` runs today (the tsx CLI and its node child); `via: 'node'` is one process. */
export async function spawnServer(configFile: string, via: 'tsx' | 'node', key: string): Promise<Child> {
  const args = via === 'tsx' ? [MAIN] : ['--import', 'tsx', MAIN];
  const child = spawn(via === 'tsx' ? TSX : process.execPath, args, {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      RAG_CONFIG: configFile,
      RAG_API_KEYS: JSON.stringify([{ name: 'ops', sha256: hashApiKey(key), scopes: ['read', 'write'] }]),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, any>> = [];
  let stderr = '';
  let buffered = '';
  child.stdout!.on('data', (d: Buffer) => {
    buffered += d.toString();
    const parts = buffered.split('\n');
    buffered = parts.pop()!;
    for (const line of parts) if (line.startsWith('{')) logs.push(JSON.parse(line) as Record<string, any>);
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stderr })),
  );
  const deadline = Date.now() + 60_000;
  while (!logs.some((l) => l.msg === 'ready')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server did not become ready:\n${stderr}\n${JSON.stringify(logs)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const port = logs.find((l) => l.msg === 'listening')!.port as number;
  return { process: child, base: `http://127.0.0.1:${port}`, logs, exited };
}
