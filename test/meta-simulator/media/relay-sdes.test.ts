/**
 * Meta's relay in SDES mode (`srtp_key_exchange_protocol: "SDES"`, M-SET; M-SIP SDES samples): `RTP/SAVP` +
 * `a=crypto`, no STUN, ICE or DTLS, and SRTP on plain UDP. The business side here is a hand-made SDES endpoint
 * (a UDP socket and werift's SRTP session), since the bridge speaks DTLS-SRTP only.
 */
import sdpTransform from 'sdp-transform';
import { describe, expect, it } from 'vitest';
import { RelayPeer } from '#simulator/media/relay-peer.ts';
import { parseCryptoLines, SDES_SUITE } from '#simulator/media/sdes.ts';
import { validateBusinessSdp } from '#simulator/media/sdp-validation.ts';
import { closeAfterEach, sleep, until } from '../../helpers/async.ts';
import { SdesBusiness } from '../../helpers/sdes-business.ts';

const track = closeAfterEach();

describe('RelayPeer in SDES mode', () => {
  it("offers Meta's SDES shape: RTP/SAVP, one AES_CM_128_HMAC_SHA1_80 a=crypto, no ICE, no DTLS", async () => {
    const relay = track(new RelayPeer({ keyExchange: 'SDES' }));
    const offer = await relay.createOffer();
    const m = sdpTransform.parse(offer).media[0];
    expect(m?.protocol).toBe('RTP/SAVP');
    expect(m?.payloads).toBe('111 126');
    expect(m?.connection?.ip).toBe('127.0.0.1');
    expect(parseCryptoLines(offer)).toEqual([{ tag: 1, suite: SDES_SUITE, keySalt: expect.any(Buffer) }]);
    expect(parseCryptoLines(offer)[0]?.keySalt).toHaveLength(30);
    for (const absent of ['a=ice-', 'a=candidate', 'a=fingerprint', 'a=setup', 'a=ice-lite']) {
      expect(offer).not.toContain(absent);
    }
    expect(offer).toContain('a=ptime:20');
  });

  it('refuses a DTLS answer and an answer without a usable a=crypto, like Meta’s SDP validation', async () => {
    const relay = track(new RelayPeer({ keyExchange: 'SDES' }));
    const offer = await relay.createOffer();
    const biz = track(new SdesBusiness());
    const good = await biz.sdp(offer);
    const dtls = good.replace('RTP/SAVP', 'UDP/TLS/RTP/SAVPF');
    await expect(relay.acceptAnswer(dtls)).rejects.toMatchObject({
      code: 'invalid-sdp',
      details: 'SDES requires protocol RTP/SAVP, found UDP/TLS/RTP/SAVPF',
    });
    await expect(relay.acceptAnswer(good.replace(/^a=crypto:.*\r\n/m, ''))).rejects.toMatchObject({
      details: 'SDES requires an a=crypto line',
    });
    await expect(relay.acceptAnswer(good.replace(SDES_SUITE, 'AEAD_AES_256_GCM'))).rejects.toMatchObject({
      code: 'invalid-sdp',
      details: expect.stringContaining('No usable a=crypto line'),
    });
    expect(validateBusinessSdp(good, { type: 'answer', keyExchange: 'SDES' })).toEqual({ ok: true });
    expect(validateBusinessSdp(good, { type: 'answer', keyExchange: 'DTLS' })).toMatchObject({ ok: false });
  });

  it('connects without a handshake on a valid answer; SRTP media flows both ways after the maiden packet', async () => {
    const relay = track(new RelayPeer({ keyExchange: 'SDES' }));
    const biz = track(new SdesBusiness());
    const offer = await relay.createOffer();
    await relay.acceptAnswer(await biz.sdp(offer));
    expect(relay.connectionState).toBe('connected');
    relay.playTone(1000, -20);
    await sleep(100);
    expect(biz.received, 'nothing before the business’s maiden packet (M-SIP)').toHaveLength(0);
    for (let i = 0; i < 30; i++) biz.sendFrame();
    await until(() => relay.stats().packetsReceived >= 30, 3000, { what: 'the business’s SRTP at the relay' });
    expect(relay.heard()).toMatchObject({ audible: true });
    await until(() => biz.received.length > 5, 3000, { what: 'the user’s SRTP at the business' });
    expect(biz.received[0]?.header.payloadType).toBe(111);
  });

  it('answers a business-initiated SDES offer with its own a=crypto under the offer’s tag, and sends nothing before pickup', async () => {
    const relay = track(new RelayPeer({ keyExchange: 'SDES' }));
    const biz = track(new SdesBusiness());
    const offer = await biz.sdp('', 7);
    const answer = await relay.answerOffer(offer);
    expect(sdpTransform.parse(answer).media[0]?.protocol).toBe('RTP/SAVP');
    expect(parseCryptoLines(answer)).toEqual([{ tag: 7, suite: SDES_SUITE, keySalt: expect.any(Buffer) }]);
    expect(answer).not.toContain('a=fingerprint');
    expect(relay.connectionState).toBe('connected');
    biz.useRemote(answer);
    for (let i = 0; i < 10; i++) biz.sendFrame();
    await until(() => relay.stats().packetsReceived >= 10, 3000, { what: 'business SRTP at the relay' });
    await sleep(100);
    expect(biz.received, 'the user’s phone is still ringing').toHaveLength(0);
    relay.startUserMedia();
    await until(() => biz.received.length > 0, 3000, { what: 'the user’s audio after pickup' });
  });
});
