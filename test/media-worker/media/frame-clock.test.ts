/**
 * FrameClock on a ManualClock: the frame times are exact. One wiring check on real time remains
 * (the shared timer is released), with a wide bound.
 */
import { describe, expect, it } from 'vitest';
import { type Clock, type ClockTimer, ManualClock } from '#core/clock.ts';
import { FrameClock } from '#worker/media/frame-clock.ts';
import { until } from '../../helpers/async.ts';

function activeTimeouts(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

describe('Class: FrameClock', () => {
  it('runs the first frame at once, then one frame per 20 ms, without drift', async () => {
    const time = new ManualClock(1000);
    const at: number[] = [];
    const clock = new FrameClock(() => at.push(time.now()), { clock: time });
    clock.start();
    await time.run(1000, 1);
    clock.stop();
    expect(at).toEqual(Array.from({ length: 51 }, (_, k) => 1000 + 20 * k));
    expect(time.pendingTimers).toBe(0);
  });

  it('keeps each clock on its own phase; the shared 5 ms wake-up runs a frame up to 2.5 ms early', () => {
    const time = new ManualClock();
    const a: number[] = [];
    const b: number[] = [];
    const first = new FrameClock(() => a.push(time.now()), { clock: time });
    const second = new FrameClock(() => b.push(time.now()), { clock: time });
    first.start();
    time.advance(7);
    second.start();
    time.advance(93);
    first.stop();
    second.stop();
    expect(a).toEqual([0, 20, 40, 60, 80, 100]);
    expect(b).toEqual([7, 25, 45, 65, 85]); // due at 27, 47, …: run by the wake-ups at 25, 45, …
  });

  it('advance() moves the phase earlier: the next frame comes sooner and later ones keep the new phase', () => {
    const time = new ManualClock();
    const at: number[] = [];
    const clock = new FrameClock(() => at.push(time.now()), { clock: time });
    clock.start();
    time.advance(45); // frames at 0, 20, 40
    clock.advance(10);
    time.advance(55); // to 100
    clock.stop();
    expect(at).toEqual([0, 20, 40, 50, 70, 90]);
  });

  it('shares one timer between the clocks of a time source and frees it when the last one stops', () => {
    const time = new ManualClock();
    const counts = new Array(100).fill(0) as number[];
    const clocks = counts.map((_, i) => new FrameClock(() => counts[i]!++, { clock: time }));
    for (const c of clocks) c.start();
    time.advance(1); // the first frames' one-off kicks have run
    expect(time.pendingTimers).toBe(1);
    time.advance(199);
    expect(counts.every((n) => n === 11)).toBe(true); // 0, 20, …, 200
    for (const c of clocks) c.stop();
    expect(time.pendingTimers).toBe(0);
  });

  it('skips frames after a stall longer than maxCatchUp and reports how many; catches up shorter ones', () => {
    const manual = new ManualClock();
    const time = new StallableClock(manual);
    const frames: { at: number; skipped: number }[] = [];
    const clock = new FrameClock((skipped) => frames.push({ at: time.now(), skipped }), { clock: time });
    clock.start();
    manual.advance(40); // frames at 0, 20, 40
    time.stall(200);
    manual.advance(5); // the first wake-up after the stall, at 245: frames 3…12 were due
    expect(frames.slice(3)).toEqual([{ at: 245, skipped: 9 }]);
    manual.advance(15); // back on the 20 ms grid
    expect(frames.at(-1)).toEqual({ at: 260, skipped: 0 });
    // A 60 ms stall (3 frames, within maxCatchUp 5) is caught up at once.
    time.stall(60);
    manual.advance(5);
    expect(frames.slice(5)).toEqual([
      { at: 325, skipped: 0 },
      { at: 325, skipped: 0 },
      { at: 325, skipped: 0 },
    ]);
    clock.stop();
  });

  it('on the real clock, releases its timers when stopped', async () => {
    const before = activeTimeouts();
    const clock = new FrameClock(() => undefined);
    clock.start();
    await until(() => activeTimeouts() > before, 1000);
    clock.stop();
    expect(activeTimeouts()).toBeLessThanOrEqual(before);
  });
});

/**
 * A blocked event loop on a ManualClock: after {@link stall}, timers still fire at their due
 * time on the manual clock, but `now()` reads that much later, as a late timer sees it.
 */
class StallableClock implements Clock {
  readonly #manual: ManualClock;
  #lag = 0;

  constructor(manual: ManualClock) {
    this.#manual = manual;
  }

  now(): number {
    return this.#manual.now() + this.#lag;
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    return this.#manual.setTimeout(fn, ms);
  }

  clearTimeout(timer: ClockTimer | undefined): void {
    this.#manual.clearTimeout(timer);
  }

  /** The loop is blocked for `ms`: the next timer runs that much late. */
  stall(ms: number): void {
    this.#lag += ms;
  }
}
