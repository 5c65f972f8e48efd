/**
 * Resolves after `ms`, or rejects with `signal.reason` (not a generic
 * AbortError, unlike `node:timers/promises`) as soon as `signal` aborts; clears
 * its timer and listener either way. The one signal-aware sleep: use it
 * wherever a wait documents "rejects with `signal.reason`".
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
