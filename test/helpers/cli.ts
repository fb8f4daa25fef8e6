/** Runs `scripts/ingest.ts` as `npm run ingest` would, on the tiny fixture embedder, with the environment's RAG_ settings left out. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { BERT_TINY, FIXTURES_DIR, REPO_ROOT } from './fixtures.js';

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runIngestCli(args: string[], indexesDir: string): Promise<CliRun> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RAG_')));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'scripts', 'ingest.ts'), ...args], {
      cwd: REPO_ROOT,
      env: {
        ...inherited,
        RAG_MODELS_DIR: FIXTURES_DIR,
        RAG_EMBED_MODEL: BERT_TINY,
        RAG_QUANTIZED: 'false',
        RAG_ALLOW_REMOTE: 'false',
        RAG_INDEXES_DIR: indexesDir,
        RAG_CONFIG: '',
      },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
