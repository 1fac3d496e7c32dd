import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { Decoder, Encoder } from '@evan/opus';
import sdpTransform from 'sdp-transform';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '#core/clock.ts';
import { measureTone, ToneGenerator, trimSilence } from '#simulator/media/audio.ts';
import { RelayPeer } from '#simulator/media/relay-peer.ts';
import { validateBusinessSdp } from '#simulator/media/sdp-validation.ts';
import { MediaError, UnsupportedKeyExchangeError } from '#worker/media/errors.ts';
import { OPUS_TICKS_PER_FRAME, opusSilenceFrame, WhatsAppLeg } from '#worker/webrtc/whatsapp-leg.ts';
import { closeAfterEach, sleep, until } from '../../helpers/async.ts';

const track = closeAfterEach();

/** A user-initiated call: the relay (Meta) offers, the leg answers, both connect. */
async function connectCall(opts: { silence?: boolean } = {}) {
  const relay = track(new RelayPeer());
  const leg = track(new WhatsAppLeg({ callId: 'test-call' }));
  const started = performance.now();
  const offer = await relay.createOffer();
  const answer = await leg.answer(offer);
  if (opts.silence !== false) leg.startSilence();
  await relay.acceptAnswer(answer);
  await Promise.all([relay.waitForConnected(3000), leg.waitForConnected(3000)]);
  return { relay, leg, offer, answer, connectMs: performance.now() - started };
}

/** What reaches the relay on the wire (after SRTP). */
function tap(relay: RelayPeer) {
  const seen: { seq: number; ts: number; ssrc: number; silence: boolean }[] = [];
  const silence = opusSilenceFrame();
  const relayPc = (relay as unknown as { pc: import('werift').RTCPeerConnection }).pc;
  relayPc.dtlsTransports[0]?.onRtp.subscribe((rtp) =>
    seen.push({
      seq: rtp.header.sequenceNumber,
      ts: rtp.header.timestamp,
      ssrc: rtp.header.ssrc,
      silence: rtp.payload.equals(silence),
    }),
  );
  return seen;
}

const udpSockets = () => process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap').length;

describe('WhatsAppLeg', () => {
  describe('answering a user-initiated call', () => {
    it('produces an answer Meta accepts: full ICE, setup:active, one sha-256 fingerprint, Opus 111 + telephone-event/8000 126, ptime 20', async () => {
      const relay = track(new RelayPeer());
      const leg = track(new WhatsAppLeg());
      const answer = await leg.answer(await relay.createOffer());
      const sdp = sdpTransform.parse(answer);
      const m = sdp.media[0];

      expect(validateBusinessSdp(answer, { type: 'answer' })).toEqual({ ok: true });
      expect(sdp.icelite).toBeUndefined();
      expect(sdp.media).toHaveLength(1);
      expect(m?.setup).toBe('active');
      expect(answer.match(/^a=fingerprint:/gm)).toEqual(['a=fingerprint:']);
      expect(answer).toMatch(/^a=fingerprint:sha-256 /m);
      expect(m?.payloads).toBe('111 126');
      expect(answer).toContain('a=rtpmap:126 telephone-event/8000');
      expect(answer).toContain('a=ptime:20');
      expect(answer).toContain('a=rtcp-mux');
      expect(new Set(m?.ssrcs?.map((s) => s.id)).size).toBe(1);
      // Only the configured bind address is advertised.
      expect(m?.candidates?.map((c) => c.ip)).toEqual(['127.0.0.1']);
    });

    it('connects within 3 s as the ICE controlling agent and the DTLS client', async () => {
      const { leg, relay, connectMs } = await connectCall();
      expect(connectMs).toBeLessThan(3000);
      expect(relay.connectionState).toBe('connected');
      expect(leg.iceRole).toBe('controlling');
      expect(leg.dtlsRole).toBe('client');
      console.info(`[whatsapp-leg] offer → connected in ${connectMs.toFixed(0)} ms`);
    });

    it('advertises the configured public address in c= and the host candidate (cloud 1:1 NAT)', async () => {
      const relay = track(new RelayPeer());
      const leg = track(new WhatsAppLeg({ publicAddress: '203.0.113.7' }));
      const answer = await leg.answer(await relay.createOffer());
      const m = sdpTransform.parse(answer).media[0];
      expect(m?.connection?.ip).toBe('203.0.113.7');
      expect(m?.candidates?.map((c) => c.ip)).toEqual(['203.0.113.7']);
      expect(m?.port).toBe(m?.candidates?.[0]?.port);
      expect(validateBusinessSdp(answer, { type: 'answer' })).toEqual({ ok: true });
    });

    it("connects over IPv4 to Meta's offer of an IPv4 and an IPv6 host candidate on one port, and audio flows (§5.1, S10)", async () => {
      // The simulated relay now offers both, like REF26; its IPv6 candidate (a documentation address) is
      // unreachable and outranks the IPv4 one, so the leg must not depend on it.
      const { relay, leg, offer } = await connectCall();
      const candidates = sdpTransform.parse(offer).media[0]?.candidates ?? [];
      expect(candidates.map((c) => c.ip)).toEqual(['127.0.0.1', expect.stringMatching(/^2001:db8:/)]);
      expect(candidates[1]?.priority).toBeGreaterThan(candidates[0]?.priority ?? 0);
      await until(() => relay.stats().packetsReceived > 0, 3000, { what: 'business media at the relay' });
      let heard = 0;
      leg.onAudio(() => {
        heard++;
      });
      await until(() => heard > 0, 3000, { what: "the user's media at the leg" });
    });

    it("answers the captured Meta offer shape (ICE-lite, '/' ufrag, IPv4+IPv6 candidates, extmaps) validly", async () => {
      const metaOffer = readFileSync(new URL('../../fixtures/sdp/meta-uic-offer.sdp', import.meta.url), 'utf8');
      const leg = track(new WhatsAppLeg());
      const answer = await leg.answer(metaOffer);
      expect(validateBusinessSdp(answer, { type: 'answer' })).toEqual({ ok: true });
      expect(answer).toMatch(/^a=setup:active$/m);
      expect(answer).toMatch(/^a=mid:audio$/m);
      expect(leg.iceRole).toBe('controlling');
    });

    it('adds an IPv6 host candidate only when bindAddress6 is configured, and still connects over IPv4', async () => {
      const relay = track(new RelayPeer());
      const leg = track(new WhatsAppLeg({ bindAddress6: '::1' }));
      const answer = await leg.answer(await relay.createOffer());
      const ips = sdpTransform.parse(answer).media[0]?.candidates?.map((c) => c.ip);
      expect(ips?.sort()).toEqual(['127.0.0.1', '::1']);
      await relay.acceptAnswer(answer);
      await leg.waitForConnected(3000);
    });

    it("refuses Meta's SDES offer (srtp_key_exchange_protocol SDES) by name, with the call id and the setting to change", async () => {
      const relay = track(new RelayPeer({ keyExchange: 'SDES' }));
      const leg = track(new WhatsAppLeg({ callId: 'wacid.SDES' }));
      const offer = await relay.createOffer();
      const refused = await leg.answer(offer).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(UnsupportedKeyExchangeError);
      expect(refused).toMatchObject({
        callId: 'wacid.SDES',
        keyExchange: 'SDES',
        setting: 'srtp_key_exchange_protocol',
        message: expect.stringContaining('srtp_key_exchange_protocol is SDES'),
      });
      // Before: MediaError "answering the Meta offer failed: mid not assigned" (webrtc), a bridge-error.
      expect((refused as Error).message).toContain('"srtp_key_exchange_protocol":"DTLS"');
    });

    it('rejects an offer without Opus with a MediaError carrying the call id', async () => {
      const leg = track(new WhatsAppLeg({ callId: 'wacid.X' }));
      const offer = (await track(new RelayPeer()).createOffer()).replace(/opus\/48000\/2/g, 'G722/8000');
      const err = await leg.answer(offer).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MediaError);
      expect(err).toMatchObject({ code: 'invalid-sdp', context: { callId: 'wacid.X', component: 'whatsapp-leg' } });
    });
  });

  describe('business-initiated call (createOffer/applyAnswer)', () => {
    it('offers Opus + telephone-event/8000 that Meta accepts and connects to the relay’s answer', async () => {
      const relay = track(new RelayPeer());
      const leg = track(new WhatsAppLeg());
      const offer = await leg.createOffer();
      expect(validateBusinessSdp(offer, { type: 'offer' })).toEqual({ ok: true });
      expect(offer.match(/^a=fingerprint:/gm)).toHaveLength(1);
      expect(offer).toContain('a=rtpmap:126 telephone-event/8000');
      const started = performance.now();
      await leg.applyAnswer(await relay.answerOffer(offer));
      leg.startSilence();
      await Promise.all([leg.waitForConnected(3000), relay.waitForConnected(3000)]);
      console.info(`[whatsapp-leg] BIC answer → connected in ${(performance.now() - started).toFixed(0)} ms`);
      await until(() => relay.firstBusinessMediaAt !== undefined, 1000);
      await expect(leg.applyAnswer('v=0')).rejects.toMatchObject({ code: 'invalid-state' });
    });
  });

  describe('the injected clock drives the outbound stream (timing rules: outbound-stream.test.ts)', () => {
    it('on a ManualClock, sends one silence frame per advance of 20 ms over the real connection, and leaves no timer when closed', async () => {
      const clock = new ManualClock(0);
      const relay = track(new RelayPeer());
      const leg = track(new WhatsAppLeg({ clock }));
      const answer = await leg.answer(await relay.createOffer());
      leg.startSilence();
      await relay.acceptAnswer(answer);
      await Promise.all([relay.waitForConnected(5000), leg.waitForConnected(5000)]);
      const seen = tap(relay);
      expect(leg.connectedAtMs).toBe(0);

      clock.advance(0);
      await until(() => seen.length === 1);
      clock.advance(20);
      await until(() => seen.length === 2);
      clock.advance(20);
      await until(() => seen.length === 3);
      await sleep(50);
      // Real time passing sends nothing: only the injected clock does.
      expect(seen).toHaveLength(3);
      expect(seen.every((p) => p.silence)).toBe(true);
      expect(seen.map((p) => (p.seq - seen[0]!.seq) & 0xffff)).toEqual([0, 1, 2]);
      expect(seen.map((p) => (p.ts - seen[0]!.ts) >>> 0)).toEqual([0, OPUS_TICKS_PER_FRAME, 2 * OPUS_TICKS_PER_FRAME]);
      expect(leg.firstPacketSentAtMs).toBe(0);
      expect(leg.audioLeadMs()).toBe(20);

      await leg.close();
      expect(clock.pendingTimers).toBe(0);
    });
  });

  describe('silence before real audio (maiden packet, 20 s watchdog, §5.1/§5.2)', () => {
    it('sends silence as soon as DTLS is up: the relay sees business media within 1 s of connect', async () => {
      const { relay, leg } = await connectCall();
      const connectedAt = Date.now();
      await until(() => relay.firstBusinessMediaAt !== undefined, 1000);
      const firstMediaMs = (relay.firstBusinessMediaAt as number) - connectedAt;
      console.info(`[whatsapp-leg] connected → first business packet at the relay: ${firstMediaMs} ms`);
      expect(firstMediaMs).toBeLessThan(1000);
      await until(async () => (await leg.stats()).silenceFramesSent >= 10, 5000);
      expect(relay.firstAudibleBusinessMediaAt).toBeUndefined();
      expect(relay.businessSsrcs).toHaveLength(1);
    });

    it('keeps one SSRC and continuous seq/timestamp (960 per 20 ms) from silence into real audio', async () => {
      const { relay, leg } = await connectCall();
      const seen = tap(relay);
      await until(() => seen.length >= 5);
      const encoder = new Encoder({ channels: 1, sample_rate: 8000, application: 'voip' });
      const tone = new ToneGenerator(1000, -12, 8000);
      relay.startRecording();
      for (let i = 0; i < 50; i++) {
        leg.sendAudio(encoder.encode(tone.nextFrame()));
        await sleep(20);
      }
      const pcm = relay.stopRecording();
      const audioEnd = seen.length;
      await until(() => seen.slice(audioEnd).some((p) => p.silence)); // silence resumes after the audio stops
      expect(seen.some((p) => !p.silence)).toBe(true);
      expect(new Set(seen.map((p) => p.ssrc)).size).toBe(1);
      for (let i = 1; i < seen.length; i++) {
        const prev = seen[i - 1]!;
        const cur = seen[i]!;
        expect((cur.seq - prev.seq) & 0xffff).toBe(1);
        const dts = (cur.ts - prev.ts) >>> 0;
        // Each packet advances one 20 ms frame; gaps only in whole frames.
        expect(dts % OPUS_TICKS_PER_FRAME).toBe(0);
        expect(dts).toBeGreaterThan(0);
      }
      const m = measureTone(trimSilence(pcm, 48_000), 48_000);
      expect(Math.abs(m.hz - 1000)).toBeLessThan(10);
    });
  });

  describe('DTMF', () => {
    it('sends RFC 4733 digits on PT 126 that the relay decodes, and receives the relay’s digits', async () => {
      const { relay, leg } = await connectCall();
      await until(() => relay.firstBusinessMediaAt !== undefined);
      const digits: string[] = [];
      leg.onDtmf((d) => digits.push(d));
      await Promise.all([leg.sendDtmf('159#'), relay.sendDtmf('*0D')]);
      await until(() => relay.receivedDigits.length === 4 && digits.length === 3);
      expect(relay.receivedDigits).toBe('159#');
      expect(digits.join('')).toBe('*0D');
      expect((await leg.stats()).dtmfSent).toBe(4);
    });

    it('rejects invalid digits', async () => {
      const { leg } = await connectCall();
      await expect(leg.sendDtmf('12x')).rejects.toMatchObject({ code: 'invalid-argument' });
    });
  });

  describe('receiving audio and stats', () => {
    it('delivers the relay’s Opus packets and reports RTCP stats', async () => {
      const { relay, leg } = await connectCall();
      relay.playTone(1000, -12);
      const decoder = new Decoder({ channels: 1, sample_rate: 48_000 });
      const chunks: Int16Array[] = [];
      leg.onAudio((rtp) => {
        const u8 = decoder.decode(rtp.payload);
        chunks.push(new Int16Array(u8.buffer, u8.byteOffset, u8.byteLength >> 1));
      });
      await until(() => chunks.length >= 75, 10_000);
      const pcm = new Int16Array(chunks.reduce((n, c) => n + c.length, 0));
      let off = 0;
      for (const c of chunks) {
        pcm.set(c, off);
        off += c.length;
      }
      const m = measureTone(trimSilence(pcm, 48_000), 48_000);
      expect(Math.abs(m.hz - 1000)).toBeLessThan(10);
      expect(Math.abs(m.dbfs - -12)).toBeLessThan(3);
      const stats = await leg.stats();
      expect(stats.packetsReceived).toBeGreaterThanOrEqual(75);
      expect(stats.packetsLost).toBe(0);
      // Loopback: wide bounds, the figures themselves are the bench's business.
      expect(stats.roundTripTimeMs).toBeLessThan(1000);
      expect(stats.jitterMs).toBeLessThan(200);
    });
  });

  describe('RTP fast path (SRTP outside werift once DTLS is up)', () => {
    it('carries the call, drops forged SRTP, and keeps the RTCP reports Meta reads', async () => {
      const { relay, leg, answer } = await connectCall();
      relay.playTone(1000, -12);
      let heard = 0;
      leg.onAudio(() => heard++);
      // A forged packet: valid RTP header, random "ciphertext" and tag, sent to the leg's ICE socket.
      const port = Number(/^a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host/m.exec(answer)?.[1]);
      const forger = createSocket('udp4');
      const forged = Buffer.concat([
        Buffer.from([0x80, 111, 0x12, 0x34, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]),
        randomBytes(70),
      ]);
      await new Promise<void>((r) => forger.send(forged, port, '127.0.0.1', () => r()));
      forger.close();
      // werift's reports run every 0.5–1.5 s.
      await until(async () => {
        const rtcp = await relay.businessRtcp();
        return rtcp.senderReport !== undefined && rtcp.receiverReport !== undefined;
      }, 5000);
      const stats = await leg.stats();
      expect(stats.srtpDropped).toEqual({ malformed: 0, authentication: 1, replay: 0 });
      expect(heard).toBeGreaterThan(20);
      expect(stats.packetsLost).toBe(0);
      expect(stats.jitterMs).toBeLessThan(200);
      expect(leg.srtpFastPathProfile).toBeDefined();
      const rtcp = await relay.businessRtcp();
      expect(rtcp.senderReport?.packetsSent).toBeGreaterThan(10);
      expect(rtcp.receiverReport?.packetsLost).toBe(0);
      expect(relay.stats().packetsReceived).toBeGreaterThan(10);
    });
  });

  describe('close()', () => {
    it('is idempotent, stops sending, ends the connection and releases its socket', async () => {
      // The previous tests' peers finish closing their sockets first.
      await until(() => udpSockets() === 0, 5000);
      const { relay, leg } = await connectCall();
      expect(udpSockets()).toBe(2); // the leg's ICE socket and the relay's
      await until(() => relay.firstBusinessMediaAt !== undefined);
      await Promise.all([leg.close(), leg.close()]);
      expect(leg.connectionState).toBe('closed');
      const before = relay.stats().packetsReceived;
      await sleep(100);
      expect(relay.stats().packetsReceived).toBe(before);
      await expect(leg.answer('v=0')).rejects.toMatchObject({ code: 'closed' });
      await relay.close();
      await until(() => udpSockets() === 0, 5000);
    });
  });
});
