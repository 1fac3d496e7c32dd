import { afterEach, describe, expect, it } from 'vitest';
import { FrameClock } from '#worker/media/frame-clock.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const clocks: FrameClock[] = [];
afterEach(() => {
  for (const c of clocks.splice(0)) c.stop();
});

function activeTimeouts(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

describe('Class: FrameClock', () => {
  it('runs the first frame at once, then one frame per 20 ms on its own phase, without drift', async () => {
    const at: number[] = [];
    const clock = new FrameClock(() => at.push(performance.now()));
    clocks.push(clock);
    const t0 = performance.now();
    clock.start();
    await sleep(1010);
    clock.stop();
    expect(at[0]! - t0).toBeLessThan(15);
    // 1 s → 51 frames (the first at 0 ms); a timer per frame would drift behind.
    expect(at.length).toBeGreaterThanOrEqual(49);
    expect(at.length).toBeLessThanOrEqual(52);
    // Each frame within a few ms of its slot (runs at most 2.5 ms early).
    for (let k = 1; k < at.length; k++) expect(at[k]! - at[0]! - k * 20).toBeGreaterThan(-4);
  });

  it('advance() moves the phase earlier: later frames keep the new phase', async () => {
    const at: number[] = [];
    const clock = new FrameClock(() => at.push(performance.now()));
    clocks.push(clock);
    clock.start();
    await sleep(210);
    const before = at.length;
    clock.advance(10);
    await sleep(400);
    clock.stop();
    const t0 = at[0]!;
    // Frame k ran at about t0 + 20k before the move, and about 10 ms earlier after it.
    const offsets = at.map((t, k) => t - t0 - 20 * k);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    // Compared with the frames before the move (timer lag under load shifts both alike).
    const shift = mean(offsets.slice(before + 2)) - mean(offsets.slice(1, before));
    expect(shift).toBeGreaterThan(-14);
    expect(shift).toBeLessThan(-6);
    expect(at.length - before).toBeGreaterThanOrEqual(19); // 400 ms + one slot gained
  });

  it('shares one timer between many clocks and releases it when the last one stops', async () => {
    const before = activeTimeouts();
    const counts = new Array(100).fill(0) as number[];
    for (let i = 0; i < 100; i++) {
      const c = new FrameClock(() => counts[i]!++);
      clocks.push(c);
      c.start();
    }
    await sleep(30);
    // The first frames' one-off kicks have run: one shared timer remains.
    expect(activeTimeouts() - before).toBeLessThanOrEqual(2);
    await sleep(200);
    for (const c of clocks) c.stop();
    expect(Math.min(...counts)).toBeGreaterThanOrEqual(10);
    expect(Math.max(...counts)).toBeLessThanOrEqual(14);
    expect(activeTimeouts()).toBeLessThanOrEqual(before);
  });

  it('skips frames after a stall longer than maxCatchUp and reports how many', async () => {
    const skips: number[] = [];
    const clock = new FrameClock((s) => skips.push(s));
    clocks.push(clock);
    clock.start();
    await sleep(50);
    const end = performance.now() + 200;
    while (performance.now() < end) {
      // stall the event loop for 10 frames
    }
    await sleep(50);
    clock.stop();
    const skipped = skips.filter((s) => s > 0);
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toBeGreaterThanOrEqual(8);
  });
});
