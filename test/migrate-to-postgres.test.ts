/**
 * `npm run migrate-to-postgres` end to end: the bundled corpus is ingested into an embedded index by the ingest CLI,
 * moved into PostgreSQL by the migrate CLI, and a replica's local index built from PostgreSQL then answers BM25 and
 * exact searches exactly as the embedded index does.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStoreEngine, type PassageStore } from '../src/store/index.js';
import { BERT_TINY, FIXTURES_DIR, REPO_ROOT } from './helpers/fixtures.js';
import { freshDatabase, postgresAvailable, stopTestPostgres } from './helpers/postgres.js';

function runScript(script: string, args: string[], env: Record<string, string>) {
  const result = spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'scripts', script), ...args], {
    cwd: REPO_ROOT,
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RAG_'))), ...env },
    encoding: 'utf8',
  });
  return { status: result.status, out: `${result.stdout}\n${result.stderr}` };
}

const QUERIES = [
  ['fusion', 'decoder', 'passages'],
  ['reciprocal', 'rank', 'fusion'],
  ['hnsw', 'graph'],
  ['chunking', 'tokens', 'overlap'],
];

describe.skipIf(!postgresAvailable())('migrate-to-postgres', () => {
  let url: string;
  let root: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    url = await freshDatabase();
    root = mkdtempSync(path.join(os.tmpdir(), 'rag-migrate-'));
    env = {
      RAG_MODELS_DIR: FIXTURES_DIR,
      RAG_EMBED_MODEL: BERT_TINY,
      RAG_QUANTIZED: 'false',
      RAG_ALLOW_REMOTE: 'false',
      RAG_INDEXES_DIR: path.join(root, 'embedded'),
    };
  });

  afterAll(async () => {
    rmSync(root, { recursive: true, force: true });
    await stopTestPostgres();
  });

  it('moves an embedded index with its vectors; the PostgreSQL deployment ranks identically; a re-run changes nothing', async () => {
    const ingest = runScript('ingest.ts', [path.join(REPO_ROOT, 'corpus'), '--index', 'docs'], env);
    expect(ingest.status, ingest.out).toBe(0);

    const missing = runScript('migrate-to-postgres.ts', ['--index', 'docs'], env);
    expect(missing.status).not.toBe(0);
    expect(missing.out).toMatch(/--database-url|RAG_DATABASE_URL/);

    const moved = runScript('migrate-to-postgres.ts', ['--from', 'docs', '--database-url', url], env);
    expect(moved.status, moved.out).toBe(0);
    expect(moved.out).toMatch(/created collection "docs": 9 documents, \d+ passages/);

    const local = await openStoreEngine({ kind: 'sqlite', indexesDir: path.join(root, 'embedded') });
    const manifest = (await local.describeCollection('docs'))!;
    const options = { embedModel: manifest.embedModel, dim: manifest.dim, hnsw: manifest.hnsw, exactFilterThreshold: 256 };
    const embedded = await local.openCollection('docs', { ...options, readonly: true });
    const engine = await openStoreEngine({
      kind: 'postgres',
      url,
      localDir: path.join(root, 'replica'),
      poolMax: 2,
      connectTimeoutMs: 2000,
      pollIntervalMs: 500,
      applyBatchChanges: 500,
    });
    let replica: PassageStore | undefined;
    const ranked = async (store: PassageStore, terms: string[]) => {
      const hits = await store.bm25Search(terms, 10, { titleWeight: 1, textWeight: 1 });
      const passages = await store.passagesByLabels(hits.map((h) => h.label));
      return hits.map((h) => [passages.get(h.label)!.id, h.score]);
    };
    try {
      replica = await engine.openCollection('docs', options);
      const [want, got] = await Promise.all([embedded.stats(), replica.stats()]);
      expect(got.documents).toBe(want.documents);
      expect(got.passages).toBe(want.passages);
      for (const terms of QUERIES) expect(await ranked(replica, terms)).toEqual(await ranked(embedded, terms));
      // Vectors were copied, not recomputed: exact search agrees to float precision.
      const probe = new Float32Array(manifest.dim).fill(1);
      const [a] = await embedded.exactSearch(probe, 1);
      const [b] = await replica.exactSearch(probe, 1);
      expect(b!.score).toBeCloseTo(a!.score, 6);
      expect((await replica.getDocument('fusion-in-decoder.md'))?.chunking).toBe(
        (await embedded.getDocument('fusion-in-decoder.md'))?.chunking,
      );
    } finally {
      await replica?.close();
      await engine.close();
      await embedded.close();
      await local.close();
    }

    const again = runScript('migrate-to-postgres.ts', ['--index', 'docs', '--database-url', url], env);
    expect(again.status, again.out).toBe(0);
    expect(again.out).toMatch(/updated collection "docs": 9 documents/);
  });
});
