/**
 * Admission per core: a new call goes to the live media thread with the fewest calls that is below
 * its share of MAX_CALLS_PER_WORKER; the worker takes no call when no live thread has room.
 */
import { describe, expect, it } from 'vitest';
import { pickThread, roomLeft, type ThreadLoad, threadCapacity } from '#worker/threads/admission.ts';

const live = (calls: number, capacity = 5): ThreadLoad => ({ calls, capacity, alive: true });
const down = (calls: number, capacity = 5): ThreadLoad => ({ calls, capacity, alive: false });

describe('each thread’s share of the worker’s calls', () => {
  it('rounds up, so the shares cover MAX_CALLS_PER_WORKER', () => {
    expect(threadCapacity(200, 2)).toBe(100);
    expect(threadCapacity(101, 2)).toBe(51);
    expect(threadCapacity(10, 4)).toBe(3);
    expect(threadCapacity(1, 2)).toBe(1);
  });
});

describe('the thread a new call is pinned to', () => {
  it('is the one with the fewest calls, the lowest index on a tie', () => {
    expect(pickThread([live(0), live(0)])).toBe(0);
    expect(pickThread([live(1), live(0)])).toBe(1);
    expect(pickThread([live(3), live(2), live(2)])).toBe(1);
  });

  it('spreads calls placed one after another evenly over the threads', () => {
    const calls = [0, 0, 0];
    for (let n = 0; n < 7; n++) calls[pickThread(calls.map((c) => live(c)))!]! += 1;
    expect(calls).toEqual([3, 2, 2]);
  });

  it('skips a thread at its share, and one that is down', () => {
    expect(pickThread([live(5), live(4)])).toBe(1);
    expect(pickThread([live(5, 5), live(6, 10)]), 'fewest calls, but at its share').toBe(1);
    expect(pickThread([down(0), live(4)])).toBe(1);
  });

  it('is none when every live thread is full or none is live', () => {
    expect(pickThread([live(5), live(5)])).toBeUndefined();
    expect(pickThread([down(0), down(0)])).toBeUndefined();
    expect(pickThread([])).toBeUndefined();
  });
});

describe('the room the worker admits against', () => {
  it('is what the live threads can still take; a thread that is down adds none', () => {
    expect(roomLeft([live(2), live(5)])).toBe(3);
    expect(roomLeft([live(2), down(0)])).toBe(3);
    expect(roomLeft([live(5), live(5)])).toBe(0);
    expect(roomLeft([live(7, 5)])).toBe(0);
  });
});
