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
import { IndexStore, readManifest, type PassageStore } from '../src/store/index.js';
import { PostgresEngine } from '../src/store/postgres/engine.js';
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

const QUERIES = [['fusion', 'decoder', 'passages'], ['reciprocal', 'rank', 'fusion'], ['hnsw', 'graph'], ['chunking', 'tokens', 'overlap']];

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

    const moved = runScript('migrate-to-postgres.ts', ['--index', 'docs', '--database-url', url], env);
    expect(moved.status, moved.out).toBe(0);
    expect(moved.out).toMatch(/created collection "docs": 9 documents, \d+ passages/);

    const embeddedDir = path.join(root, 'embedded', 'docs');
    const embedded = IndexStore.open(embeddedDir, { embedModel: BERT_TINY, dim: readManifest(embeddedDir)!.dim, readonly: true });
    const manifest = embedded.manifest;
    const engine = await PostgresEngine.open({
      kind: 'postgres',
      url,
      localDir: path.join(root, 'replica'),
      poolMax: 2,
      connectTimeoutMs: 2000,
      pollIntervalMs: 500,
      applyBatchChanges: 500,
    });
    let replica: PassageStore | undefined;
    try {
      replica = await engine.openCollection('docs', {
        embedModel: manifest.embedModel,
        dim: manifest.dim,
        hnsw: manifest.hnsw,
        exactFilterThreshold: 256,
      });
      const stats = await replica.stats();
      expect(stats.documents).toBe(embedded.stats().documents);
      expect(stats.passages).toBe(embedded.stats().passages);
      for (const terms of QUERIES) {
        const match = terms.map((t) => `"${t}"`).join(' OR ');
        const want = embedded.bm25Search(match, 10).map((h) => [embedded.passagesByLabels([h.label]).get(h.label)!.id, h.score]);
        const hits = await replica.bm25Search(terms, 10, { titleWeight: 1, textWeight: 1 });
        const passages = await replica.passagesByLabels(hits.map((h) => h.label));
        expect(hits.map((h) => [passages.get(h.label)!.id, h.score])).toEqual(want);
      }
      // Vectors were copied, not recomputed: exact search scores agree to float precision.
      const probe = (await replica.passagesOfDocument('fusion-in-decoder.md'))[0]!;
      const [vectorHit] = embedded.exactSearch(new Float32Array(manifest.dim).fill(1), 1);
      const replicaHit = (await replica.exactSearch(new Float32Array(manifest.dim).fill(1), 1))[0]!;
      expect(replicaHit.score).toBeCloseTo(vectorHit!.score, 6);
      expect(probe.docId).toBe('fusion-in-decoder.md');
    } finally {
      await replica?.close();
      await engine.close();
      embedded.close();
    }

    const again = runScript('migrate-to-postgres.ts', ['--index', 'docs', '--database-url', url], env);
    expect(again.status, again.out).toBe(0);
    expect(again.out).toMatch(/updated collection "docs": 9 documents/);
  });
});
