import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MediaError } from '#worker/media/errors.ts';
import {
  answerSipOffer,
  createSipOffer,
  parseSipAnswer,
  parseSipOffer,
  type SipMediaDescription,
  type SipSdpOptions,
} from '#worker/media/sip-sdp.ts';

const fixture = (name: string) => readFileSync(new URL(`../../fixtures/sdp/sip/${name}`, import.meta.url), 'utf8');

/** Golden comparison: mask the random session id and the port. */
const mask = (sdp: string) =>
  sdp.replace(/^(o=\S+) \d+ /m, '$1 <session> ').replace(/^m=audio \d+ /m, 'm=audio <port> ');

describe('Module: sip-sdp', () => {
  describe('createSipOffer', () => {
    it.each<[string, SipSdpOptions]>([
      ['offer-default.sdp', { address: '127.0.0.1', port: 40000 }],
      ['offer-g711-pcma-first.sdp', { address: '10.0.0.5', port: 20002, codecs: ['PCMA', 'PCMU'] }],
      [
        'offer-hold-pcmu-no-dtmf.sdp',
        { address: '127.0.0.1', port: 20000, codecs: ['PCMU'], dtmf: false, direction: 'sendonly', sessionVersion: 2 },
      ],
    ])('matches the golden %s', (name, opts) => {
      const sdp = createSipOffer(opts);
      expect(mask(sdp)).toBe(fixture(name));
    });

    it('uses the configured dynamic payload types and keeps the session id for re-offers', () => {
      const sdp = createSipOffer({
        address: '127.0.0.1',
        port: 5004,
        opusPayloadType: 96,
        telephoneEventPayloadType: 127,
        sessionId: '42',
        sessionVersion: 3,
      });
      expect(sdp).toContain('o=wa-sip-bridge 42 3 IN IP4 127.0.0.1');
      expect(sdp).toContain('m=audio 5004 RTP/AVP 96 0 8 127');
      expect(sdp).toContain('a=rtpmap:96 opus/48000/2');
      expect(sdp).toContain('a=rtpmap:127 telephone-event/8000');
    });

    it('caps the offered Opus like Meta’s stream (mono, maxaveragebitrate=20000, maxplaybackrate=16000)', () => {
      const sdp = createSipOffer({ address: '127.0.0.1', port: 5004 });
      expect(sdp).toContain(
        'a=fmtp:111 useinbandfec=1;stereo=0;sprop-stereo=0;maxaveragebitrate=20000;maxplaybackrate=16000;sprop-maxcapturerate=16000\r\n',
      );
    });

    it('makes the Opus caps configurable, and null leaves a parameter out', () => {
      const custom = createSipOffer({
        address: '127.0.0.1',
        port: 5004,
        opusMaxAverageBitrate: 32_000,
        opusMaxPlaybackRate: 24_000,
        opusMaxCaptureRate: 8000,
      });
      expect(custom).toContain(
        'a=fmtp:111 useinbandfec=1;stereo=0;sprop-stereo=0;maxaveragebitrate=32000;maxplaybackrate=24000;sprop-maxcapturerate=8000\r\n',
      );
      const none = createSipOffer({
        address: '127.0.0.1',
        port: 5004,
        opusMaxAverageBitrate: null,
        opusMaxPlaybackRate: null,
        opusMaxCaptureRate: null,
      });
      expect(none).toContain('a=fmtp:111 useinbandfec=1;stereo=0;sprop-stereo=0\r\n');
      // No Opus offered: no Opus fmtp at all.
      expect(createSipOffer({ address: '127.0.0.1', port: 5004, codecs: ['PCMU'] })).not.toContain('maxaveragebitrate');
    });

    it.each([
      [{ opusMaxAverageBitrate: 5999 }],
      [{ opusMaxAverageBitrate: 510_001 }],
      [{ opusMaxPlaybackRate: 96_000 }],
      [{ opusMaxCaptureRate: 16_000.5 }],
    ])('rejects out-of-range Opus caps %j (RFC 7587 §6.1) with a MediaError', (caps) => {
      expect(() => createSipOffer({ address: '127.0.0.1', port: 5004, ...caps })).toThrow(MediaError);
    });

    it.each([
      [{ address: 'pbx.example.com', port: 5004 }],
      [{ address: '127.0.0.1', port: 0 }],
      [{ address: '127.0.0.1', port: 5004, codecs: [] }],
      [{ address: '127.0.0.1', port: 5004, codecs: ['G729' as 'PCMU'] }],
    ])('rejects bad arguments %j with a MediaError', (opts) => {
      expect(() => createSipOffer(opts)).toThrow(MediaError);
    });
  });

  describe('parseSipAnswer (RFC 3264 §6.1: first answered format we offered)', () => {
    it.each<[string, SipMediaDescription]>([
      [
        'answer-asterisk-pcmu.sdp',
        {
          address: '192.0.2.10',
          port: 14562,
          codec: { name: 'PCMU', payloadType: 0, clockRate: 8000 },
          dtmfPayloadType: 101,
          direction: 'sendrecv',
          onHold: false,
          ptime: 20,
        },
      ],
      [
        'answer-freeswitch-opus.sdp',
        {
          address: '198.51.100.20',
          port: 27846,
          codec: { name: 'opus', payloadType: 111, clockRate: 48000 },
          dtmfPayloadType: 101,
          direction: 'sendrecv',
          onHold: false,
          ptime: 20,
        },
      ],
      [
        // Media-level c= wins; no a=sendrecv means sendrecv (RFC 3264 §5.1).
        'answer-g711-pcma-te101.sdp',
        {
          address: '203.0.113.41',
          port: 16434,
          codec: { name: 'PCMA', payloadType: 8, clockRate: 8000 },
          dtmfPayloadType: 101,
          direction: 'sendrecv',
          onHold: false,
          ptime: 20,
        },
      ],
      [
        'reinvite-hold-sendonly.sdp',
        {
          address: '192.0.2.10',
          port: 14562,
          codec: { name: 'PCMU', payloadType: 0, clockRate: 8000 },
          dtmfPayloadType: 101,
          direction: 'sendonly',
          onHold: true,
          ptime: 20,
        },
      ],
      [
        'reinvite-hold-inactive.sdp',
        {
          address: '192.0.2.10',
          port: 14562,
          codec: { name: 'PCMU', payloadType: 0, clockRate: 8000 },
          dtmfPayloadType: 101,
          direction: 'inactive',
          onHold: true,
          ptime: 20,
        },
      ],
      [
        // RFC 2543 hold, and a static PT 0 with no a=rtpmap (RFC 3551 §6).
        'reinvite-hold-c0.sdp',
        {
          address: '0.0.0.0',
          port: 4000,
          codec: { name: 'PCMU', payloadType: 0, clockRate: 8000 },
          dtmfPayloadType: 101,
          direction: 'sendrecv',
          onHold: true,
        },
      ],
    ])('%s', (name, expected) => {
      expect(parseSipAnswer(fixture(name))).toEqual(expected);
    });

    it('ignores formats we did not offer', () => {
      const answer = fixture('answer-freeswitch-opus.sdp').replace('RTP/AVP 111 101', 'RTP/AVP 111 0 101');
      expect(parseSipAnswer(answer, ['PCMU']).codec).toEqual({ name: 'PCMU', payloadType: 0, clockRate: 8000 });
    });

    it.each([
      ['answer-rejected-port0.sdp', /port 0/],
      ['answer-g722-g729-only.sdp', /no common audio codec/],
    ])('%s throws a MediaError (%s)', (name, message) => {
      expect(() => parseSipAnswer(fixture(name))).toThrow(message);
    });

    it('never throws anything but MediaError for garbage', () => {
      for (const junk of ['', 'hello', 'v=0\r\nm=audio', 'v=0\r\nm=video 5 RTP/AVP 96', '\u0000\u0001']) {
        try {
          parseSipAnswer(junk);
          expect.unreachable();
        } catch (err) {
          expect(err).toBeInstanceOf(MediaError);
        }
      }
    });
  });

  describe('answerSipOffer (PBX-originated call)', () => {
    it('answers the first supported codec with the offer’s telephone-event PT (golden)', () => {
      const { sdp, negotiated } = answerSipOffer(fixture('pbx-offer-asterisk-g722-pcma.sdp'), {
        address: '127.0.0.1',
        port: 30000,
      });
      expect(mask(sdp)).toBe(fixture('answer-to-pbx-offer-asterisk.sdp'));
      expect(negotiated.codec.name).toBe('PCMA');
      expect(negotiated.dtmfPayloadType).toBe(101);
    });

    it('answers an Opus offer with its payload type and the same Opus caps as the offer (golden)', () => {
      const { sdp, negotiated } = answerSipOffer(fixture('pbx-offer-freeswitch-opus.sdp'), {
        address: '127.0.0.1',
        port: 30000,
      });
      expect(mask(sdp)).toBe(fixture('answer-to-pbx-offer-opus.sdp'));
      expect(negotiated.codec).toEqual({ name: 'opus', payloadType: 102, clockRate: 48000 });
      expect(negotiated.dtmfPayloadType).toBe(101);
    });

    it('answers a hold re-INVITE (sendonly) with recvonly', () => {
      const { sdp } = answerSipOffer(fixture('reinvite-hold-sendonly.sdp'), { address: '127.0.0.1', port: 30000 });
      expect(sdp).toContain('a=recvonly');
      expect(parseSipOffer(fixture('reinvite-hold-sendonly.sdp')).onHold).toBe(true);
    });
  });
});
