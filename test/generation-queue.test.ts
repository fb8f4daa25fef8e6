/**
 * Retry-After on a full answer queue must come from measured answer times: the issue saw "3 s" while the backlog took
 * 44 s to drain. Tasks here are timers of known length, so the true drain time is known and measured.
 */
import { describe, expect, it } from 'vitest';
import { GenerationQueue, QueueFullError } from '../src/api/generation-queue.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Fills the queue with `n` tasks of `ms` each and returns when they have all finished. */
function fill(queue: GenerationQueue, n: number, ms: number): Promise<unknown> {
  return Promise.all(Array.from({ length: n }, () => queue.run(() => sleep(ms))));
}

async function refusal(queue: GenerationQueue): Promise<number> {
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
  const queue = new GenerationQueue(concurrency, queued);
  await queue.run(() => sleep(taskMs)); // one measured answer
  const backlog = fill(queue, concurrency + queued, taskMs);
  const refusedAt = performance.now();
  const advisedS = await refusal(queue);
  await backlog;
  return { advisedS, drainedS: (performance.now() - refusedAt) / 1000 };
}

describe('answer queue Retry-After', () => {
  it('covers the drain time when answers are slow (no early retries into a full queue)', async () => {
    const { advisedS, drainedS } = await adviceAndDrain(1, 3, 1500);
    expect(advisedS).toBeGreaterThanOrEqual(Math.floor(drainedS));
    expect(advisedS).toBeLessThanOrEqual(Math.ceil(drainedS) + 1);
  }, 30_000);

  it('is short when answers are fast (clients are not sent away for long)', async () => {
    const { advisedS, drainedS } = await adviceAndDrain(2, 8, 150);
    expect(drainedS).toBeLessThan(2);
    expect(advisedS).toBeLessThanOrEqual(Math.ceil(drainedS) + 1);
  }, 30_000);

  it('before any answer has completed, counts the running answers as taking at least as long as they have run', async () => {
    const queue = new GenerationQueue(1, 2);
    const backlog = fill(queue, 3, 2500);
    await sleep(2000);
    // One answer has run for 2 s and two wait: the backlog needs at least 2 x 2 s more.
    expect(await refusal(queue)).toBeGreaterThanOrEqual(4);
    await backlog;
  }, 30_000);
});
