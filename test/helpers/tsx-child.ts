import { spawn } from 'node:child_process';
import { REPO_ROOT } from './fixtures.js';

/** Runs a TypeScript child script with one JSON argument (its plan), collecting stdout and stderr, until it ends. */
export function runTsxChild(
  script: string,
  plan: unknown,
): Promise<{ signal: NodeJS.Signals | null; code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify(plan)], { cwd: REPO_ROOT });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, output }));
  });
}
