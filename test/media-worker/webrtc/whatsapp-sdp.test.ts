import { readFileSync } from 'node:fs';
import sdpTransform from 'sdp-transform';
import { describe, expect, it } from 'vitest';
import { validateBusinessSdp } from '#simulator/media/sdp-validation.ts';
import {
  LocalSdpError,
  offeredSetup,
  remotePayloadTypes,
  shapeLocalSdp,
  withoutWidebandTelephoneEvents,
} from '#worker/webrtc/whatsapp-sdp.ts';

const fixture = (name: string): string => readFileSync(new URL(`../../fixtures/sdp/${name}`, import.meta.url), 'utf8');

/** What werift 0.25 wrote as the leg's local answer to Meta's offer, and as a BIC offer with an IPv6 candidate. */
const weriftAnswer = fixture('werift-local-answer.sdp');
const weriftOffer = fixture('werift-local-offer-ipv6.sdp');
const local = { bindAddress: '127.0.0.1' };

describe('whatsapp-sdp', () => {
  describe('shapeLocalSdp(): werift’s SDP as Meta accepts it', () => {
    it('turns werift’s answer into one Meta’s validation accepts, with one sha-256 fingerprint and a=ptime:20', () => {
      const shaped = shapeLocalSdp(weriftAnswer, local);
      expect(validateBusinessSdp(shaped, { type: 'answer' })).toEqual({ ok: true });
      expect(shaped.split('\r\n').filter((l) => l.startsWith('a=fingerprint:'))).toEqual([
        'a=fingerprint:sha-256 99:A4:49:EC:82:0B:9C:04:F5:7A:08:1A:F2:EE:D6:A5:38:BF:41:7C:24:04:AE:A5:2F:47:EE:9D:2A:E3:64:3C',
      ]);
      expect(shaped).toMatch(/\r\na=ptime:20\r\n/);
      expect(shaped.endsWith('\r\n')).toBe(true);
    });

    it('changes nothing else: same ICE credentials, DTLS role, codecs, SSRC, BUNDLE and candidates, no trickle lines', () => {
      for (const sdp of [weriftAnswer, weriftOffer]) {
        const before = sdpTransform.parse(sdp);
        const after = sdpTransform.parse(shapeLocalSdp(sdp, local));
        // The edits, undone, give back werift's description.
        const m = before.media[0];
        expect(m?.iceOptions).toBe('trickle');
        expect(m?.endOfCandidates).toBe('end-of-candidates');
        if (m) {
          delete m.iceOptions;
          delete m.endOfCandidates;
          m.ptime = 20;
        }
        expect(after).toEqual(before);
        expect(shapeLocalSdp(sdp, local)).not.toMatch(/a=ice-options|a=end-of-candidates/);
      }
    });

    it('advertises the public address behind 1:1 NAT in c=, in the bind address’s candidate and its port on the m-line', () => {
      const shaped = shapeLocalSdp(weriftOffer, { bindAddress: '127.0.0.1', publicAddress: '203.0.113.7' });
      const m = sdpTransform.parse(shaped).media[0];
      expect(m?.connection).toEqual({ version: 4, ip: '203.0.113.7' });
      expect(m?.candidates?.map((c) => [c.ip, c.port])).toEqual([
        ['203.0.113.7', 39912],
        ['::1', 43072],
      ]);
      expect(m?.port).toBe(39912);
      expect(validateBusinessSdp(shaped, { type: 'offer' })).toEqual({ ok: true });
    });

    it('keeps the discard port and c=0.0.0.0 without a public address (the candidates carry the address)', () => {
      const m = sdpTransform.parse(shapeLocalSdp(weriftOffer, local)).media[0];
      expect(m?.port).toBe(9);
      expect(m?.connection?.ip).toBe('0.0.0.0');
    });

    it('writes a session-level sha-256 fingerprint on the m-line, the one place werift puts it', () => {
      const [line] = weriftAnswer.split('\r\n').filter((l) => l.startsWith('a=fingerprint:'));
      const sessionLevel = weriftAnswer.replace(`${line}\r\n`, '').replace('t=0 0\r\n', `t=0 0\r\n${line}\r\n`);
      const shaped = sdpTransform.parse(shapeLocalSdp(sessionLevel, local));
      expect(shaped.fingerprint).toBeUndefined();
      expect(shaped.media[0]?.fingerprint?.type).toBe('sha-256');
    });

    it('fails with a LocalSdpError when werift’s SDP has no sha-256 fingerprint', () => {
      for (const file of ['answer-sha384.sdp', 'answer-no-fingerprint.sdp']) {
        expect(() => shapeLocalSdp(fixture(file), local)).toThrow(LocalSdpError);
      }
      const [line] = fixture('answer-sha384.sdp')
        .split('\r\n')
        .filter((l) => l.startsWith('a=fingerprint:'));
      const sessionSha384 = weriftAnswer
        .replace(/^a=fingerprint:.*\r\n/m, '')
        .replace('t=0 0\r\n', `t=0 0\r\n${line}\r\n`);
      expect(() => shapeLocalSdp(sessionSha384, local)).toThrow(LocalSdpError);
    });
  });

  describe('withoutWidebandTelephoneEvents(): Meta’s DTMF runs at 8 kHz only', () => {
    it('drops telephone-event/48000 from a browser-style offer that also has telephone-event/8000', () => {
      const filtered = sdpTransform.parse(withoutWidebandTelephoneEvents(fixture('business-offer-browser.sdp')));
      const m = filtered.media[0];
      expect(m?.payloads).toBe('111 63 9 0 8 13 126');
      expect(m?.rtp.map((r) => `${r.payload} ${r.codec}/${r.rate}`)).toEqual([
        '111 opus/48000',
        '63 red/48000',
        '9 G722/8000',
        '0 PCMU/8000',
        '8 PCMA/8000',
        '13 CN/8000',
        '126 telephone-event/8000',
      ]);
    });

    it('returns Meta’s own offer untouched, and keeps a 48 kHz telephone-event when it is the only one', () => {
      const meta = fixture('meta-uic-offer.sdp');
      expect(withoutWidebandTelephoneEvents(meta)).toBe(meta);
      const only48k = fixture('answer-te-48000.sdp');
      expect(withoutWidebandTelephoneEvents(only48k)).toBe(only48k);
    });
  });

  describe('reading Meta’s SDP', () => {
    it('offeredSetup(): the media-level a=setup, else the session’s', () => {
      expect(offeredSetup(fixture('meta-uic-offer.sdp'))).toBe('actpass');
      expect(offeredSetup(fixture('business-answer-good.sdp'))).toBe('active');
      const sessionLevel = fixture('business-answer-good.sdp')
        .replace('a=setup:active\r\n', '')
        .replace('t=0 0\r\n', 't=0 0\r\na=setup:passive\r\n');
      expect(offeredSetup(sessionLevel)).toBe('passive');
      const both = fixture('business-answer-good.sdp').replace('t=0 0\r\n', 't=0 0\r\na=setup:passive\r\n');
      expect(offeredSetup(both)).toBe('active');
      expect(offeredSetup('v=0\r\n')).toBeUndefined();
    });

    it('remotePayloadTypes(): the first Opus/48000 and telephone-event/8000, whatever their numbers', () => {
      expect(remotePayloadTypes(fixture('meta-uic-offer.sdp'))).toEqual({ opus: 111, telephoneEvent: 126 });
      expect(remotePayloadTypes(fixture('business-offer-browser.sdp'))).toEqual({ opus: 111, telephoneEvent: 126 });
      expect(remotePayloadTypes(fixture('answer-pcmu-only.sdp'))).toEqual({ opus: undefined, telephoneEvent: 126 });
      const renumbered = fixture('meta-uic-offer.sdp')
        .replace(/\b111\b/g, '96')
        .replace(/\b126\b/g, '101');
      expect(remotePayloadTypes(renumbered)).toEqual({ opus: 96, telephoneEvent: 101 });
    });
  });
});
