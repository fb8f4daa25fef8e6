/**
 * A value made on first use and kept: later calls get the same value (or the same pending promise). A failed load —
 * `load` throwing, or the promise it returns rejecting — is not remembered, so the next call loads again (model files
 * added later work without a restart).
 */
export class LazySlot<T> {
  private held: { value: T } | undefined;

  constructor(private readonly load: () => T) {}

  get(): T {
    if (this.held) return this.held.value;
    const value = this.load();
    const held = { value };
    this.held = held;
    if (value instanceof Promise) {
      value.catch(() => {
        if (this.held === held) this.held = undefined;
      });
    }
    return value;
  }

  /** The value if it was made (or is being made), without making it. */
  get current(): T | undefined {
    return this.held?.value;
  }

  /** Fills the slot with a value made elsewhere (e.g. loaded up front together with another model). */
  set(value: T): void {
    this.held = { value };
  }
}
