/**
 * The commands of the README and of every docs/*.md page, run as written (on the tiny fixture models, with temporary
 * folders), so the docs cannot drift from what a fresh clone does. README commands run first (its quick start starts
 * the server the pages' examples talk to), then the pages in file-name order. Every command in a ```bash block is either
 * run or skipped for a stated reason; a new command the table below does not know fails the test until it is
 * classified.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/fixtures.js';

/** The README and every page under docs/: their commands must all run as written. */
const DOC_FILES = [
  'README.md',
  ...readdirSync(path.join(REPO_ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
];

/** Commands in the docs' bash blocks, continuation lines joined and comments removed, in order. */
function readmeCommands(): string[] {
  const commands: string[] = [];
  const text = DOC_FILES.map((f) => readFileSync(path.join(REPO_ROOT, f), 'utf8')).join('\n');
  for (const block of text.matchAll(/```bash\n([\s\S]*?)```/g)) {
    const joined = block[1]!.replace(/\\\n\s*/g, '');
    for (const line of joined.split('\n')) {
      const command = line.replace(/(^|\s{2,})#.*$/, '').trim();
      if (command !== '' && !command.startsWith('#')) commands.push(command);
    }
  }
  return commands;
}

/** Why a command is not run here; everything else is. */
const SKIPPED: Array<[RegExp, string]> = [
  [/^npm install$/, 'installs dependencies: CI has already done it (npm ci)'],
  [/^npm test$/, 'this test is part of it'],
  [/--size full/, 'full-size fixtures are about 1 GB and minutes of CPU; the tiny ones are built instead'],
  [/fixture-\w+-full/, 'runs on the full-size fixtures, which are not built here (see above)'],
  [/^npm run bench:/, 'benchmarks run for minutes; they are run by hand and their figures recorded in docs/benchmarks.md'],
  [/^apt-get /, 'installs system packages (PyTorch for training); CI must not need them'],
  [
    /^\/usr\/bin\/python3 /,
    'runs the PyTorch trainer, which CI does not have; test/trainer-python.test.ts runs its tests where torch is installed',
  ],
  [
    /--people 12000|--dataset train-data\/facts-train\.json/,
    'builds the 24 000 training examples (minutes); the same commands run on the validation set here',
  ],
  [
    /--dataset train-data\/(salient|squad-train)\.json --out/,
    'builds the 23 000 pre-training and training examples (two minutes); the validation ones are built here',
  ],
  [
    /--checkpoint train-data\/(run|flan-run)\//,
    'exports a training run, which needs PyTorch (above); the committed reader is exported instead',
  ],
  [
    /db-host|^sudo -u postgres/,
    "the operator's own PostgreSQL host; test/replicas.test.ts and test/migrate-to-postgres.test.ts run the same steps against a throwaway PostgreSQL",
  ],
];

const skipReason = (command: string) => SKIPPED.find(([pattern]) => pattern.test(command))?.[1];

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const work = mkdtempSync(path.join(os.tmpdir(), 'readme-'));
let server: ChildProcess | undefined;

/** Stops a server this test started (npm runs it as its child: the whole process group is signalled). */
async function stopServer(child: ChildProcess | undefined): Promise<void> {
  if (child?.pid === undefined || child.exitCode !== null) return;
  const closed = new Promise((resolve) => child.on('close', resolve));
  process.kill(-child.pid, 'SIGTERM');
  await closed;
}

afterAll(async () => {
  await stopServer(server);
  rmSync(work, { recursive: true, force: true });
});

describe('README and docs/*.md commands', () => {
  it('run as written on a fresh clone (tiny fixture models, temporary folders)', async () => {
    const commands = readmeCommands();
    expect(commands.length).toBeGreaterThan(10);
    const port = await freePort();
    const configFile = path.join(work, 'rag.config.json');
    const emptyConfig = path.join(work, 'empty.config.json');
    writeFileSync(emptyConfig, '{}');
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('RAG_') && k !== 'PORT' && k !== 'HOST'),
    );
    // Nothing a user would have to export: the models come from the config file the quick start writes. Only the
    // folders are moved out of the checkout, and downloads are off because this machine has no internet.
    const env = {
      ...inherited,
      RAG_ALLOW_REMOTE: 'false',
      RAG_INDEXES_DIR: path.join(work, 'indexes'),
      RAG_CONFIG: configFile,
      PORT: String(port),
      HOST: '127.0.0.1',
    };
    // Folders a command creates inside the checkout go to the temporary folder instead.
    const relocate = (command: string) =>
      command
        .replace(/--out (\S+)/, (_m, dir: string) => `--out ${path.join(work, dir)}`)
        // docs/training.md keeps its data under train-data/ in the checkout.
        .replace(/(^|[\s=])train-data\//g, (_m, lead: string) => `${lead}${path.join(work, 'train-data')}/`)
        .replace(/RAG_MODELS_DIR=models\/fixtures/, `RAG_MODELS_DIR=${path.join(work, 'models/fixtures')}`)
        .replace(/--json out\//, `--json ${path.join(work, 'out')}/`)
        .replace(/--write-config rag\.config\.json/, `--write-config ${configFile}`)
        .replace(/localhost:8080/g, `127.0.0.1:${port}`)
        .replace(/^curl -s(N?) /, 'curl -sS$1 --fail-with-body ');

    const ran: string[] = [];
    for (const command of commands) {
      if (skipReason(command)) continue;
      const shell = relocate(command);
      if (/(^| )npm start$/.test(command)) {
        // The quick start's first `npm start` is a fresh clone's: no model configured, no internet, so it serves the
        // bundled reader. Once the fixture config is written, `npm start` serves the fixtures (the README says to stop
        // the first server before).
        await stopServer(server);
        server = await startServer(shell, existsSync(configFile) ? env : { ...env, RAG_CONFIG: emptyConfig }, port);
        ran.push(command);
        continue;
      }
      const { code, stdout, stderr } = await runShell(shell, env);
      expect(code, `${command}\n${stderr}\n${stdout}`).toBe(0);
      ran.push(command);
      if (command.includes('/v1/search')) {
        // The example's filter must match the bundled corpus: a search that finds nothing would teach nothing.
        expect(JSON.parse(stdout).results.length, command).toBeGreaterThan(0);
      }
      if (command.includes('text/event-stream')) expect(stdout).toContain('event: answer');
      if (command.includes('--json')) {
        const file = /--json (\S+)/.exec(shell)![1]!;
        expect(JSON.parse(readFileSync(file, 'utf8')), command).toBeTypeOf('object');
      }
    }
    // The server, its API calls, ingest, both evals and the fixture build all ran.
    expect(ran.filter((c) => c.startsWith('curl')).length).toBeGreaterThanOrEqual(8);
    for (const kind of [
      'npm start',
      'npm run fixtures',
      'npm run ingest',
      'npm run eval ',
      'npm run eval:qa',
      'npm run train:data',
      'npm run reader:export',
      'npm run eval:attribution',
    ]) {
      expect(
        ran.some((c) => c.includes(kind)),
        kind,
      ).toBe(true);
    }
  }, 900_000);
});

function runShell(command: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', command], { cwd: REPO_ROOT, env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Starts the README's server command in its own process group and waits until it answers /readyz. */
async function startServer(command: string, env: NodeJS.ProcessEnv, port: number): Promise<ChildProcess> {
  const child = spawn('bash', ['-c', command], { cwd: REPO_ROOT, env, detached: true });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const deadline = Date.now() + 300_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${command} exited:\n${output}`);
    if (Date.now() > deadline) throw new Error(`${command} not ready:\n${output}`);
    const status = await fetch(`http://127.0.0.1:${port}/readyz`).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200) return child;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
