/**
 * kill -9 in the middle of a collection delete (issue 24): on restart the collection is either whole (listed, every
 * document searchable, its structures consistent) or gone (not listed, no leftovers, and it can be created again),
 * and the other collections are untouched. The delete takes the collection's writer lock, renames its folder to a
 * `.dropped-*` tombstone in one step and then removes it; an engine opening removes tombstones left by a crash.
 *
 * Deterministic: test/collection-delete-crash-child.ts kills itself at each step of the delete. At random: the real
 * server process is SIGKILLed at random moments of a DELETE /v1/collections/:name.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startServerProcess } from '../scripts/lib/server-process.js';
import type { DocumentInput } from '../src/service/index-writer.js';
import { openSystem } from '../src/service/index.js';
import type { DropFaultPoint } from '../src/store/sqlite/sqlite-engine.js';
import type { DeleteCrashPlan } from './collection-delete-crash-child.js';
import { fixtureConfig } from './helpers/config.js';
import { runTsxChild } from './helpers/tsx-child.js';
import { BERT_TINY, FIXTURES_DIR, REPO_ROOT, T5_TINY } from './helpers/fixtures.js';

const CHILD = path.join(REPO_ROOT, 'test', 'collection-delete-crash-child.ts');
const workDir = mkdtempSync(path.join(os.tmpdir(), 'delete-crash-'));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

const DOOMED = 'doomed';
const KEEPER = 'keeper';

function documents(collection: string, count: number): DocumentInput[] {
  return Array.from({ length: count }, (_, i) => ({
    id: `${collection}-${i}`,
    title: `${collection} note ${i}`,
    text: `The ${collection} note ${i} records the marker${collection}${i}q beside lanterns, harbors and ${i % 5} meadows.`,
  }));
}

const CONTENTS: Record<string, DocumentInput[]> = { [DOOMED]: documents(DOOMED, 30), [KEEPER]: documents(KEEPER, 12) };

/**
 * Opens the folder as a restarting server does (engine opening, every collection verified when opened) and says
 * whether the deleted collection came back whole or is gone; anything else fails.
 */
async function outcomeAfterRestart(indexesDir: string): Promise<'whole' | 'gone'> {
  const service = await openSystem(fixtureConfig({ indexesDir }), {
    writable: true,
    verify: true,
    reader: false,
    loadEmbedder: 'eager',
    prepareDefaultCollection: false,
  });
  try {
    expect(
      readdirSync(indexesDir).filter((f) => f.startsWith('.dropped-')),
      'tombstones left after an engine opening',
    ).toEqual([]);
    const listed = (await service.listCollections()).map((c) => c.name);
    await expectWhole(service, KEEPER);
    if (listed.includes(DOOMED)) {
      await expectWhole(service, DOOMED);
      return 'whole';
    }
    expect(await service.hasCollection(DOOMED)).toBe(false);
    expect(existsSync(path.join(indexesDir, DOOMED))).toBe(false);
    // The name is free: a new, empty collection takes it.
    await service.createCollection(DOOMED);
    expect((await service.stats({ collection: DOOMED })).documents).toBe(0);
    const found = await service.search({ collection: DOOMED, query: `marker${DOOMED}0q`, mode: 'bm25', k: 5 });
    expect(found.results).toEqual([]);
    return 'gone';
  } finally {
    await service.close();
  }
}

type Service = Awaited<ReturnType<typeof openSystem>>;

async function expectWhole(service: Service, collection: string): Promise<void> {
  const docs = CONTENTS[collection]!;
  // Opening verified the collection (SQLite, FTS and the HNSW graph agree); verify again after the searches below.
  const stats = await service.stats({ collection });
  expect(stats.documents, `${collection} documents`).toBe(docs.length);
  expect(stats.hnsw.live, `${collection} searchable passages`).toBe(stats.passages);
  for (const doc of docs) {
    const bm25 = await service.search({ collection, query: `marker${collection}${doc.id.split('-')[1]}q`, mode: 'bm25', k: 5 });
    expect(
      bm25.results.map((r) => r.docId),
      `bm25 ${doc.id}`,
    ).toEqual([doc.id]);
  }
  const dense = await service.search({ collection, query: `${collection} note lanterns harbors`, mode: 'dense', k: 100 });
  expect(new Set(dense.results.map((r) => r.docId)).size).toBe(docs.length);
  expect((await service.verify({ collection })).problems).toEqual([]);
}

async function killedAt(point: DropFaultPoint): Promise<string> {
  const indexesDir = path.join(mkdtempSync(path.join(workDir, 'steps-')), 'indexes');
  const result = await runTsxChild(CHILD, { indexesDir, point, collections: CONTENTS, doomed: DOOMED } satisfies DeleteCrashPlan);
  expect(result.signal, `child should be killed at ${point}; output:\n${result.output}`).toBe('SIGKILL');
  return indexesDir;
}

describe('kill -9 during a collection delete', () => {
  it('killed once the delete holds the lock, before anything moved: the collection is whole', async () => {
    expect(await outcomeAfterRestart(await killedAt('drop-before-rename'))).toBe('whole');
  });

  it('killed right after the rename: the collection is gone and its name free', async () => {
    const indexesDir = await killedAt('drop-after-rename');
    expect(readdirSync(indexesDir).filter((f) => f.startsWith('.dropped-'))).toHaveLength(1);
    expect(await outcomeAfterRestart(indexesDir)).toBe('gone');
  });

  it('killed partway through removing the files: the collection is gone and its name free', async () => {
    const indexesDir = await killedAt('drop-after-rename');
    // What a kill in the middle of the removal leaves: the tombstone with some of its files.
    const [tombstone] = readdirSync(indexesDir).filter((f) => f.startsWith('.dropped-'));
    for (const file of readdirSync(path.join(indexesDir, tombstone!))) {
      if (file.startsWith('index.sqlite') || file === 'manifest.json') rmSync(path.join(indexesDir, tombstone!, file));
    }
    expect(await outcomeAfterRestart(indexesDir)).toBe('gone');
  });

  it('the server SIGKILLed at random moments of DELETE /v1/collections/:name: whole or gone, never half', async () => {
    // MINSTD: the same delays every run.
    let seed = 24;
    const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
    const post = async (base: string, route: string, body: unknown) => {
      const res = await fetch(base + route, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      expect(res.status, `${route}: ${await res.clone().text()}`).toBeLessThan(300);
    };
    const outcomes: string[] = [];
    for (let trial = 0; trial < 5; trial++) {
      const work = mkdtempSync(path.join(workDir, 'server-'));
      const indexesDir = path.join(work, 'indexes');
      const configFile = path.join(work, 'rag.config.json');
      writeFileSync(
        configFile,
        JSON.stringify({ auth: { disabled: true }, server: { ingestCorpusOnStart: false, rateLimit: { max: 0 } } }),
      );
      const server = await startServerProcess({
        modelsDir: FIXTURES_DIR,
        embedModel: BERT_TINY,
        readerModel: T5_TINY,
        indexesDir,
        corpusDir: path.join(work, 'no-corpus'),
        configFile,
        readyTimeoutMs: 120_000,
      });
      // A probe written like the doomed collection and deleted whole first says how long a delete takes here.
      for (const [name, docs] of [...Object.entries(CONTENTS), ['probe', CONTENTS[DOOMED]!] as const]) {
        await post(server.base, '/v1/collections', { name });
        await post(server.base, `/v1/collections/${name}/documents`, { documents: docs });
      }
      const started = performance.now();
      expect((await fetch(`${server.base}/v1/collections/probe`, { method: 'DELETE' })).status).toBe(200);
      const deleteMs = performance.now() - started;
      const delayMs = random() * deleteMs * 1.5;
      const deleting = fetch(`${server.base}/v1/collections/${DOOMED}`, { method: 'DELETE' }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, delayMs));
      server.child.kill('SIGKILL');
      expect((await server.exited).signal).toBe('SIGKILL');
      await deleting;
      const outcome = await outcomeAfterRestart(indexesDir);
      outcomes.push(`${outcome} (killed ${delayMs.toFixed(1)} ms into a ${deleteMs.toFixed(1)} ms delete)`);
    }
    console.log(`[delete-crash] ${outcomes.join('; ')}`);
  }, 240_000);
});
