import type { RequestHandler } from 'express';

/**
 * Requests still running, and the abort controllers of the long ones (answers, writes), so a shutdown can first wait
 * for them and then cancel what is left.
 */
export class InFlightRequests {
  private active = 0;
  private readonly controllers = new Set<AbortController>();
  private waiters: Array<() => void> = [];

  get count(): number {
    return this.active;
  }

  middleware(): RequestHandler {
    return (_req, res, next) => {
      this.active++;
      let ended = false;
      // 'close' follows 'finish' and also fires when the client goes away, so each request is counted out once.
      const countOut = () => {
        if (ended) return;
        ended = true;
        this.active--;
        if (this.active === 0) this.wake();
      };
      res.on('close', countOut);
      // A stream that only waits for events the server may send (MCP's GET stream) is no work a shutdown waits for.
      res.locals.leaveInFlight = countOut;
      next();
    };
  }

  /** Makes `controller` part of a shutdown's cancellation; call the returned function when the work is over. */
  register(controller: AbortController): () => void {
    this.controllers.add(controller);
    return () => this.controllers.delete(controller);
  }

  cancelAll(reason: unknown): number {
    const n = this.controllers.size;
    for (const controller of this.controllers) controller.abort(reason);
    this.controllers.clear();
    return n;
  }

  /** Resolves once no request is running, or after `timeoutMs`; tells which. */
  idle(timeoutMs: number): Promise<boolean> {
    if (this.active === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.waiters.push(done);
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
