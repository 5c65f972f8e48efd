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
   * waits for another one to be freed (a caller that needs one given slot).
   *
   * No waiter ever accepts a slot that is free (release hands it over at
   * once), so a newcomer that accepts a free slot takes it without queueing.
   */
  acquire(signal: AbortSignal, pick: (free: readonly T[]) => number = () => 0): Promise<T> {
    signal.throwIfAborted();
    if (this.free.length > 0) {
      const i = pick(this.free);
      if (i >= 0) return Promise.resolve(this.free.splice(Math.min(i, this.free.length - 1), 1)[0]!);
    }
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

  /** Returns a slot; the longest waiter that accepts one of the free slots gets it. */
  release(slot: T): void {
    this.free.push(slot);
    for (const [w, waiter] of this.waiters.entries()) {
      const i = waiter.pick(this.free);
      if (i < 0) continue;
      this.waiters.splice(w, 1);
      waiter.resolve(this.free.splice(Math.min(i, this.free.length - 1), 1)[0]!);
      return;
    }
  }
}
