/**
 * A drift-free 20 ms frame clock for pacing media.
 *
 * `setInterval(…, 20)` drifts and bunches under load; this clock schedules
 * each frame against an absolute timeline (its {@link Clock}'s `now()`, the
 * monotonic real clock by default), runs every
 * frame that is due, and skips ahead instead of bursting after a long stall,
 * so a receiver's jitter buffer sees at most a gap, never a flood.
 *
 * All clocks of a process with the same period share one timer (a
 * {@link Ticker} waking every period / 4, 5 ms by default), instead of a
 * timer per clock per frame: a media worker runs two clocks per call (the
 * WhatsApp leg's silence, the transcoding playout), and hundreds of timer
 * wake-ups every 20 ms cost event-loop time and garbage. Each clock keeps its
 * own phase (its frames are due every period from its `start()`); the shared
 * wake-up runs a frame up to period / 8 (2.5 ms) before it is due. Clocks
 * share a ticker only when they share a {@link Clock} too (tests give each
 * their own `ManualClock`).
 *
 * @module
 */
import { type Clock, type ClockTimer, realClock } from '#core/clock.ts';

/** Options for {@link FrameClock}. */
export interface FrameClockOptions {
  /** Frame period in ms. @default 20 */
  periodMs?: number;
  /** Frames to catch up at most after a stall; older ones are skipped. @default 5 */
  maxCatchUp?: number;
  /** Time source and timers. @default realClock */
  clock?: Clock;
}

/** Wake-ups of the shared timer per frame period (the phase resolution of a clock). */
const DIVISIONS = 4;

/** One timer for every running clock of a period. */
class Ticker {
  private readonly clocks = new Set<FrameClock>();
  private readonly stepMs: number;
  private readonly time: Clock;
  private timer: ClockTimer | undefined;
  private origin = 0;

  constructor(periodMs: number, time: Clock) {
    this.stepMs = periodMs / DIVISIONS;
    this.time = time;
  }

  add(clock: FrameClock): void {
    this.clocks.add(clock);
    if (this.timer) return;
    this.origin = this.time.now();
    this.schedule(this.origin);
  }

  delete(clock: FrameClock): void {
    this.clocks.delete(clock);
    if (this.clocks.size === 0 && this.timer) {
      this.time.clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private schedule(now: number): void {
    const next = this.origin + (Math.floor((now - this.origin) / this.stepMs) + 1) * this.stepMs;
    this.timer = this.time.setTimeout(this.run, next - now);
  }

  private readonly run = (): void => {
    this.timer = undefined;
    const now = this.time.now();
    try {
      // Clocks started or stopped by a frame are handled by Set iteration order.
      for (const clock of this.clocks) clock.tickAt(now);
    } finally {
      if (this.clocks.size > 0 && !this.timer) this.schedule(this.time.now());
    }
  };
}

/** One ticker per time source and period. */
const tickers = new WeakMap<Clock, Map<number, Ticker>>();

function tickerOf(time: Clock, periodMs: number): Ticker {
  let byPeriod = tickers.get(time);
  if (!byPeriod) {
    byPeriod = new Map();
    tickers.set(time, byPeriod);
  }
  let ticker = byPeriod.get(periodMs);
  if (!ticker) {
    ticker = new Ticker(periodMs, time);
    byPeriod.set(periodMs, ticker);
  }
  return ticker;
}

/**
 * Calls `onFrame(skipped)` once per period; `skipped` is the number of frames
 * dropped just before this one because the event loop stalled.
 */
export class FrameClock {
  private readonly periodMs: number;
  private readonly maxCatchUp: number;
  private readonly earlyMs: number;
  private readonly onFrame: (skipped: number) => void;
  private readonly ticker: Ticker;
  private readonly time: Clock;
  private active = false;
  private kick: ClockTimer | undefined;
  private startedAt = 0;
  private framesDone = 0;

  /**
   * @param onFrame - called for every due frame; must not throw
   * @param options - see {@link FrameClockOptions}
   */
  constructor(onFrame: (skipped: number) => void, options: FrameClockOptions = {}) {
    this.onFrame = onFrame;
    this.periodMs = options.periodMs ?? 20;
    this.maxCatchUp = options.maxCatchUp ?? 5;
    this.earlyMs = this.periodMs / DIVISIONS / 2;
    this.time = options.clock ?? realClock;
    this.ticker = tickerOf(this.time, this.periodMs);
  }

  /** True while started. */
  get running(): boolean {
    return this.active;
  }

  /** Start; the first frame runs immediately (on the next turn of the event loop). No-op when running. */
  start(): void {
    if (this.active) return;
    this.active = true;
    this.startedAt = this.time.now();
    this.framesDone = 0;
    this.ticker.add(this);
    this.kick = this.time.setTimeout(() => {
      this.kick = undefined;
      this.tickAt(this.time.now());
    }, 0);
  }

  /**
   * Move the phase earlier by `ms` (less than a period): the next frame
   * comes that much sooner, and every later one keeps the new phase.
   */
  advance(ms: number): void {
    if (!this.active || !(ms > 0)) return;
    this.startedAt -= Math.min(ms, this.periodMs);
  }

  /** Stop; no frame runs after this returns. */
  stop(): void {
    if (!this.active) return;
    this.active = false;
    this.time.clearTimeout(this.kick);
    this.kick = undefined;
    this.ticker.delete(this);
  }

  /** Run the frames due at `now` (called by the shared ticker). @internal */
  tickAt(now: number): void {
    if (!this.active) return;
    const due = Math.floor((now + this.earlyMs - this.startedAt) / this.periodMs) + 1;
    let behind = due - this.framesDone;
    if (behind <= 0) return;
    let skipped = 0;
    if (behind > this.maxCatchUp) {
      skipped = behind - 1;
      this.framesDone += skipped;
      behind = 1;
    }
    for (let i = 0; i < behind && this.active; i++) {
      this.framesDone++;
      this.onFrame(i === 0 ? skipped : 0);
    }
  }
}
