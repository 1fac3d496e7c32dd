/**
 * With Meta's voicemail TIMEOUT on, the agent's ring ends before Meta diverts the caller (Corrections item 4):
 * the bridge gives up (terminate) rather than answering a call Meta has already taken to voicemail.
 */
import { describe, expect, it } from 'vitest';
import { ringTimeoutWithinMetaWindow } from '#core/calls/meta-window.ts';

const connectAt = Date.UTC(2026, 11, 3, 10);

describe('the ring cap is bounded by the voicemail timeout', () => {
  it('a 20 s voicemail timeout leaves 20 s − 2 s accept margin − time already spent', () => {
    expect(
      ringTimeoutWithinMetaWindow({
        configuredMs: 45_000,
        connectAt,
        now: connectAt + 1_500,
        voicemailTimeoutMs: 20_000,
      }),
    ).toBe(16_500);
  });

  it('a voicemail timeout later than Meta’s 30 s answer window changes nothing', () => {
    expect(
      ringTimeoutWithinMetaWindow({
        configuredMs: 45_000,
        connectAt,
        now: connectAt + 1_500,
        voicemailTimeoutMs: 30_000,
      }),
    ).toBe(26_500);
  });

  it('a voicemail timeout of 0 s leaves no time to ring: the agent is not rung', () => {
    expect(
      ringTimeoutWithinMetaWindow({ configuredMs: 45_000, connectAt, now: connectAt + 500, voicemailTimeoutMs: 0 }),
    ).toBe(0);
  });
});
