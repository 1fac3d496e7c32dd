/** DTMF in SIP INFO bodies: what is a digit, what is refused and how. */
import { describe, expect, it } from 'vitest';
import { parseInfoDtmf } from '#worker/sip/info-dtmf.ts';

describe('Function: parseInfoDtmf', () => {
  it('application/dtmf-relay: Signal and Duration (ms), event codes 10/11 as * and #', () => {
    expect(parseInfoDtmf('application/dtmf-relay', 'Signal=5\r\nDuration=160\r\n')).toEqual({
      kind: 'digit',
      digit: { digit: '5', durationMs: 160 },
    });
    expect(parseInfoDtmf('Application/DTMF-Relay; charset=x', 'Signal= 11\nDuration=250')).toEqual({
      kind: 'digit',
      digit: { digit: '#', durationMs: 250 },
    });
    expect(parseInfoDtmf('application/dtmf-relay', 'Signal=*')).toEqual({
      kind: 'digit',
      digit: { digit: '*', durationMs: 100 },
    });
    expect(parseInfoDtmf('application/dtmf-relay', 'Signal=x\r\nDuration=160')).toMatchObject({ kind: 'malformed' });
  });

  it('application/dtmf: the digit alone', () => {
    expect(parseInfoDtmf('application/dtmf', '7\r\n')).toEqual({
      kind: 'digit',
      digit: { digit: '7', durationMs: 100 },
    });
    expect(parseInfoDtmf('application/dtmf', 'd')).toEqual({ kind: 'digit', digit: { digit: 'D', durationMs: 100 } });
    expect(parseInfoDtmf('application/dtmf', '77')).toMatchObject({ kind: 'malformed' });
  });

  it('no body is a keep-alive; another body type is unsupported (415)', () => {
    expect(parseInfoDtmf(undefined, undefined)).toEqual({ kind: 'empty' });
    expect(parseInfoDtmf('application/media_control+xml', '<x/>')).toEqual({
      kind: 'unsupported',
      contentType: 'application/media_control+xml',
    });
  });
});
