/**
 * A fixed set of slots (the engine's parallel sequences) handed out first
 * come, first served. `acquire` waits while all are busy; an aborted waiter
 * leaves the queue at once and never receives a slot.
 */
export class SlotPool<T> {
  private readonly free: T[];
  private readonly waiters: Array<{ resolve: (slot: T) => void; pick: (free: readonly T[]) => number }> = [];

  constructor(slots: readonly T[]) {
    this.free = [...slots];
  }

  get idle(): number {
    return this.free.length;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * Resolves with a slot once one is free, rejecting with `signal.reason` if
   * the signal aborts first. `pick` chooses among free slots (index into
   * `free`), so a caller can prefer the slot whose cache suits it best; -1
   * takes none of them and waits on (a request for one particular slot).
   */
  acquire(signal: AbortSignal, pick: (free: readonly T[]) => number = () => 0): Promise<T> {
    signal.throwIfAborted();
    if (this.free.length > 0 && this.waiters.length === 0 && pick(this.free) >= 0) return Promise.resolve(this.take(pick));
    return new Promise<T>((resolve, reject) => {
      const waiter = {
        resolve: (slot: T) => {
          signal.removeEventListener("abort", onAbort);
          resolve(slot);
        },
        pick,
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Returns a slot; the longest waiter that takes one of the free slots gets it. */
  release(slot: T): void {
    this.free.push(slot);
    for (let i = 0; i < this.waiters.length && this.free.length > 0; ) {
      const waiter = this.waiters[i]!;
      if (waiter.pick(this.free) < 0) {
        i++;
        continue;
      }
      this.waiters.splice(i, 1);
      waiter.resolve(this.take(waiter.pick));
    }
  }

  private take(pick: (free: readonly T[]) => number): T {
    const i = Math.min(Math.max(0, pick(this.free)), this.free.length - 1);
    return this.free.splice(i, 1)[0]!;
  }
}
