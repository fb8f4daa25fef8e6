/**
 * Cooperative scheduling for long synchronous store work (SQL statements, graph insertions): the work checks `due`
 * between units and, once its slice of the event loop is used up, awaits `next()` so requests queued meanwhile run.
 */
export class TimeSlice {
  private started = performance.now();

  constructor(private readonly budgetMs: number) {}

  get due(): boolean {
    return performance.now() - this.started >= this.budgetMs;
  }

  /** One macrotask turn: timers, I/O and other requests run before the work goes on. */
  async next(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    this.started = performance.now();
  }
}
