/**
 * One macrotask turn: timers, I/O and other requests queued meanwhile run before the caller goes on. Long synchronous
 * work (chunking, hashing, SQL writes, embedding batches) awaits it between units so a server keeps answering.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}
