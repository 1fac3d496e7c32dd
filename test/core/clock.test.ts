import { describe, expect, it } from 'vitest';
import { ManualClock, realClock } from '#core/clock.ts';

describe('Class: ManualClock', () => {
  it('fires timers in due order as time advances, with now() at each due time', () => {
    const clock = new ManualClock(1000);
    const fired: Array<[string, number]> = [];
    clock.setTimeout(() => fired.push(['b', clock.now()]), 30);
    clock.setTimeout(() => fired.push(['a', clock.now()]), 10);
    clock.setTimeout(() => fired.push(['a2', clock.now()]), 10);
    clock.advance(20);
    expect(fired).toEqual([
      ['a', 1010],
      ['a2', 1010],
    ]);
    expect(clock.now()).toBe(1020);
    clock.advance(10);
    expect(fired.at(-1)).toEqual(['b', 1030]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('runs timers set while advancing (a self-rescheduling 20 ms tick fires 5 times in 100 ms)', () => {
    const clock = new ManualClock();
    const ticks: number[] = [];
    const tick = () => {
      ticks.push(clock.now());
      clock.setTimeout(tick, 20);
    };
    clock.setTimeout(tick, 20);
    clock.advance(100);
    expect(ticks).toEqual([20, 40, 60, 80, 100]);
  });

  it('forgets cleared timers', () => {
    const clock = new ManualClock();
    let fired = false;
    const t = clock.setTimeout(() => {
      fired = true;
    }, 5);
    clock.clearTimeout(t);
    clock.clearTimeout(undefined);
    clock.advance(10);
    expect(fired).toBe(false);
  });
});

describe('Object: realClock', () => {
  it('is monotonic and its timers fire', async () => {
    const a = realClock.now();
    await new Promise<void>((resolve) => realClock.setTimeout(resolve, 1));
    expect(realClock.now()).toBeGreaterThanOrEqual(a);
  });
});
