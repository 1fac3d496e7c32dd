/**
 * Meta ends an unaccepted user-initiated call "about 30 to 60 seconds after the Call Connect webhook" (M-REF26):
 * the agent's ring timeout is what is left of that window, counted from the connect, not the configured 45 s
 * counted from the INVITE.
 */
import { describe, expect, it } from 'vitest';
import { META_ANSWER_WINDOW_MS, ringTimeoutWithinMetaWindow } from '#core/calls/meta-window.ts';

const connectAt = 1_764_000_000_000;

describe('the agent’s ring timeout within Meta’s answer window', () => {
  it('is cut to what is left of 30 s from the connect, less 2 s for the accept round trip', () => {
    // The worker rings the agent 1.5 s after Meta's connect; 45 s configured.
    expect(ringTimeoutWithinMetaWindow({ configuredMs: 45_000, connectAt, now: connectAt + 1_500 })).toBe(26_500);
  });

  it('keeps a shorter configured timeout', () => {
    expect(ringTimeoutWithinMetaWindow({ configuredMs: 20_000, connectAt, now: connectAt + 1_500 })).toBe(20_000);
  });

  it('is zero once the window is spent (a job picked up late must not ring anyone)', () => {
    expect(ringTimeoutWithinMetaWindow({ configuredMs: 45_000, connectAt, now: connectAt + 29_000 })).toBe(0);
    expect(ringTimeoutWithinMetaWindow({ configuredMs: 45_000, connectAt, now: connectAt + 40_000 })).toBe(0);
  });

  it('takes a longer window and another margin when a deployment has measured them', () => {
    expect(META_ANSWER_WINDOW_MS).toBe(30_000);
    expect(
      ringTimeoutWithinMetaWindow({ configuredMs: 90_000, connectAt, now: connectAt, windowMs: 60_000, marginMs: 0 }),
    ).toBe(60_000);
  });
});
