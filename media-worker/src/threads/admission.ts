/**
 * Admission per core: which media thread a new call is pinned to. Pure, so the rule is tested on
 * plain numbers.
 */

/** One media thread as admission sees it. */
export interface ThreadLoad {
  /** Calls pinned to the thread now. */
  readonly calls: number;
  /** Its share of `MAX_CALLS_PER_WORKER`: `ceil(maxCalls / threads)`. */
  readonly capacity: number;
  /** False while the thread is down (died, being restarted, or closed). */
  readonly alive: boolean;
}

/** Each thread's share of the worker's calls: the shares add up to at least `maxCalls`. */
export function threadCapacity(maxCalls: number, threads: number): number {
  return Math.ceil(maxCalls / threads);
}

/**
 * The thread a new call goes to: the live thread with the fewest calls that is below its
 * capacity (the lowest index on a tie); `undefined` when every live thread is full or none is live.
 */
export function pickThread(threads: readonly ThreadLoad[]): number | undefined {
  let best: number | undefined;
  threads.forEach((t, i) => {
    if (!t.alive || t.calls >= t.capacity) return;
    if (best === undefined || t.calls < threads[best]!.calls) best = i;
  });
  return best;
}

/** Calls the live threads can still take (the worker's admission adds this to its own count). */
export function roomLeft(threads: readonly ThreadLoad[]): number {
  return threads.reduce((room, t) => room + (t.alive ? Math.max(0, t.capacity - t.calls) : 0), 0);
}
