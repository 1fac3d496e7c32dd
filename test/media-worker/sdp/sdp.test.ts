import sdpTransform from 'sdp-transform';
import { describe, expect, it } from 'vitest';
import {
  audioDirection,
  isHold,
  mirrorDirection,
  redactSdp,
  remoteDirection,
  restrictToOffer,
  sessionVersion,
  withDirection,
} from '#worker/sdp/sdp.ts';
import { sdp } from '../sip/helpers/far-end.ts';

describe('Module: sdp (direction, hold and re-INVITE answers on sdp-transform)', () => {
  it.each([
    ['sendrecv', '127.0.0.2', 'sendrecv', false],
    ['sendonly', '127.0.0.2', 'sendonly', true],
    ['inactive', '127.0.0.2', 'inactive', true],
    ['recvonly', '127.0.0.2', 'recvonly', false],
    ['sendrecv', '0.0.0.0', 'sendonly', true], // RFC 2543 hold (RFC 3264 §8.4)
    ['recvonly', '0.0.0.0', 'inactive', true],
    ['inactive', '0.0.0.0', 'inactive', true],
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

  it('reads the first audio stream, its own c= over the session one, and :: as the IPv6 null address', () => {
    const s = [
      'v=0',
      'o=- 1 1 IN IP6 ::1',
      's=-',
      'c=IN IP6 ::1',
      't=0 0',
      'm=video 5000 RTP/AVP 96',
      'a=sendonly',
      'm=audio 4000 RTP/AVP 0',
      'c=IN IP6 ::',
      '',
    ].join('\r\n');
    expect(audioDirection(sdpTransform.parse(s))).toEqual({
      declared: 'sendrecv',
      nullAddress: true,
      effective: 'sendonly',
      onHold: true,
    });
    expect(isHold(s.replace('c=IN IP6 ::\r\n', ''))).toBe(false);
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

  it('withDirection drops a session-level direction and changes nothing else of what the SDP says', () => {
    const local = [
      'v=0',
      'o=wa-sip-bridge 123 1 IN IP4 127.0.0.1',
      's=wa-sip-bridge',
      'c=IN IP4 127.0.0.1',
      't=0 0',
      'a=sendrecv',
      'm=audio 30000 RTP/AVP 111 101',
      'a=rtpmap:111 opus/48000/2',
      'a=fmtp:111 useinbandfec=1',
      'a=rtpmap:101 telephone-event/8000',
      'a=fmtp:101 0-16',
      'a=ptime:20',
      'a=sendrecv',
      '',
    ].join('\r\n');
    const out = withDirection(local, 'sendonly', 2);
    expect(out.match(/^a=(sendrecv|sendonly|recvonly|inactive)$/gm)).toEqual(['a=sendonly']);
    const before = sdpTransform.parse(local);
    const after = sdpTransform.parse(out);
    expect(after.origin?.sessionVersion).toBe(2);
    expect(after.media[0]).toEqual({ ...before.media[0], direction: 'sendonly' });
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
    const withFeedback = local.replace('a=sendrecv', 'a=rtcp-fb:111 nack\r\na=rtcp-fb:* ccm fir\r\na=sendrecv');
    const narrowed = restrictToOffer(withFeedback, reoffer);
    expect(narrowed).not.toContain('a=rtcp-fb:111');
    expect(narrowed).toContain('a=rtcp-fb:* ccm fir');
  });

  it('redactSdp removes SDES keys', () => {
    const s =
      'v=0\r\nm=audio 1 RTP/SAVP 111\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n';
    expect(redactSdp(s)).not.toContain('inline:');
    expect(redactSdp(s)).toContain('a=crypto:<redacted>');
  });
});
