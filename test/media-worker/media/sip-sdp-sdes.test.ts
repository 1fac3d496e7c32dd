/**
 * SDES-SRTP (RFC 4568) in the SIP leg's SDP, under each `SIP_SRTP` policy: what we offer, which
 * answers we take, which PBX offers we answer (and how) or refuse with 488.
 */
import { randomBytes } from 'node:crypto';
import sdpTransform from 'sdp-transform';
import { describe, expect, it } from 'vitest';
import {
  answerSipOffer,
  createSipOffer,
  parseSipAnswer,
  parseSipOffer,
  type SipSdpOptions,
  type SipSrtpPolicy,
} from '#worker/media/sip-sdp.ts';
import { newSdesKeySalt, SdesNegotiationError } from '#worker/sdp/sdes.ts';

const OUR_KEY = newSdesKeySalt();
const PBX_KEY = randomBytes(30).toString('base64');

function ours(policy: SipSrtpPolicy): SipSdpOptions {
  return { address: '127.0.0.1', port: 40000, codecs: ['PCMU'], srtp: { policy, keySalt: OUR_KEY } };
}

/** A PBX's SDP (offer or answer): PCMU and telephone-event, the profile and crypto lines given. */
function pbxSdp(profile: string, ...crypto: string[]): string {
  return [
    'v=0',
    'o=pbx 1 1 IN IP4 192.0.2.10',
    's=-',
    'c=IN IP4 192.0.2.10',
    't=0 0',
    `m=audio 30000 ${profile} 0 101`,
    'a=rtpmap:0 PCMU/8000',
    'a=rtpmap:101 telephone-event/8000',
    ...crypto,
    'a=sendrecv',
    '',
  ].join('\r\n');
}

const line = (tag: number, rest = '') => `a=crypto:${tag} AES_CM_128_HMAC_SHA1_80 inline:${PBX_KEY}${rest}`;

function audio(sdp: string) {
  return sdpTransform.parse(sdp).media[0];
}

/** The error a call throws, for assertions on its fields. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('it did not throw');
}

describe('SDES-SRTP on the SIP leg (SIP_SRTP)', () => {
  describe('our offer', () => {
    it('required: RTP/SAVP with one AES_CM_128_HMAC_SHA1_80 line of tag 1 carrying our 30-byte key', () => {
      const m = audio(createSipOffer(ours('required')));
      expect(m?.protocol).toBe('RTP/SAVP');
      expect(m?.crypto).toEqual([{ id: 1, suite: 'AES_CM_128_HMAC_SHA1_80', config: `inline:${OUR_KEY}` }]);
      expect(Buffer.from(OUR_KEY, 'base64')).toHaveLength(30);
    });

    it('optional: best effort, RTP/AVP with the same a=crypto line', () => {
      const m = audio(createSipOffer(ours('optional')));
      expect(m?.protocol).toBe('RTP/AVP');
      expect(m?.crypto).toHaveLength(1);
    });

    it('off (or no SRTP options): plain RTP/AVP, no a=crypto', () => {
      for (const sdp of [createSipOffer(ours('off')), createSipOffer({ address: '127.0.0.1', port: 40000 })]) {
        expect(audio(sdp)?.protocol).toBe('RTP/AVP');
        expect(sdp).not.toContain('a=crypto');
      }
    });

    it('each call gets a fresh key from the CSPRNG', () => {
      const keys = new Set(Array.from({ length: 50 }, () => newSdesKeySalt()));
      expect(keys.size).toBe(50);
    });
  });

  describe('the PBX answer', () => {
    it('required: an RTP/SAVP answer with one usable line of our tag gives the PBX key', () => {
      const answer = parseSipAnswer(pbxSdp('RTP/SAVP', line(1)), ['PCMU'], 'required');
      expect(answer.srtp).toEqual({ tag: 1, keySalt: PBX_KEY });
      expect(answer).toMatchObject({ address: '192.0.2.10', port: 30000, codec: { name: 'PCMU' } });
    });

    it.each<[string, string, RegExp]>([
      ['no key', pbxSdp('RTP/SAVP'), /no a=crypto line/],
      ['plain RTP/AVP', pbxSdp('RTP/AVP'), /RTP\/AVP to our RTP\/SAVP offer/],
      ['another tag', pbxSdp('RTP/SAVP', line(2)), /tag 2, we offered 1/],
      ['two lines', pbxSdp('RTP/SAVP', line(1), line(2)), /2 a=crypto lines/],
      [
        'another suite',
        pbxSdp('RTP/SAVP', `a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:${PBX_KEY}`),
        /suite AES_CM_128_HMAC_SHA1_32/,
      ],
      [
        'a short key',
        pbxSdp('RTP/SAVP', `a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:${randomBytes(16).toString('base64')}`),
        /not 16\+14 bytes/,
      ],
      ['an MKI', pbxSdp('RTP/SAVP', line(1, '|2^20|1:4')), /MKI/],
      ['UNENCRYPTED_SRTP after a WSH', pbxSdp('RTP/SAVP', line(1, ' WSH=128 UNENCRYPTED_SRTP')), /UNENCRYPTED_SRTP/],
      ['a key derivation rate', pbxSdp('RTP/SAVP', line(1, ' KDR=10')), /KDR/],
    ])('required: refuses an answer with %s, naming the problem and no key', (_, sdp, problem) => {
      const error = thrown(() => parseSipAnswer(sdp, ['PCMU'], 'required'));
      expect(error).toBeInstanceOf(SdesNegotiationError);
      expect((error as SdesNegotiationError).message).toMatch(problem);
      expect((error as SdesNegotiationError).message).not.toContain(PBX_KEY);
      expect((error as SdesNegotiationError).sipStatus).toBe(488);
    });

    it('takes a lifetime and a window size hint of at least 64', () => {
      const sdp = pbxSdp('RTP/SAVP', line(1, '|2^31 WSH=64'));
      expect(parseSipAnswer(sdp, ['PCMU'], 'required').srtp?.keySalt).toBe(PBX_KEY);
    });

    it('optional: a key in the answer gives SRTP, none gives plain RTP', () => {
      expect(parseSipAnswer(pbxSdp('RTP/AVP', line(1)), ['PCMU'], 'optional').srtp?.keySalt).toBe(PBX_KEY);
      expect(parseSipAnswer(pbxSdp('RTP/SAVP', line(1)), ['PCMU'], 'optional').srtp?.keySalt).toBe(PBX_KEY);
      expect(parseSipAnswer(pbxSdp('RTP/AVP'), ['PCMU'], 'optional').srtp).toBeUndefined();
      expect(() => parseSipAnswer(pbxSdp('RTP/AVP', line(3)), ['PCMU'], 'optional')).toThrow(SdesNegotiationError);
    });

    it('off: an RTP/SAVP answer to our plain offer fails instead of sending plain RTP to an SRTP peer', () => {
      expect(() => parseSipAnswer(pbxSdp('RTP/SAVP', line(1)), ['PCMU'], 'off')).toThrow(/SIP_SRTP is off/);
      expect(parseSipAnswer(pbxSdp('RTP/AVP'), ['PCMU']).srtp).toBeUndefined();
    });
  });

  describe('a PBX offer (we are the UAS)', () => {
    it('required or optional: an RTP/SAVP offer gets RTP/SAVP with our own key under the tag we accepted', () => {
      for (const policy of ['required', 'optional'] as const) {
        const offer = pbxSdp('RTP/SAVP', `a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:${PBX_KEY}`, line(7));
        const { sdp, negotiated } = answerSipOffer(offer, ours(policy));
        expect(negotiated.srtp).toEqual({ tag: 7, keySalt: PBX_KEY });
        const m = audio(sdp);
        expect(m?.protocol).toBe('RTP/SAVP');
        expect(m?.crypto).toEqual([{ id: 7, suite: 'AES_CM_128_HMAC_SHA1_80', config: `inline:${OUR_KEY}` }]);
      }
    });

    it('a best-effort RTP/AVP offer with a key gets SRTP in RTP/AVP when SRTP is on, plain RTP when off', () => {
      const offer = pbxSdp('RTP/AVP', line(1));
      const on = answerSipOffer(offer, ours('optional'));
      expect(audio(on.sdp)?.protocol).toBe('RTP/AVP');
      expect(on.negotiated.srtp?.keySalt).toBe(PBX_KEY);
      expect(audio(on.sdp)?.crypto?.[0]?.config).toBe(`inline:${OUR_KEY}`);
      const off = answerSipOffer(offer, ours('off'));
      expect(off.negotiated.srtp).toBeUndefined();
      expect(off.sdp).not.toContain('a=crypto');
    });

    it.each<[SipSrtpPolicy, string, RegExp]>([
      ['off', pbxSdp('RTP/SAVP', line(1)), /RTP\/SAVP \(SIP_SRTP is off/],
      ['required', pbxSdp('RTP/AVP'), /RTP\/AVP without a=crypto \(SIP_SRTP is required\)/],
      ['required', pbxSdp('RTP/AVP', line(1, ' UNENCRYPTED_SRTCP')), /UNENCRYPTED_SRTCP/],
      ['optional', pbxSdp('RTP/SAVP', line(1, '|2^20|1:4')), /no usable key: a=crypto:1 an MKI/],
    ])('%s: refuses the offer %#, for a 488', (policy, offer, problem) => {
      const error = thrown(() => parseSipOffer(offer, ['PCMU'], policy));
      expect(error).toBeInstanceOf(SdesNegotiationError);
      expect(error).toMatchObject({ kind: 'offer', sipStatus: 488 });
      expect((error as Error).message).toMatch(problem);
    });

    it('optional: a plain offer, or a best-effort one with keys we cannot use, gets plain RTP', () => {
      expect(parseSipOffer(pbxSdp('RTP/AVP'), ['PCMU'], 'optional').srtp).toBeUndefined();
      expect(parseSipOffer(pbxSdp('RTP/AVP', line(1, ' KDR=3')), ['PCMU'], 'optional').srtp).toBeUndefined();
    });
  });
});
