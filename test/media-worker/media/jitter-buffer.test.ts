import { describe, expect, it } from 'vitest';
import { JitterBuffer } from '#worker/media/jitter-buffer.ts';

const payload = (seq: number) => new Uint8Array([seq & 0xff, (seq >> 8) & 0xff]);

/**
 * A playout loop like the bridge's: one tick per 20 ms frame, `settle` then
 * `pop`. Returns what each tick played and the depth before the pop.
 */
function tick(jb: JitterBuffer, target: number, played: number[]): { result: string; depth: number } {
  jb.settle(target);
  const depth = jb.depth;
  const result = jb.pop();
  if (result === 'packet') played.push((jb.payload[0] as number) | ((jb.payload[1] as number) << 8));
  return { result, depth };
}

describe('Class: JitterBuffer', () => {
  it('returns to its target depth within 2 s after a burst and a stall, playing in order without holes', () => {
    const jb = new JitterBuffer(32);
    const played: number[] = [];
    let seq = 65_500; // crosses the 16-bit wrap
    const send = () => {
      jb.push(seq, seq * 160, payload(seq));
      seq = (seq + 1) & 0xffff;
    };
    // Steady state: one packet arrives before each tick.
    for (let t = 0; t < 50; t++) {
      send();
      expect(tick(jb, 1, played).depth).toBe(1);
    }
    // Disturbance: the PBX stalls for 140 ms (7 ticks underrun), then flushes
    // the 7 frames plus 3 more early (a fast clock), i.e. 10 packets at once.
    for (let t = 0; t < 7; t++) expect(tick(jb, 1, played).result).toBe('empty');
    for (let i = 0; i < 10; i++) send();
    const depths: number[] = [];
    for (let t = 0; t < 150; t++) {
      send();
      depths.push(tick(jb, 1, played).depth);
    }
    // Before: 11 packets waiting (220 ms of added delay).
    expect(depths[0]).toBe(11);
    // Converged within 100 ticks (2 s) and stays there.
    const settledAt = depths.findIndex((_d, i) => depths.slice(i).every((x) => x === 1));
    expect(settledAt).toBeGreaterThan(0);
    expect(settledAt).toBeLessThanOrEqual(100);
    // Continuity: strictly increasing (mod 2^16), never a hole reported.
    for (let i = 1; i < played.length; i++)
      expect(((played[i] as number) - (played[i - 1] as number)) & 0xffff).toBeGreaterThan(0);
    const stats = jb.stats();
    expect(stats.missing).toBe(0);
    expect(stats.trimmed).toBe(10);
  });

  it('leaves a jittery stream alone: a depth that dips to the target is not trimmed', () => {
    const jb = new JitterBuffer(32);
    const played: number[] = [];
    let seq = 0;
    // Packets arrive in pairs every other tick (40 ms jitter); depth 2 then 1.
    for (let t = 0; t < 500; t++) {
      if (t % 2 === 0) {
        jb.push(seq, seq * 160, payload(seq));
        jb.push(seq + 1, (seq + 1) * 160, payload(seq + 1));
        seq += 2;
      }
      tick(jb, 1, played);
    }
    expect(jb.stats().trimmed).toBe(0);
    expect(played).toHaveLength(500);
  });

  it('skip(): drops what skipped ticks would have played, keeping the target depth', () => {
    const jb = new JitterBuffer(32);
    for (let s = 0; s < 8; s++) jb.push(s, s * 160, payload(s));
    expect(jb.skip(5, 1)).toBe(5);
    expect(jb.depth).toBe(3);
    expect(jb.skip(5, 1)).toBe(2);
    expect(jb.depth).toBe(1);
    expect(jb.pop()).toBe('packet');
    expect(jb.payload[0]).toBe(7);
    expect(jb.skip(3, 1)).toBe(0);
  });
});
