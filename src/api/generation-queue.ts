import PQueue from 'p-queue';

export class QueueFullError extends Error {
  override name = 'QueueFullError';
  constructor(readonly retryAfterSeconds: number) {
    super('the answer queue is full');
  }
}

/** Longest wait Retry-After will advise; beyond it an estimate says little except "much later". */
const MAX_RETRY_AFTER_S = 300;
/** Weight of the newest answer in the running mean: recent enough to follow load, smooth enough to ignore one outlier. */
const MEAN_WEIGHT = 0.3;

/**
 * Bounded admission for answer generation: at most `concurrency` decodings run and at most `maxQueued` wait.
 * Beyond that we refuse at once (503) rather than let latency grow without bound, and say when the backlog should
 * have drained, from measured answer times.
 */
export class GenerationQueue {
  private readonly queue: PQueue;
  /** Running mean of completed answer times; undefined until one has completed. */
  private meanTaskMs: number | undefined;
  /** Start times of the answers being generated now. */
  private readonly running = new Set<{ started: number }>();

  constructor(
    readonly concurrency: number,
    readonly maxQueued: number,
  ) {
    this.queue = new PQueue({ concurrency });
  }

  /** Jobs waiting plus jobs running. */
  get depth(): number {
    return this.queue.size + this.queue.pending;
  }

  /**
   * Seconds until the work ahead of a new request is done: what the running answers still need plus every queued
   * answer, spread over the concurrent slots. An answer takes the measured mean, or at least as long as the one
   * running longest: before any answer has completed that is the only measurement there is, and under a sudden load
   * it is the first sign that the mean is too low.
   */
  retryAfterSeconds(now = performance.now()): number {
    const elapsed = [...this.running].map((r) => now - r.started);
    const serviceMs = Math.max(this.meanTaskMs ?? 0, ...elapsed, 0);
    const runningLeftMs = elapsed.reduce((sum, e) => sum + Math.max(serviceMs - e, 0), 0);
    const drainMs = (runningLeftMs + this.queue.size * serviceMs) / this.concurrency;
    return Math.min(MAX_RETRY_AFTER_S, Math.max(1, Math.ceil(drainMs / 1000)));
  }

  async run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.queue.pending >= this.concurrency && this.queue.size >= this.maxQueued) {
      throw new QueueFullError(this.retryAfterSeconds());
    }
    return this.queue.add(
      async () => {
        // A client that left while queued must not cost a decoding.
        signal?.throwIfAborted();
        const entry = { started: performance.now() };
        this.running.add(entry);
        try {
          return await task();
        } finally {
          this.running.delete(entry);
          const ms = performance.now() - entry.started;
          this.meanTaskMs = this.meanTaskMs === undefined ? ms : (1 - MEAN_WEIGHT) * this.meanTaskMs + MEAN_WEIGHT * ms;
        }
      },
      { throwOnTimeout: true },
    ) as Promise<T>;
  }

  onIdle(): Promise<void> {
    return this.queue.onIdle();
  }
}
