import PQueue from 'p-queue';

export class QueueFullError extends Error {
  override name = 'QueueFullError';
  constructor(readonly retryAfterSeconds: number) {
    super('the answer queue is full');
  }
}

/**
 * Bounded admission for answer generation: at most `concurrency` decodings run and at most `maxQueued` wait.
 * Beyond that we refuse at once (503) rather than let latency grow without bound.
 */
export class GenerationQueue {
  private readonly queue: PQueue;
  private meanTaskMs = 1000;

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

  retryAfterSeconds(): number {
    const waves = Math.ceil((this.queue.size + 1) / this.concurrency);
    return Math.min(60, Math.max(1, Math.ceil((waves * this.meanTaskMs) / 1000)));
  }

  async run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.queue.pending >= this.concurrency && this.queue.size >= this.maxQueued) {
      throw new QueueFullError(this.retryAfterSeconds());
    }
    return this.queue.add(
      async () => {
        // A client that left while queued must not cost a decoding.
        signal?.throwIfAborted();
        const started = performance.now();
        try {
          return await task();
        } finally {
          // Exponential moving average keeps Retry-After honest as load and answer lengths change.
          this.meanTaskMs = 0.8 * this.meanTaskMs + 0.2 * (performance.now() - started);
        }
      },
      { throwOnTimeout: true },
    ) as Promise<T>;
  }

  onIdle(): Promise<void> {
    return this.queue.onIdle();
  }
}
