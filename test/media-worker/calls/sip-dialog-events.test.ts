/**
 * How mid-dialog SIP events reach a call's media and end a call: the one mapping every call script
 * uses ({@link applySipDialogEvent}, {@link sessionExpiredEnding}).
 */
import { describe, expect, it } from 'vitest';
import { applySipDialogEvent, sessionExpiredEnding } from '#worker/calls/call-media.ts';
import type { CallMediaPort } from '#worker/calls/media-port.ts';

/** A media port that records what the mapping asked of it. */
function recordingMedia(): { media: CallMediaPort; calls: string[] } {
  const calls: string[] = [];
  const media = {
    hold: () => calls.push('hold'),
    resume: () => calls.push('resume'),
    updateSip: () => calls.push('updateSip'),
    sendDtmfToWhatsApp: (digit: string, durationMs: number) => calls.push(`dtmf ${digit} ${durationMs}`),
  } as unknown as CallMediaPort;
  return { media, calls };
}

describe('Function: applySipDialogEvent', () => {
  it('a digit the PBX sent by INFO is played to WhatsApp with its duration, as RTP digits are', () => {
    const { media, calls } = recordingMedia();
    expect(applySipDialogEvent({ type: 'dtmf', digit: '5', durationMs: 160 }, media, ['PCMU'])).toBe(true);
    expect(applySipDialogEvent({ type: 'dtmf', digit: '#', durationMs: 100 }, media, ['PCMU'])).toBe(true);
    expect(calls).toEqual(['dtmf 5 160', 'dtmf # 100']);
  });

  it('a session expiry is not the media’s: the script ends the call, SIP side gone, 408 with the reason kept', () => {
    const { media, calls } = recordingMedia();
    const event = { type: 'session-expired', reason: 'Session timer expired (no session refresh in time)' } as const;
    expect(applySipDialogEvent(event, media, ['PCMU'])).toBe(false);
    expect(calls).toEqual([]);
    expect(sessionExpiredEnding(event.reason)).toEqual({
      reason: 'agent-hung-up',
      by: 'sip',
      sip: { status: 408, reason: 'Session timer expired (no session refresh in time)' },
    });
  });
});
