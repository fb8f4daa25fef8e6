/**
 * A new user's first `npm start`: no models, no internet. With no model configured the server falls back to the
 * reader the project trained and ships, with BM25 retrieval, says so in its log and on /readyz, and answers questions
 * about the bundled corpus with a span of the passage it cites. A model somebody configured never falls back: that
 * start fails with one message naming every missing model, with advice that fits the settings, and never listens.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerSpan } from '../src/service/citations.js';
import { REPO_ROOT } from './helpers/fixtures.js';

/** A loopback port nothing listens on: the hub as seen from a machine without internet (connection refused). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface Started {
  code: Promise<number | null>;
  output: () => { stdout: string; stderr: string };
  /** The base URL once the `listening` line appeared; undefined if the process ended first. */
  base: Promise<string | undefined>;
  stop: () => void;
  work: string;
}

/** `npm start` as a fresh clone runs it: the repository's main, an empty config file, its own folders. */
function npmStart(env: Record<string, string>, configFile: Record<string, unknown> = {}): Started {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RAG_')));
  const work = mkdtempSync(path.join(os.tmpdir(), 'first-run-'));
  // A config file of its own (empty by default), so a rag.config.json in the checkout cannot change what a fresh clone does.
  writeFileSync(path.join(work, 'rag.config.json'), JSON.stringify(configFile));
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'src', 'main.ts')], {
    cwd: REPO_ROOT,
    env: {
      ...inherited,
      RAG_MODELS_DIR: path.join(work, 'models'),
      RAG_INDEXES_DIR: path.join(work, 'indexes'),
      RAG_CONFIG: path.join(work, 'rag.config.json'),
      PORT: '0',
      HOST: '127.0.0.1',
      ...env,
    },
  });
  let stdout = '';
  let stderr = '';
  let onLine: (() => void) | undefined;
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    onLine?.();
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = new Promise<number | null>((resolve) => child.on('close', resolve));
  const base = new Promise<string | undefined>((resolve) => {
    onLine = () => {
      const line = stdout.split('\n').find((l) => l.includes('"msg":"listening"'));
      if (line) resolve(`http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}`);
    };
    void code.then(() => resolve(undefined));
  });
  return { code, output: () => ({ stdout, stderr }), base, stop: () => child.kill('SIGTERM'), work };
}

const logLines = (stdout: string) =>
  stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/**
 * Questions about the bundled corpus (the first is the README's): the reader copies its answer out of the passage it
 * cites ("60", right; "bm25", half of it; "Gautier Iza", cut short: docs/training.md). Which questions it copies a
 * span for changes with any change to the corpus text or its reading; the test pins that it copies, not what.
 */
const OFFLINE_QUESTIONS = ['What is the default value of rrfK?', 'What does hybrid retrieval fuse?', 'Who introduced fusion-in-decoder?'];

describe('first start without models or internet, nothing configured', () => {
  let start: Started;
  let base: string;

  beforeAll(async () => {
    start = npmStart({ RAG_HUB_URL: `http://127.0.0.1:${await closedPort()}/` });
    const url = await start.base;
    if (!url) throw new Error(`the offline start did not listen:\n${start.output().stderr}\n${start.output().stdout}`);
    base = url;
  }, 180_000);
  afterAll(async () => {
    start?.stop();
    await start?.code;
  });

  it('serves the bundled reader with BM25 and says so, with how to switch, in the log and on /readyz', async () => {
    const ready = (await (await fetch(`${base}/readyz`)).json()) as Record<string, unknown>;
    expect(ready).toMatchObject({
      status: 'ready',
      readerModel: 'fid-squad-mini',
      embedModel: 'lexical-hash-512',
      retrieval: 'bm25',
      collection: 'offline',
    });
    for (const said of [
      ready.offline as string,
      logLines(start.output().stdout).find((l) => String(l.msg).startsWith('offline start'))?.msg as string,
    ]) {
      expect(said).toContain('Xenova/bge-small-en-v1.5');
      expect(said).toContain('fid-squad-mini');
      expect(said).toContain('BM25');
      expect(said).toContain('RAG_EMBED_MODEL and RAG_READER_MODEL');
    }
    expect(existsSync(path.join(start.work, 'indexes', 'offline'))).toBe(true);
  });

  it.each(OFFLINE_QUESTIONS)('answers "%s" with a span of the passage it cites', async (question) => {
    const res = await fetch(`${base}/v1/ask`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ question }),
    });
    expect(res.status).toBe(200);
    type Answer = { answer: string; citations: Array<{ passageId: string }>; passages: Array<{ passageId: string; text: string }> };
    const body = (await res.json()) as Answer;
    expect(body.answer.trim().length).toBeGreaterThan(0);
    const cited = body.passages.find((p) => p.passageId === body.citations[0]!.passageId)!;
    expect(answerSpan(cited.text, body.answer), `${body.answer} in ${cited.text}`).toBeDefined();
  });
});

describe('first start with models configured but out of reach', () => {
  it('with hub downloads on but no internet: names both models, does not suggest turning downloads on, never listens, never falls back', async () => {
    const start = npmStart({
      RAG_HUB_URL: `http://127.0.0.1:${await closedPort()}/`,
      RAG_EMBED_MODEL: 'Xenova/bge-small-en-v1.5',
      RAG_READER_MODEL: 'Xenova/flan-t5-small',
    });
    const code = await start.code;
    const { stdout, stderr } = start.output();
    expect(code).toBe(1);
    expect(stderr).toMatch(/2 models could not be loaded/);
    expect(stderr).toContain('model "Xenova/bge-small-en-v1.5" could not be loaded');
    expect(stderr).toContain('model "Xenova/flan-t5-small" could not be loaded');
    expect(stderr).toContain('hub downloads are on (RAG_ALLOW_REMOTE=true) but did not work');
    expect(stderr).not.toMatch(/allow hub downloads with RAG_ALLOW_REMOTE=true/);
    expect(stderr).toContain('RAG_READER_MODEL=fid-squad-mini npm start\n');
    expect(stdout).not.toContain('"listening"');
    expect(stdout).not.toContain('offline start');
    expect(existsSync(path.join(start.work, 'indexes', 'offline'))).toBe(false);
  }, 120_000);

  it('one model configured (the reader, in a config file), downloads off: fails on it rather than falling back', async () => {
    const start = npmStart({ RAG_ALLOW_REMOTE: 'false' }, { readerModel: 'Xenova/flan-t5-small' });
    const code = await start.code;
    expect(code).toBe(1);
    const { stdout, stderr } = start.output();
    expect(stderr).toContain('model "Xenova/flan-t5-small" could not be loaded');
    expect(stderr).toContain('allow hub downloads with RAG_ALLOW_REMOTE=true');
    expect(stdout).not.toContain('"listening"');
    expect(stdout).not.toContain('offline start');
  }, 120_000);
});
