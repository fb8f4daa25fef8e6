import PQueue from 'p-queue';
import { DomainError, type ErrorKind } from '../common/errors.js';

/** A task refused at admission because the queue is full; none of it ran. Retry after `retryAfterSeconds`. */
export class QueueFullError extends DomainError {
  override name = 'QueueFullError';
  readonly kind: ErrorKind = 'busy';
  readonly code: string = 'queue_full';
  constructor(
    override readonly retryAfterSeconds: number,
    message = 'the queue is full',
  ) {
    super(message);
  }
}

export interface AdmissionOptions {
  /** A task whose signal aborts while it waits is not started: run() rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Default true: refused when `maxQueued` tasks already wait behind busy slots. Unbounded tasks (bulk runs, internal
   * upkeep) are always admitted, and count in the backlog that later refusals advise waiting for.
   */
  bounded?: boolean;
}

/** Longest wait Retry-After will advise; beyond it an estimate says little except "much later". */
const MAX_RETRY_AFTER_S = 300;
/** Weight of the newest task in the running mean: recent enough to follow load, smooth enough to ignore one outlier. */
const MEAN_WEIGHT = 0.3;

/**
 * Bounded admission: at most `concurrency` tasks run and at most `maxQueued` wait. Beyond that a task is refused at
 * once rather than let latency grow without bound, and the refusal says when the backlog should have drained, from
 * measured task times. Answer generation (the API) and each collection's writes (the index writer) go through one.
 */
export class AdmissionQueue {
  private readonly queue: PQueue;
  /** Running mean of completed task times; undefined until one has completed. */
  private meanTaskMs: number | undefined;
  /** Start times of the tasks running now. */
  private readonly running = new Set<{ started: number }>();

  constructor(
    readonly concurrency: number,
    readonly maxQueued: number,
  ) {
    this.queue = new PQueue({ concurrency });
  }

  /** Tasks waiting plus tasks running. */
  get depth(): number {
    return this.queue.size + this.queue.pending;
  }

  /**
   * Seconds until the work ahead of a new task is done: what the running tasks still need plus every queued task,
   * spread over the concurrent slots. A task takes the measured mean, or at least as long as the one running longest:
   * before any task has completed that is the only measurement there is, and under a sudden load it is the first sign
   * that the mean is too low.
   */
  retryAfterSeconds(now = performance.now()): number {
    const elapsed = [...this.running].map((r) => now - r.started);
    const serviceMs = Math.max(this.meanTaskMs ?? 0, ...elapsed, 0);
    const runningLeftMs = elapsed.reduce((sum, e) => sum + Math.max(serviceMs - e, 0), 0);
    const drainMs = (runningLeftMs + this.queue.size * serviceMs) / this.concurrency;
    return Math.min(MAX_RETRY_AFTER_S, Math.max(1, Math.ceil(drainMs / 1000)));
  }

  /** Runs `task` in its turn; throws QueueFullError at once when a bounded task finds the queue full. */
  async run<T>(task: () => Promise<T>, options: AdmissionOptions = {}): Promise<T> {
    const { signal, bounded = true } = options;
    if (bounded && this.queue.pending >= this.concurrency && this.queue.size >= this.maxQueued) {
      throw new QueueFullError(this.retryAfterSeconds());
    }
    return this.queue.add(
      async () => {
        // A task cancelled while it waited costs nothing, and does not count as a measured (instant) task.
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

  /** Resolves when no task waits or runs. */
  onIdle(): Promise<void> {
    return this.queue.onIdle();
  }
}
