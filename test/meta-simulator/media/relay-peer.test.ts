import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import sdpTransform from 'sdp-transform';
import { describe, expect, it } from 'vitest';
import { classes, Message, methods, parseMessage } from 'werift';
import { measureTone, ToneGenerator, trimSilence } from '#simulator/media/audio.ts';
import { RELAY_IPV6_CANDIDATE, RelayPeer, RelayPeerError } from '#simulator/media/relay-peer.ts';
import { validateBusinessSdp } from '#simulator/media/sdp-validation.ts';
import { closeAfterEach, sleep, until as untilWithin } from '../../helpers/async.ts';
import { BusinessWebRtcPeer } from '../../helpers/business-webrtc-peer.ts';

const track = closeAfterEach();
/** Polls with this file's 2000 ms default bound. */
const until = (cond: () => boolean, timeoutMs = 2000) => untilWithin(cond, timeoutMs);

/** User-initiated call: Meta (relay) offers, the business answers, both connect. */
async function connectUserInitiatedCall(mutateAnswer: (sdp: string) => string = (s) => s) {
  const relay = track(new RelayPeer());
  const business = track(new BusinessWebRtcPeer());
  const started = Date.now();
  const offer = await relay.createOffer();
  const answer = mutateAnswer(await business.answer(offer));
  await relay.acceptAnswer(answer);
  await Promise.all([relay.waitForConnected(3000), business.waitForConnected(3000)]);
  return { relay, business, offer, answer, connectMs: Date.now() - started };
}

describe('RelayPeer', () => {
  describe('offer for a user-initiated call', () => {
    it("looks like Meta's: ICE-lite, an IPv4 and an IPv6 host candidate on one port, a '/' ufrag, actpass, one sha-256 fingerprint, Opus 111 + telephone-event/8000 126", async () => {
      const relay = track(new RelayPeer());
      const offer = await relay.createOffer();
      const sdp = sdpTransform.parse(offer);
      const m = sdp.media[0];

      expect(sdp.icelite).toBe('ice-lite');
      expect(sdp.media).toHaveLength(1);
      expect(m?.type).toBe('audio');
      expect(m?.protocol).toBe('UDP/TLS/RTP/SAVPF');
      expect(m?.payloads).toBe('111 126');
      // REF26 (§5.1): one IPv4 and one IPv6 host candidate on the same port, with Meta's extensions; the IPv6
      // one is a documentation address nobody reaches, so connectivity comes through IPv4.
      expect(m?.candidates).toHaveLength(2);
      expect(m?.candidates?.[0]).toMatchObject({ ip: '127.0.0.1', type: 'host', transport: 'udp' });
      expect(m?.candidates?.[1]).toMatchObject({ ip: RELAY_IPV6_CANDIDATE, type: 'host', transport: 'udp' });
      expect(m?.port).toBe(m?.candidates?.[0]?.port);
      expect(m?.candidates?.[1]?.port).toBe(m?.port);
      for (const line of offer.match(/^a=candidate:.*$/gm) ?? []) {
        expect(line).toMatch(new RegExp(` typ host generation 0 network-cost 50 ufrag ${m?.iceUfrag}$`));
      }
      expect(m?.iceUfrag).toMatch(/^[A-Za-z0-9]{12}\/2$/);
      expect(m?.setup).toBe('actpass');
      expect(offer.match(/^a=fingerprint:sha-256 /gm)).toHaveLength(1);
      expect(offer).toContain('a=rtpmap:111 opus/48000/2');
      expect(offer).toContain('a=fmtp:111 minptime=10;useinbandfec=1');
      expect(offer).toContain('a=rtpmap:126 telephone-event/8000');
      expect(offer).toContain('a=ptime:20');
      expect(offer).toContain('a=rtcp-mux');
      expect(sdp.groups?.[0]).toEqual({ type: 'BUNDLE', mids: 'audio' });
      expect(new Set(m?.ssrcs?.map((s) => s.id)).size).toBe(1);
      expect(offer).not.toContain('a=ice-options:trickle');
      // The relay's own offer passes the checks Meta applies to business offers.
      expect(validateBusinessSdp(offer, { type: 'offer' })).toEqual({ ok: true });
    });
  });

  describe('connectivity', () => {
    it('connects in < 3 s to a business that is full-ICE controlling and the DTLS client (setup:active)', async () => {
      const { relay, business, answer, connectMs } = await connectUserInitiatedCall();
      expect(connectMs).toBeLessThan(3000);
      expect(relay.connectionState).toBe('connected');
      expect(answer).toMatch(/^a=setup:active/m);
      expect(business.pc.iceTransports[0]?.role).toBe('controlling');
      expect(business.pc.dtlsTransports[0]?.role).toBe('client');
      const pair = business.pc.iceTransports[0]?.getSelectedCandidatePair();
      expect(pair?.remote.candidate).toContain('127.0.0.1');
      expect(pair?.remote.usernameFragment).toContain('/');
    });

    it('also honours a setup:passive answer by becoming the DTLS client (RFC 5763 §5)', async () => {
      const relay = track(new RelayPeer());
      const business = track(new BusinessWebRtcPeer({ dtlsRole: 'server' }));
      const answer = await business.answer(await relay.createOffer());
      expect(answer).toMatch(/^a=setup:passive/m);
      await relay.acceptAnswer(answer);
      await Promise.all([relay.waitForConnected(3000), business.waitForConnected(3000)]);
      expect(business.pc.dtlsTransports[0]?.role).toBe('server');
      business.startTone(1000, -20);
      await until(() => relay.stats().packetsReceived > 5);
    });

    it('accepts an answer with no candidates (Meta learns the business address peer-reflexively)', async () => {
      const { relay } = await connectUserInitiatedCall((sdp) =>
        sdp
          .split('\r\n')
          .filter((l) => !l.startsWith('a=candidate:') && l !== 'a=end-of-candidates')
          .join('\r\n'),
      );
      expect(relay.connectionState).toBe('connected');
    });

    /** Send one raw STUN Binding request to the relay's candidate; resolve the parsed reply or undefined. */
    async function stunCheck(
      offer: string,
      opts: { role: 'ICE-CONTROLLING' | 'ICE-CONTROLLED'; password?: string; ufrag?: string },
    ): Promise<Message | undefined> {
      const m = sdpTransform.parse(offer).media[0];
      const request = new Message(methods.BINDING, classes.REQUEST)
        .setAttribute('USERNAME', `${opts.ufrag ?? (m?.iceUfrag as string)}:bizz`)
        .setAttribute('PRIORITY', 1853817087)
        .setAttribute(opts.role, BigInt(`0x${randomBytes(8).toString('hex')}`))
        .addMessageIntegrity(Buffer.from(opts.password ?? (m?.icePwd as string), 'utf8'))
        .addFingerprint();
      const socket = createSocket('udp4');
      try {
        const reply = new Promise<Buffer>((resolve) => socket.once('message', (msg) => resolve(msg)));
        socket.send(request.bytes, m?.candidates?.[0]?.port as number, '127.0.0.1');
        const bytes = await Promise.race([reply, sleep(500).then(() => undefined)]);
        return bytes ? parseMessage(bytes) : undefined;
      } finally {
        socket.close();
      }
    }

    it('answers a check from an address not in any SDP (peer-reflexive) when MESSAGE-INTEGRITY is valid', async () => {
      const relay = track(new RelayPeer());
      const response = await stunCheck(await relay.createOffer(), { role: 'ICE-CONTROLLING' });
      expect(response?.messageClass).toBe(classes.RESPONSE);
      expect(response?.getAttributeValue('XOR-MAPPED-ADDRESS')?.[0]).toBe('127.0.0.1');
    });

    it('ignores checks with a wrong password (MESSAGE-INTEGRITY) or addressed to another ufrag', async () => {
      const relay = track(new RelayPeer());
      const offer = await relay.createOffer();
      expect(await stunCheck(offer, { role: 'ICE-CONTROLLING', password: 'not-the-ice-pwd-at-all' })).toBeUndefined();
      expect(await stunCheck(offer, { role: 'ICE-CONTROLLING', ufrag: 'someoneElse/2' })).toBeUndefined();
    });

    it('answers 487 Role Conflict to a check that claims the controlled role (it is ICE-lite, RFC 8445 §6.1.1)', async () => {
      const relay = track(new RelayPeer());
      const response = await stunCheck(await relay.createOffer(), { role: 'ICE-CONTROLLED' });
      expect(response?.messageClass).toBe(classes.ERROR);
      expect(response?.getAttributeValue('ERROR-CODE')?.[0]).toBe(487);
    });

    it('rejects an answer Meta would reject, with the validation details', async () => {
      const relay = track(new RelayPeer());
      const business = track(new BusinessWebRtcPeer());
      const answer = await business.answer(await relay.createOffer());
      const doubled = answer.replace(/^(a=fingerprint:.*)$/m, '$1\r\na=fingerprint:sha-384 AB:CD');
      const err = await relay.acceptAnswer(doubled).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RelayPeerError);
      expect(err).toMatchObject({ code: 'invalid-sdp', details: expect.stringMatching(/exactly one fingerprint/) });
    });
  });

  describe('media', () => {
    it("sends nothing before the business's maiden packet, then 20 ms Opus frames on one SSRC", async () => {
      const { relay, business } = await connectUserInitiatedCall();
      relay.playTone(1000, -12);
      await sleep(400);
      expect(business.received).toHaveLength(0);
      expect(relay.stats().packetsSent).toBe(0);
      expect(relay.firstBusinessMediaAt).toBeUndefined();

      const maidenAt = Date.now();
      business.sendOneSilentFrame();
      await until(() => business.received.length >= 10);
      expect(relay.firstBusinessMediaAt).toBeGreaterThanOrEqual(maidenAt);
      // Promptly after the maiden packet (frames are 20 ms apart; a wide bound for a loaded machine).
      expect((business.received[0]?.at ?? 0) - maidenAt).toBeLessThan(1000);
      const audio = business.received.slice(0, 10);
      expect(new Set(audio.map((p) => p.ssrc)).size).toBe(1);
      expect(audio.every((p) => p.payloadType === 111)).toBe(true);
      for (let i = 1; i < audio.length; i++) {
        expect(((audio[i]?.timestamp ?? 0) - (audio[i - 1]?.timestamp ?? 0)) >>> 0).toBe(960);
        expect(((audio[i]?.sequenceNumber ?? 0) - (audio[i - 1]?.sequenceNumber ?? 0)) & 0xffff).toBe(1);
      }
      expect(audio[0]?.marker).toBe(true);
    });

    it("records the business's 1 kHz tone at 48 kHz", async () => {
      const { relay, business } = await connectUserInitiatedCall();
      relay.startRecording();
      business.startTone(1000, -12);
      await sleep(1200);
      business.stopSending();
      const pcm = trimSilence(relay.stopRecording(), 48_000);
      expect(pcm.length).toBeGreaterThan(48_000 * 0.8);
      const tone = measureTone(pcm, 48_000);
      expect(tone.hz).toBeGreaterThan(990);
      expect(tone.hz).toBeLessThan(1010);
      expect(Math.abs(tone.dbfs - -12)).toBeLessThan(2);
      expect(relay.lastBusinessMediaAt).toBeGreaterThanOrEqual(relay.firstBusinessMediaAt ?? Infinity);
      expect(relay.firstAudibleBusinessMediaAt).toBeDefined();
      expect(relay.stats().packetsReceived).toBeGreaterThan(40);
      expect(relay.businessSsrcs).toEqual([business.pc.getTransceivers()[0]?.sender.ssrc]);
    });

    it('plays a tone back that the business decodes and measures', async () => {
      const { relay, business } = await connectUserInitiatedCall();
      relay.playTone(440, -6);
      business.startRecording();
      business.startTone(1000, -30); // the business's media also unlocks the relay's
      await sleep(1200);
      const pcm = trimSilence(business.stopRecording(), 48_000);
      expect(pcm.length).toBeGreaterThan(48_000 * 0.8);
      const tone = measureTone(pcm, 48_000);
      expect(tone.hz).toBeGreaterThan(430);
      expect(tone.hz).toBeLessThan(450);
      expect(Math.abs(tone.dbfs - -6)).toBeLessThan(2);
    });
  });

  describe('audio sources', () => {
    it('plays a PCM buffer once, then silence', async () => {
      const { relay, business } = await connectUserInitiatedCall();
      const gen = new ToneGenerator(700, -9);
      const tone = new Int16Array(30 * 960);
      for (let i = 0; i < 30; i++) tone.set(gen.nextFrame(), i * 960);
      relay.playPcm(tone);
      business.startRecording();
      business.sendOneSilentFrame();
      await sleep(1000);
      const pcm = business.stopRecording();
      const audible = trimSilence(pcm, 48_000);
      // 30 frames = 600 ms of tone (Opus adds a few ms of decoder ramp).
      expect(audible.length / 48).toBeGreaterThan(560);
      expect(audible.length / 48).toBeLessThan(660);
      expect(Math.abs(measureTone(audible, 48_000).hz - 700)).toBeLessThan(10);
    });

    it('keeps sending (silent) packets after playSilence, as a live call does', async () => {
      const { relay, business } = await connectUserInitiatedCall();
      relay.playTone(1000, -6);
      relay.playSilence();
      business.startRecording();
      business.sendOneSilentFrame();
      await sleep(500);
      expect(business.received.length).toBeGreaterThan(15);
      expect(trimSilence(business.stopRecording(), 48_000)).toHaveLength(0);
    });
  });

  describe('G.711 (audio.additional_codecs)', () => {
    it('with allowG711, offers PCMU/PCMA after Opus and carries µ-law audio both ways with a PCMU-only business', async () => {
      const relay = track(new RelayPeer({ allowG711: true }));
      const business = track(new BusinessWebRtcPeer({ audioCodec: 'pcmu' }));
      const offer = await relay.createOffer();
      expect(sdpTransform.parse(offer).media[0]?.payloads).toBe('111 0 8 126');
      const answer = await business.answer(offer);
      expect(sdpTransform.parse(answer).media[0]?.payloads).toBe('0 126');
      await relay.acceptAnswer(answer);
      await Promise.all([relay.waitForConnected(3000), business.waitForConnected(3000)]);

      relay.startRecording();
      business.startRecording();
      relay.playTone(440, -10);
      business.startTone(1000, -12);
      await sleep(1000);
      const atRelay = measureTone(trimSilence(relay.stopRecording(), 48_000), 48_000);
      const atBusiness = measureTone(trimSilence(business.stopRecording(), 8000), 8000);
      expect(Math.abs(atRelay.hz - 1000)).toBeLessThan(10);
      expect(Math.abs(atBusiness.hz - 440)).toBeLessThan(10);
      expect(business.received.every((p) => p.payloadType === 0)).toBe(true);
      const [a, b] = business.received;
      expect(((b?.timestamp ?? 0) - (a?.timestamp ?? 0)) >>> 0).toBe(160);
    });

    it('without allowG711, offers Opus only', async () => {
      const relay = track(new RelayPeer());
      expect(sdpTransform.parse(await relay.createOffer()).media[0]?.payloads).toBe('111 126');
    });
  });

  describe('DTMF (RFC 4733, telephone-event/8000 on PT 126)', () => {
    it('sends "159#" as events the business decodes: marker on start, 3 end packets, one timestamp per event, shared sequence space', async () => {
      const { relay, business } = await connectUserInitiatedCall();
      business.sendOneSilentFrame();
      await relay.sendDtmf('159#', { durationMs: 100, gapMs: 60 });
      await sleep(100);
      expect(business.digits).toBe('159#');
      expect(relay.stats().dtmfSent).toBe(4);

      const events = business.received.filter((p) => p.payloadType === 126);
      const byTimestamp = new Map<number, typeof events>();
      for (const p of events) byTimestamp.set(p.timestamp, [...(byTimestamp.get(p.timestamp) ?? []), p]);
      expect(byTimestamp.size).toBe(4);
      for (const packets of byTimestamp.values()) {
        expect(packets[0]?.marker).toBe(true);
        const ends = packets.filter((p) => ((p.payload[1] ?? 0) & 0x80) !== 0);
        expect(ends).toHaveLength(3);
        // 100 ms in 8 kHz units.
        expect(ends.every((p) => p.payload.readUInt16BE(2) === 800)).toBe(true);
      }
      // Events and audio share one SSRC and one gap-free sequence space.
      const all = business.received;
      expect(new Set(all.map((p) => p.ssrc)).size).toBe(1);
      for (let i = 1; i < all.length; i++) {
        expect(((all[i]?.sequenceNumber ?? 0) - (all[i - 1]?.sequenceNumber ?? 0)) & 0xffff).toBe(1);
      }
    });

    it("receives the business's DTMF into receivedDigits and onDtmf, once per event", async () => {
      const { relay, business } = await connectUserInitiatedCall();
      const heard: string[] = [];
      relay.onDtmf((d) => heard.push(d));
      for (const d of '7*0') await business.sendDtmfDigit(d);
      await until(() => relay.receivedDigits.length >= 3);
      await sleep(100);
      expect(relay.receivedDigits).toBe('7*0');
      expect(heard).toEqual(['7', '*', '0']);
      expect(relay.stats().dtmfReceived).toBe(3);
    });
  });

  describe('business-initiated call (answerOffer)', () => {
    it('answers ICE-lite with setup:active to an actpass offer, and media flows both ways', async () => {
      const relay = track(new RelayPeer());
      const business = track(new BusinessWebRtcPeer());
      const offer = await business.createOffer();
      expect(offer).toMatch(/^a=setup:actpass/m);
      const answer = await relay.answerOffer(offer);
      expect(answer).toMatch(/^a=ice-lite/m);
      expect(answer).toMatch(/^a=setup:active/m);
      expect(answer.match(/^a=candidate:/gm)).toHaveLength(2);
      expect(validateBusinessSdp(answer, { type: 'answer' })).toEqual({ ok: true });
      await business.applyAnswer(answer);
      await Promise.all([relay.waitForConnected(3000), business.waitForConnected(3000)]);
      expect(business.pc.iceTransports[0]?.role).toBe('controlling');
      expect(business.pc.dtlsTransports[0]?.role).toBe('server');

      relay.startRecording();
      business.startRecording();
      relay.playTone(600, -10);
      business.startTone(1000, -12);
      // The user's phone rings: the business's media arrives, but no user audio goes back before pickup.
      await until(() => relay.stats().packetsReceived > 10, 3000);
      expect(business.received).toHaveLength(0);
      expect(relay.firstUserMediaSentAt).toBeUndefined();
      relay.startUserMedia();
      await sleep(1000);
      const atRelay = measureTone(trimSilence(relay.stopRecording(), 48_000), 48_000);
      const atBusiness = measureTone(trimSilence(business.stopRecording(), 48_000), 48_000);
      expect(Math.abs(atRelay.hz - 1000)).toBeLessThan(10);
      expect(Math.abs(atBusiness.hz - 600)).toBeLessThan(10);
    });

    it('honours setup:active in the offer by answering setup:passive', async () => {
      const relay = track(new RelayPeer());
      const business = track(new BusinessWebRtcPeer());
      const offer = (await business.createOffer()).replace('a=setup:actpass', 'a=setup:active');
      const answer = await relay.answerOffer(offer);
      expect(answer).toMatch(/^a=setup:passive/m);
      await business.applyAnswer(answer);
      await Promise.all([relay.waitForConnected(3000), business.waitForConnected(3000)]);
      expect(business.pc.dtlsTransports[0]?.role).toBe('client');
    });

    it('answers a browser-style offer with telephone-event/8000 even when /48000 is listed first', async () => {
      const relay = track(new RelayPeer());
      const offer = readFileSync(new URL('../../fixtures/sdp/business-offer-browser.sdp', import.meta.url), 'utf8');
      const answer = await relay.answerOffer(offer);
      expect(sdpTransform.parse(answer).media[0]?.payloads).toBe('111 126');
      expect(answer).toContain('a=rtpmap:126 telephone-event/8000');
      expect(validateBusinessSdp(answer, { type: 'answer' })).toEqual({ ok: true });
    });

    it('rejects an offer with telephone-event only at 48 kHz', async () => {
      const relay = track(new RelayPeer());
      const business = track(new BusinessWebRtcPeer());
      const offer = (await business.createOffer()).replace('telephone-event/8000', 'telephone-event/48000');
      await expect(relay.answerOffer(offer)).rejects.toMatchObject({
        name: 'RelayPeerError',
        code: 'invalid-sdp',
        details: expect.stringContaining('telephone-event'),
      });
    });
  });

  describe('close()', () => {
    it('is idempotent and reports closed', async () => {
      const { relay } = await connectUserInitiatedCall();
      const states: string[] = [];
      relay.onConnectionStateChange((s) => states.push(s));
      await Promise.all([relay.close(), relay.close()]);
      await relay.close();
      expect(relay.connectionState).toBe('closed');
      expect(states).toEqual(['closed']);
      await expect(relay.sendDtmf('1')).rejects.toMatchObject({ code: 'closed' });
    });

    it('releases sockets and timers: a process that connects and closes 20 relays exits on its own', async () => {
      const script = fileURLToPath(new URL('./fixtures/close-twenty-relays.ts', import.meta.url));
      const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      /** When the script reported everything closed: only what comes after counts, not its (load-dependent) set-up. */
      let closedAt: number | undefined;
      const collect = (d: Buffer) => {
        out += d.toString();
        if (closedAt === undefined && out.includes('closed 20')) closedAt = Date.now();
      };
      child.stdout.on('data', collect);
      child.stderr.on('data', collect);
      const code = await new Promise<number | null>((resolve) => {
        const killer = setTimeout(() => child.kill('SIGKILL'), 50_000);
        child.on('exit', (c) => {
          clearTimeout(killer);
          resolve(c);
        });
      });
      expect(out).toContain('closed 20');
      expect(code).toBe(0);
      // Nothing left should hold the process once everything is closed: it exits right after its last line
      // (a lingering socket would hold it to the kill; a forgotten timer for as long as the timer runs).
      expect(Date.now() - (closedAt as number)).toBeLessThan(5_000);
    }, 60_000);
  });
});
