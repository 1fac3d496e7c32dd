/** RFC 4028 session-timer rules and the timer itself, on a ManualClock. */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '#core/clock.ts';
import {
  armedFor,
  decideAsUas,
  expiryDelayMs,
  formatSessionExpires,
  intervalAfter422,
  intervalFromUacResponse,
  listsTimer,
  parseMinSe,
  parseSessionExpires,
  refreshDelayMs,
  SessionTimer,
  unsupportedRequired,
} from '#worker/sip/session-timer.ts';

describe('Session-Expires and Min-SE headers (RFC 4028 §4, §5)', () => {
  it('reads delta-seconds and the refresher, and ignores what it does not know', () => {
    expect(parseSessionExpires('1800;refresher=uac')).toEqual({ seconds: 1800, refresher: 'uac' });
    expect(parseSessionExpires(' 90 ; Refresher=UAS ;x=1')).toEqual({ seconds: 90, refresher: 'uas' });
    expect(parseSessionExpires('600')).toEqual({ seconds: 600 });
    expect(parseSessionExpires('soon')).toBeUndefined();
    expect(parseSessionExpires(undefined)).toBeUndefined();
    expect(parseMinSe('120')).toBe(120);
    expect(parseMinSe('abc')).toBeUndefined();
    expect(formatSessionExpires({ seconds: 1800, refresher: 'uas' })).toBe('1800;refresher=uas');
  });

  it('finds the timer option tag and leaves the others for a 420', () => {
    expect(listsTimer('100rel, Timer')).toBe(true);
    expect(listsTimer('replaces')).toBe(false);
    expect(unsupportedRequired('timer, 100rel')).toEqual(['100rel']);
    expect(unsupportedRequired('timer')).toEqual([]);
  });
});

describe('Negotiation', () => {
  it('as UAS (§9): 422 below our Min-SE; the request’s refresher, else a timer-capable UAC, else us', () => {
    expect(decideAsUas({ sessionExpires: undefined, uacSupportsTimer: true })).toEqual({ kind: 'none' });
    expect(decideAsUas({ sessionExpires: { seconds: 60 }, uacSupportsTimer: true })).toEqual({
      kind: 'too-small',
      minSe: 90,
    });
    expect(decideAsUas({ sessionExpires: { seconds: 600, refresher: 'uas' }, uacSupportsTimer: true })).toEqual({
      kind: 'timer',
      interval: { seconds: 600, refresher: 'uas' },
      requireTimer: true,
    });
    expect(decideAsUas({ sessionExpires: { seconds: 600 }, uacSupportsTimer: true })).toMatchObject({
      interval: { refresher: 'uac' },
    });
    // A UAC without timer support cannot refresh: we do, and we do not Require it.
    expect(decideAsUas({ sessionExpires: { seconds: 600, refresher: 'uac' }, uacSupportsTimer: false })).toEqual({
      kind: 'timer',
      interval: { seconds: 600, refresher: 'uas' },
      requireTimer: false,
    });
  });

  it('as UAC (§7.2, §6): a 2xx without refresher makes us refresh; a 422 retries with its Min-SE', () => {
    expect(intervalFromUacResponse(undefined)).toBeUndefined();
    expect(intervalFromUacResponse({ seconds: 300 })).toEqual({ seconds: 300, refresher: 'uac' });
    expect(intervalFromUacResponse({ seconds: 300, refresher: 'uas' })).toEqual({ seconds: 300, refresher: 'uas' });
    expect(intervalAfter422('1200', 1800)).toBeUndefined();
    expect(intervalAfter422('3600', 1800)).toBe(3600);
    expect(intervalAfter422(undefined, 1800)).toBeUndefined();
  });

  it('refresh at half the interval, expiry at the interval less min(32 s, a third) (§10)', () => {
    expect(refreshDelayMs(1800)).toBe(900_000);
    expect(expiryDelayMs(1800)).toBe(1_768_000);
    expect(expiryDelayMs(90)).toBe(60_000);
  });
});

describe('Class: SessionTimer', () => {
  function timer() {
    const clock = new ManualClock();
    const fired: string[] = [];
    const t = new SessionTimer(clock, {
      refresh: () => fired.push(`refresh@${clock.now()}`),
      expire: () => fired.push(`expire@${clock.now()}`),
    });
    return { clock, fired, t };
  }

  it('refresher names the transaction’s UAC or UAS: a callee’s refresh with refresher=uac makes the callee refresh', () => {
    expect(armedFor({ seconds: 90, refresher: 'uac' }, 'uac')).toEqual({ seconds: 90, weRefresh: true });
    expect(armedFor({ seconds: 90, refresher: 'uac' }, 'uas')).toEqual({ seconds: 90, weRefresh: false });
  });

  it('the refresher refreshes at half the interval, and a restart re-arms from now', () => {
    const { clock, fired, t } = timer();
    t.start({ seconds: 90, weRefresh: true });
    clock.advance(44_999);
    expect(fired).toEqual([]);
    clock.advance(1);
    expect(fired).toEqual(['refresh@45000']);
    t.start({ seconds: 120, weRefresh: true });
    clock.advance(60_000);
    expect(fired).toEqual(['refresh@45000', 'refresh@105000']);
  });

  it('the other side expires the session when no refresh came, and a refresh postpones it; stop disarms', () => {
    const { clock, fired, t } = timer();
    t.start({ seconds: 90, weRefresh: false });
    clock.advance(50_000);
    t.start({ seconds: 90, weRefresh: false }); // a refresh arrived
    clock.advance(59_999);
    expect(fired).toEqual([]);
    clock.advance(1);
    expect(fired).toEqual(['expire@110000']);
    t.start({ seconds: 90, weRefresh: false });
    t.stop();
    expect(t.armed).toBeUndefined();
    clock.advance(1_000_000);
    expect(fired).toHaveLength(1);
    expect(clock.pendingTimers).toBe(0);
  });
});
