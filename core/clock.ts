/**
 * The product's one time source. Everything that reads time or waits — the media path's frame
 * timers, pacing and silence hand-over, RTCP intervals, the control plane's `now` — takes a
 * {@link Clock}, the real one by default. Tests pass a {@link ManualClock} and move time by hand,
 * so a timing rule is asserted exactly ("after advancing 20 ms, one frame with timestamp + 960")
 * instead of measured against a loaded machine's scheduler.
 *
 * `now()` is in milliseconds on the clock's own timeline: monotonic (`performance.now()`) for
 * {@link realClock}, which is what every duration and pacing computation needs; use
 * {@link wallClock} where an epoch timestamp is stored.
 */

/** Opaque handle of a timer set on a {@link Clock}. */
export type ClockTimer = { readonly __clockTimer: true } | ReturnType<typeof setTimeout>;

/** A time source with timers. */
export interface Clock {
  /** Milliseconds on this clock's timeline (fractional for the real monotonic clock). */
  now(): number;
  /** Runs `fn` once, `ms` milliseconds from now (at the next turn when `ms <= 0`). */
  setTimeout(fn: () => void, ms: number): ClockTimer;
  /** Cancels a timer; unknown or fired timers are ignored. */
  clearTimeout(timer: ClockTimer | undefined): void;
}

/** Monotonic time (`performance.now()`) with Node's timers: the default of the media path. */
export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => {
    if (timer !== undefined) clearTimeout(timer as ReturnType<typeof setTimeout>);
  },
};

/** Epoch milliseconds (`Date.now()`) with Node's timers: for records and signatures. */
export const wallClock: Clock = { ...realClock, now: () => Date.now() };

interface ManualTimer {
  readonly __clockTimer: true;
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
}

/**
 * A clock that moves only when told: {@link ManualClock.advance} runs every timer that falls due,
 * in time order (ties in the order they were set), including timers set while advancing, with
 * `now()` equal to each timer's due time while it runs.
 */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  readonly #timers = new Set<ManualTimer>();

  /** Starts at `startMs` (default 0). */
  constructor(startMs = 0) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    const timer: ManualTimer = { __clockTimer: true, at: this.#now + Math.max(0, ms), seq: this.#seq++, fn };
    this.#timers.add(timer);
    return timer;
  }

  clearTimeout(timer: ClockTimer | undefined): void {
    if (timer !== undefined) this.#timers.delete(timer as ManualTimer);
  }

  /** Timers set and not yet fired or cleared. */
  get pendingTimers(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, firing every timer due by then. */
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

  /**
   * A blocked event loop (GC, a long synchronous task): time moves on by `ms` and no timer fires.
   * The next {@link advance} (even by 0) then runs every overdue timer late, as Node does when the
   * loop frees up: expired timers first, before any socket is read; a timer they set for 1 ms or
   * more waits for the following turn, so what a test delivers in between models the socket reads.
   */
  block(ms: number): void {
    this.#now += ms;
  }

  /** Advances in steps of `stepMs` up to `ms`, calling `between` after each step (packets in between timers). */
  async run(ms: number, stepMs: number, between?: () => void | Promise<void>): Promise<void> {
    for (let done = 0; done < ms; done += stepMs) {
      this.advance(Math.min(stepMs, ms - done));
      await between?.();
    }
  }
}
