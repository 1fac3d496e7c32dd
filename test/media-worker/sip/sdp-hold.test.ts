import { describe, expect, it } from 'vitest';
import {
  isHold,
  mirrorDirection,
  redactSdp,
  remoteDirection,
  restrictToOffer,
  sessionVersion,
  withDirection,
} from '#worker/sip/sdp-hold.ts';
import { sdp } from './helpers/far-end.ts';

describe('Module: sdp-hold', () => {
  it.each([
    ['sendrecv', '127.0.0.2', 'sendrecv', false],
    ['sendonly', '127.0.0.2', 'sendonly', true],
    ['inactive', '127.0.0.2', 'inactive', true],
    ['recvonly', '127.0.0.2', 'recvonly', false],
    ['sendrecv', '0.0.0.0', 'sendonly', true], // RFC 2543 hold (RFC 3264 §8.4)
    ['recvonly', '0.0.0.0', 'inactive', true],
  ])('offer a=%s c=%s reads as %s (hold: %s)', (dir, addr, expected, hold) => {
    const offer = sdp(addr, 4000, dir);
    expect(remoteDirection(offer)).toBe(expected);
    expect(isHold(offer)).toBe(hold);
  });

  it('media-level direction overrides session level; no attribute means sendrecv', () => {
    const s =
      'v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\na=sendonly\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\na=sendrecv\r\n';
    expect(remoteDirection(s)).toBe('sendrecv');
    expect(remoteDirection(s.replace('a=sendrecv\r\n', ''))).toBe('sendonly');
    expect(remoteDirection('v=0\r\nm=audio 1 RTP/AVP 0\r\n')).toBe('sendrecv');
  });

  it('mirrors directions per RFC 3264 §6.1', () => {
    expect(mirrorDirection('sendonly')).toBe('recvonly');
    expect(mirrorDirection('recvonly')).toBe('sendonly');
    expect(mirrorDirection('inactive')).toBe('inactive');
    expect(mirrorDirection('sendrecv')).toBe('sendrecv');
  });

  it('withDirection replaces every direction line, sets the o= version and keeps the rest byte for byte', () => {
    const local = sdp('127.0.0.1', 30000, 'sendrecv', 7);
    const out = withDirection(local, 'recvonly', 8);
    expect(out).toBe(local.replace('a=sendrecv', 'a=recvonly').replace('o=- 4242 7 ', 'o=- 4242 8 '));
    expect(sessionVersion(out)).toBe(8);
    const noDir = local.replace('a=sendrecv\r\n', '');
    expect(withDirection(noDir, 'inactive', 9)).toContain('a=inactive\r\n');
  });

  it('restrictToOffer keeps only the formats a re-offer still lists (RFC 3264 §6.1)', () => {
    const local = [
      'v=0',
      'o=- 1 1 IN IP4 127.0.0.1',
      's=-',
      'c=IN IP4 127.0.0.1',
      't=0 0',
      'm=audio 30000 RTP/AVP 111 0 8 101',
      'a=rtpmap:111 opus/48000/2',
      'a=fmtp:111 useinbandfec=1',
      'a=rtpmap:0 PCMU/8000',
      'a=rtpmap:8 PCMA/8000',
      'a=rtpmap:101 telephone-event/8000',
      'a=fmtp:101 0-16',
      'a=sendrecv',
      '',
    ].join('\r\n');
    const reoffer = sdp('127.0.0.2', 40000, 'sendonly'); // PCMU (static 0, with rtpmap) + telephone-event/8000
    const out = restrictToOffer(local, reoffer);
    expect(out).toContain('m=audio 30000 RTP/AVP 0 101\r\n');
    expect(out).not.toContain('opus');
    expect(out).not.toContain('PCMA');
    expect(out).toContain('a=fmtp:101 0-16');
    expect(restrictToOffer(local, 'v=0\r\nm=audio 1 RTP/AVP 97\r\na=rtpmap:97 iLBC/8000\r\n')).toBe(local); // nothing in common
    expect(restrictToOffer(local, local)).toBe(local);
  });

  it('redactSdp removes SDES keys', () => {
    const s =
      'v=0\r\nm=audio 1 RTP/SAVP 111\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n';
    expect(redactSdp(s)).not.toContain('inline:');
    expect(redactSdp(s)).toContain('a=crypto:<redacted>');
  });
});
