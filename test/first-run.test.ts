/**
 * A new user's first `npm start`: no models, no internet. Start-up must fail with one message that names every
 * missing model, gives advice that fits the settings, points at the fixture models for trying the service offline,
 * and never claims to be listening.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/fixtures.js';

/** A loopback port nothing listens on: the hub as seen from a machine without internet (connection refused). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function npmStart(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RAG_')));
  const work = mkdtempSync(path.join(os.tmpdir(), 'first-run-'));
  // An empty config file, so a rag.config.json in the checkout cannot change what a fresh clone does.
  writeFileSync(path.join(work, 'rag.config.json'), '{}');
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
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, stdout, stderr };
}

describe('first start without models', () => {
  it('with hub downloads on but no internet: names both models, does not suggest turning downloads on, mentions the fixtures, never listens', async () => {
    const { code, stdout, stderr } = await npmStart({ RAG_HUB_URL: `http://127.0.0.1:${await closedPort()}/` });
    expect(code).toBe(1);
    expect(stderr).toMatch(/2 models could not be loaded/);
    expect(stderr).toContain('model "Xenova/bge-small-en-v1.5" could not be loaded');
    expect(stderr).toContain('model "Xenova/flan-t5-small" could not be loaded');
    expect(stderr).toContain('hub downloads are on (RAG_ALLOW_REMOTE=true) but did not work');
    expect(stderr).not.toMatch(/allow hub downloads with RAG_ALLOW_REMOTE=true/);
    expect(stderr).toContain('npm run fixtures -- --size tiny');
    expect(stdout).not.toContain('"listening"');
  }, 120_000);

  it('with hub downloads off: names both models and says how to turn downloads on', async () => {
    const { code, stdout, stderr } = await npmStart({ RAG_ALLOW_REMOTE: 'false' });
    expect(code).toBe(1);
    expect(stderr).toContain('model "Xenova/bge-small-en-v1.5" could not be loaded');
    expect(stderr).toContain('model "Xenova/flan-t5-small" could not be loaded');
    expect(stderr).toContain('allow hub downloads with RAG_ALLOW_REMOTE=true');
    expect(stderr).toContain('--write-config rag.config.json');
    expect(stdout).not.toContain('"listening"');
  }, 120_000);
});
