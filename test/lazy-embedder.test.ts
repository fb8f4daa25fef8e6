/**
 * Opened with `loadEmbedder: 'lazy'`, a collection loads its embedding model only for an operation that needs it:
 * BM25 searches, re-ingests and dry runs of unchanged documents, and deletes of a built collection run with the model
 * files gone; a dense search then names the missing model, and works once the files are back (a failed load is not
 * remembered). Opened eagerly, the same system refuses to start without the model.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { SourceDocument } from '../src/ingest/index.js';
import { ModelNotFoundError } from '../src/models/index.js';
import { openSystem, type RagService } from '../src/service/index.js';
import { fixtureConfig } from './helpers/config.js';
import { BERT_TINY, FIXTURES_DIR } from './helpers/fixtures.js';

const work = mkdtempSync(path.join(os.tmpdir(), 'lazy-embedder-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const models = path.join(work, 'models');
const installModel = () => cpSync(path.join(FIXTURES_DIR, BERT_TINY), path.join(models, BERT_TINY), { recursive: true });
const config = fixtureConfig({ modelsDir: models, indexesDir: path.join(work, 'indexes'), server: { ingestCorpusOnStart: false } });
const collection = 'notes';
const topics = ['volcano lava magma', 'zebra migration savanna', 'sourdough bread yeast', 'chess opening gambit', 'glacier ice melt'];
const docs = (): SourceDocument[] =>
  topics.map((t, i) => ({ id: `d${i}`, title: t.split(' ')[0]!, text: `Notes about ${t}. More about ${t}.`, metadata: {} }));
const open = (loadEmbedder: 'eager' | 'lazy') =>
  openSystem(config, { writable: true, verify: true, reader: false, loadEmbedder, prepareDefaultCollection: false });

describe('lazily loaded embedding models', () => {
  it('serve BM25 and unchanged re-ingests of a built collection without the model, and load it when needed', async () => {
    installModel();
    let service: RagService = await open('lazy');
    try {
      await service.createCollection(collection);
      expect((await service.ingestDocuments(docs(), { collection, progress: false })).added).toBe(topics.length);
      const dense = await service.search({ collection, query: 'lava', k: 3, mode: 'dense' });
      expect(dense.results).toHaveLength(3);
    } finally {
      await service.close();
    }

    rmSync(models, { recursive: true });
    await expect(open('eager')).rejects.toThrow(ModelNotFoundError);
    service = await open('lazy');
    try {
      const bm25 = await service.search({ collection, query: 'sourdough yeast', k: 3, mode: 'bm25' });
      expect(bm25.results[0]!.docId).toBe('d2');
      expect(bm25.timings.embedMs).toBe(0);

      const again = await service.ingestDocuments(docs(), { collection, progress: false });
      expect(again).toMatchObject({ unchanged: topics.length, added: 0, updated: 0, passagesAdded: 0, errors: [] });
      const plan = await service.ingestDocuments(docs(), { collection, progress: false, dryRun: true });
      expect(plan).toMatchObject({ unchanged: topics.length, added: 0, passagesAdded: 0 });
      expect((await service.deleteDocuments(['d4'], { collection })).deleted).toBe(1);
      expect(service.diagnostics.embedOnnxMs).toBe(0);

      // Query embeddings and changed documents need the model, and so does a plan with a new document (it cuts the
      // document to count its passages as the real run would): the error names it, and nothing was written.
      const missing = await service.search({ collection, query: 'lava', k: 3, mode: 'dense' }).catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(ModelNotFoundError);
      expect((missing as Error).message).toContain(`model "${BERT_TINY}" could not be loaded`);
      await expect(service.upsertDocuments([{ id: 'd0', text: 'Changed notes about lava.' }], { collection })).rejects.toThrow(
        ModelNotFoundError,
      );
      const newDoc = { id: 'new', title: '', text: 'A new note.', metadata: {} };
      await expect(service.ingestDocuments([newDoc], { collection, progress: false, dryRun: true })).rejects.toThrow(ModelNotFoundError);
      expect((await service.stats({ collection })).documents).toBe(topics.length - 1);

      // A failed load is not remembered: with the files back, the same process loads the model.
      installModel();
      const [changed] = await service.upsertDocuments([{ id: 'd0', text: 'Changed notes about lava.' }], { collection });
      expect(changed).toMatchObject({ id: 'd0', status: 'updated' });
      expect((await service.search({ collection, query: 'lava', k: 3, mode: 'dense' })).results).toHaveLength(3);
      expect(service.diagnostics.embedOnnxMs).toBeGreaterThan(0);
    } finally {
      await service.close();
    }
  }, 120_000);
});
