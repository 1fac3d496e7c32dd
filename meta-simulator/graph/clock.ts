/**
 * Injectable time source for the simulator's timers (unanswered, ring, media watchdog, BIC connect delay) and
 * for the permission engine's rolling windows.
 *
 * @module
 */

/** Opaque handle returned by {@link SimClock.setTimeout}. */
export type SimTimer = { readonly __simTimer: true } | ReturnType<typeof setTimeout>;

/** Time + timer source. `now()` is epoch milliseconds. */
export interface SimClock {
  /** Current time, epoch milliseconds. */
  now(): number;
  /** Schedule `fn` after `ms` milliseconds. */
  setTimeout(fn: () => void, ms: number): SimTimer;
  /** Cancel a timer (no-op for unknown/fired timers). */
  clearTimeout(timer: SimTimer): void;
}

/** The wall clock with node timers (timers are `unref`'d so a stray one never keeps a process alive). */
export const realClock: SimClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (timer) => clearTimeout(timer as ReturnType<typeof setTimeout>),
};

interface ManualTimer {
  readonly __simTimer: true;
  at: number;
  seq: number;
  fn: () => void;
}

/**
 * A clock that only moves when told to: `advance(ms)` runs due timers in time order. Use it in tests that cross
 * 24 h / 7 d permission windows or want deterministic timer firing.
 */
export class ManualClock implements SimClock {
  #now: number;
  #seq = 0;
  #timers = new Set<ManualTimer>();

  /** Start at `startMs` (epoch ms; default 2026-01-01T00:00:00Z). */
  constructor(startMs = Date.UTC(2026, 0, 1)) {
    this.#now = startMs;
  }

  /** Current simulated time (epoch ms). */
  now(): number {
    return this.#now;
  }

  /** Schedule on the simulated timeline. */
  setTimeout(fn: () => void, ms: number): SimTimer {
    const t: ManualTimer = { __simTimer: true, at: this.#now + Math.max(0, ms), seq: this.#seq++, fn };
    this.#timers.add(t);
    return t;
  }

  /** Cancel a simulated timer. */
  clearTimeout(timer: SimTimer): void {
    this.#timers.delete(timer as ManualTimer);
  }

  /** Number of pending timers. */
  get pendingTimers(): number {
    return this.#timers.size;
  }

  /** Move time forward by `ms`, firing every timer that falls due (including ones scheduled while advancing). */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      let next: ManualTimer | undefined;
      for (const t of this.#timers) {
        if (t.at <= target && (!next || t.at < next.at || (t.at === next.at && t.seq < next.seq))) next = t;
      }
      if (!next) break;
      this.#timers.delete(next);
      this.#now = Math.max(this.#now, next.at);
      next.fn();
    }
    this.#now = target;
  }

  /** Jump to an absolute time (never backwards), firing due timers. */
  set(ms: number): void {
    if (ms > this.#now) this.advance(ms - this.#now);
  }
}
