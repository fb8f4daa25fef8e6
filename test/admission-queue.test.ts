/**
 * Retry-After on a full queue must come from measured service times: the issue saw "3 s" while the answer backlog took
 * 44 s to drain, and the write queue guessed 1 s per write whatever the writes took. Tasks here are timers of known
 * length, so the true drain time is known and measured; then the index writer, with real writes through a real store,
 * shows it uses the same admission.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SourceDocument } from '../src/ingest/index.js';
import { Embedder } from '../src/models/index.js';
import { AdmissionQueue, QueueFullError, WriteCancelledError, WriteQueueFullError } from '../src/service/index.js';
import { IndexWriter } from '../src/service/index-writer.js';
import type { PassageStore } from '../src/store/index.js';
import { BERT_TINY, FIXTURES_DIR } from './helpers/fixtures.js';
import { DEFAULTS, openTestStore, writeSettings } from './helpers/store.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Fills the queue with `n` tasks of `ms` each and returns when they have all finished. */
function fill(queue: AdmissionQueue, n: number, ms: number, bounded = true): Promise<unknown> {
  return Promise.all(Array.from({ length: n }, () => queue.run(() => sleep(ms), { bounded })));
}

async function refusal(queue: AdmissionQueue): Promise<number> {
  try {
    await queue.run(async () => undefined);
  } catch (err) {
    if (err instanceof QueueFullError) return err.retryAfterSeconds;
    throw err;
  }
  throw new Error('the queue admitted a task although it is full');
}

/** Retry-After against the time the backlog really took to drain, measured from the refusal. */
async function adviceAndDrain(concurrency: number, queued: number, taskMs: number): Promise<{ advisedS: number; drainedS: number }> {
  const queue = new AdmissionQueue(concurrency, queued);
  await queue.run(() => sleep(taskMs)); // one measured task
  const backlog = fill(queue, concurrency + queued, taskMs);
  const refusedAt = performance.now();
  const advisedS = await refusal(queue);
  await backlog;
  return { advisedS, drainedS: (performance.now() - refusedAt) / 1000 };
}

describe('admission queue Retry-After', () => {
  it('covers the drain time when tasks are slow (no early retries into a full queue)', async () => {
    const { advisedS, drainedS } = await adviceAndDrain(1, 3, 1500);
    expect(advisedS).toBeGreaterThanOrEqual(Math.floor(drainedS));
    expect(advisedS).toBeLessThanOrEqual(Math.ceil(drainedS) + 1);
  }, 30_000);

  it('is short when tasks are fast (clients are not sent away for long)', async () => {
    const { advisedS, drainedS } = await adviceAndDrain(2, 8, 150);
    expect(drainedS).toBeLessThan(2);
    expect(advisedS).toBeLessThanOrEqual(Math.ceil(drainedS) + 1);
  }, 30_000);

  it('before any task has completed, counts the running tasks as taking at least as long as they have run', async () => {
    const queue = new AdmissionQueue(1, 2);
    const backlog = fill(queue, 3, 2500);
    await sleep(2000);
    // One task has run for 2 s and two wait: the backlog needs at least 2 x 2 s more.
    expect(await refusal(queue)).toBeGreaterThanOrEqual(4);
    await backlog;
  }, 30_000);

  it('admits unbounded tasks beyond the bound and counts them in the backlog; a task cancelled while waiting never runs', async () => {
    const queue = new AdmissionQueue(1, 1);
    await queue.run(() => sleep(600)); // one measured task
    const bulk = fill(queue, 4, 600, false);
    expect(queue.depth).toBe(4);
    // Unbounded work fills the queue: a bounded task is refused, advised to wait for all four (2.4 s).
    expect(await refusal(queue)).toBeGreaterThanOrEqual(3);
    expect(await refusal(queue)).toBeLessThanOrEqual(4);
    await bulk;

    const running = queue.run(() => sleep(300));
    const controller = new AbortController();
    let ran = false;
    const cancelled = queue.run(async () => void (ran = true), { signal: controller.signal });
    controller.abort(new Error('client gone'));
    await expect(cancelled).rejects.toThrow('client gone');
    await running;
    expect(ran).toBe(false);
  }, 30_000);
});

describe('index writer admission', () => {
  let embedder: Embedder;
  let store: PassageStore;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'writer-admission-'));
  beforeAll(async () => {
    embedder = await Embedder.load(BERT_TINY, { modelsDir: FIXTURES_DIR, allowRemote: false, quantized: false, batchSize: 16 });
    store = await openTestStore(path.join(dir, 'writes'), { embedModel: embedder.modelId, dim: embedder.dim });
  });
  afterAll(async () => {
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const doc = (id: string): SourceDocument => ({
    id,
    title: 'Note',
    text: `Notes about ${id}: lighthouses, harbours and tides.`,
    metadata: {},
  });
  /** Documents streamed with a pause before the last one. */
  async function* slowly(ids: string[], pauseMs: number): AsyncGenerator<SourceDocument> {
    for (const [i, id] of ids.entries()) {
      if (i === ids.length - 1) await sleep(pauseMs);
      yield doc(id);
    }
  }

  it('advises waiting for the running write as long as it has run, times the writes queued behind it', async () => {
    const writer = new IndexWriter(store, embedder, {
      bulk: writeSettings(),
      embedBatchSize: DEFAULTS.documents.embedBatchSize,
      maxQueued: 2,
      checkpointEveryPassages: DEFAULTS.documents.checkpointEveryPassages,
      checkpointIdleMs: DEFAULTS.documents.checkpointIdleMs,
    });
    try {
      // A bulk run whose documents arrive slowly (a large folder on a slow disk, a streamed corpus): it has been
      // running for over 2 s, and no write has completed yet to measure.
      const bulk = writer.ingestDocuments(slowly(['bulk-0', 'bulk-1'], 2500), { progress: false });
      await sleep(100);
      const queued = [
        writer.upsert([{ id: 'a', text: 'A note about anchors.' }]),
        writer.upsert([{ id: 'b', text: 'A note about buoys.' }]),
      ];
      await sleep(2000);
      expect(writer.depth).toBe(3);
      const refused = await writer.upsert([{ id: 'c', text: 'A note about cables.' }]).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(WriteQueueFullError);
      // The running write has taken over 2 s, so each of the two queued ones is expected to take as long.
      expect((refused as WriteQueueFullError).retryAfterSeconds).toBeGreaterThanOrEqual(4);
      // A bulk run is admitted beyond the bound; requests still are not.
      const extraBulk = writer.ingestDocuments([doc('bulk-2')], { progress: false });
      await expect(writer.upsert([{ id: 'd', text: 'A note about docks.' }])).rejects.toBeInstanceOf(WriteQueueFullError);
      expect((await bulk).added).toBe(2);
      expect((await Promise.all(queued)).flat().map((s) => s.status)).toEqual(['added', 'added']);
      expect((await extraBulk).added).toBe(1);

      // A request cancelled while it waits behind another write is refused as cancelled, and changes nothing.
      const running = writer.ingestDocuments(slowly(['bulk-3'], 500), { progress: false });
      const controller = new AbortController();
      const cancelled = writer.upsert([{ id: 'e', text: 'A note about estuaries.' }], controller.signal);
      controller.abort(new Error('client gone'));
      await expect(cancelled).rejects.toBeInstanceOf(WriteCancelledError);
      await running;

      const states = await store.documentStates(['a', 'b', 'c', 'd', 'e', 'bulk-2', 'bulk-3']);
      expect([...states.keys()].sort()).toEqual(['a', 'b', 'bulk-2', 'bulk-3']);
    } finally {
      await writer.drain();
      writer.close();
    }
  }, 60_000);
});
