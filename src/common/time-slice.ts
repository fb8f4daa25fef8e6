import { yieldToEventLoop } from './yield.js';

/**
 * Longest synchronous stretch of cooperative work before it returns to the event loop. 10 ms keeps searches answered
 * during a multi-megabyte write or chunking run (servers must never stall for more than about 50 ms); each turn costs a
 * setImmediate round trip (tens of microseconds), so the work barely slows.
 */
export const SLICE_MS = 10;

/**
 * Cooperative scheduling for long synchronous work (SQL statements, graph insertions, chunking, hashing): the work
 * checks `due` between units and, once its slice of the event loop is used up, awaits `next()` so requests queued
 * meanwhile run.
 */
export class TimeSlice {
  private started = performance.now();

  constructor(private readonly budgetMs: number = SLICE_MS) {}

  get due(): boolean {
    return performance.now() - this.started >= this.budgetMs;
  }

  /** One macrotask turn: timers, I/O and other requests run before the work goes on. */
  async next(): Promise<void> {
    await yieldToEventLoop();
    this.started = performance.now();
  }
}
