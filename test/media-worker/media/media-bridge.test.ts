import { describe, expect, it } from 'vitest';
import type { RTCPeerConnection } from 'werift';
import { measureTone, trimSilence } from '#simulator/media/audio.ts';
import { RelayPeer } from '#simulator/media/relay-peer.ts';
import { MediaBridge, type MediaBridgeOptions } from '#worker/media/media-bridge.ts';
import { RtpSession } from '#worker/media/rtp-session.ts';
import { parseSipAnswer } from '#worker/media/sip-sdp.ts';
import { OPUS_TICKS_PER_FRAME, opusSilenceFrame, WhatsAppLeg } from '#worker/webrtc/whatsapp-leg.ts';
import { closeAfterEach, sleep, until } from '../../helpers/async.ts';
import { type PeerCodec, SipRtpPeer } from './sip-rtp-peer.ts';

const track = closeAfterEach();

interface WireRtp {
  seq: number;
  ts: number;
  ssrc: number;
  pt: number;
  at: number;
  /** The leg's own silence frame (not audio from the bridge). */
  silence: boolean;
}

/**
 * The whole media path: RelayPeer (Meta) ⇄ WhatsAppLeg ⇄ MediaBridge ⇄
 * RtpSession ⇄ SipRtpPeer (PBX). `sdpPort` lets the PBX advertise a port it
 * does not send from (latching).
 */
async function bridgedCall(
  codec: PeerCodec,
  opts: { sdpPort?: (peer: SipRtpPeer) => number; bridge?: Partial<MediaBridgeOptions> } = {},
) {
  const relay = track(new RelayPeer());
  const leg = track(new WhatsAppLeg({ callId: 'bridge-test' }));
  const offer = await relay.createOffer();
  const answer = await leg.answer(offer);
  leg.startSilence();
  await relay.acceptAnswer(answer);
  await Promise.all([relay.waitForConnected(3000), leg.waitForConnected(3000)]);

  // What reaches the relay on the wire (after SRTP), to check the Meta-side stream.
  const wire: WireRtp[] = [];
  const silence = opusSilenceFrame();
  const relayPc = (relay as unknown as { pc: RTCPeerConnection }).pc;
  relayPc.dtlsTransports[0]?.onRtp.subscribe((rtp) =>
    wire.push({
      seq: rtp.header.sequenceNumber,
      ts: rtp.header.timestamp,
      ssrc: rtp.header.ssrc,
      pt: rtp.header.payloadType,
      at: performance.now(),
      silence: rtp.payload.equals(silence),
    }),
  );

  const rtp = track(
    await RtpSession.open({ bindAddress: '127.0.0.1', portRange: [41000, 41999], callId: 'bridge-test' }),
  );
  const peer = track(await SipRtpPeer.open(codec));
  const sip = parseSipAnswer(peer.answerSdp(opts.sdpPort?.(peer) ?? peer.port));
  const bridge = track(new MediaBridge({ whatsapp: leg, rtp, sip, callId: 'bridge-test', ...opts.bridge }));
  bridge.start();
  peer.sendTo('127.0.0.1', rtp.port);
  return { relay, leg, rtp, peer, bridge, wire };
}

/** Play tones both ways, record 1.5 s at each end, return the measurements. */
async function toneBothWays(call: Awaited<ReturnType<typeof bridgedCall>>) {
  const { relay, peer } = call;
  relay.playTone(800, -12);
  peer.startTone(1000, -12);
  await sleep(400); // let both directions settle
  relay.startRecording();
  peer.startRecording();
  await sleep(1500);
  const atRelay = measureTone(trimSilence(relay.stopRecording(), 48_000), 48_000);
  const atPeer = measureTone(trimSilence(peer.stopRecording(), peer.clockRate), peer.clockRate);
  return { atRelay, atPeer };
}

describe('Class: MediaBridge', () => {
  describe.each<[PeerCodec, 'transcode' | 'passthrough']>([
    ['PCMU', 'transcode'],
    ['PCMA', 'transcode'],
    ['opus', 'passthrough'],
  ])('SIP side %s (%s)', (codec, mode) => {
    it('carries a 1 kHz tone SIP→WhatsApp and an 800 Hz tone WhatsApp→SIP within ±10 Hz and 3 dB', async () => {
      const call = await bridgedCall(codec);
      expect(call.bridge.mode).toBe(mode);
      const { atRelay, atPeer } = await toneBothWays(call);
      console.info(
        `[media-bridge ${codec}/${mode}] at relay ${atRelay.hz.toFixed(1)} Hz ${atRelay.dbfs.toFixed(2)} dBFS; ` +
          `at SIP peer ${atPeer.hz.toFixed(1)} Hz ${atPeer.dbfs.toFixed(2)} dBFS (sent -12 dBFS)`,
      );
      expect(Math.abs(atRelay.hz - 1000)).toBeLessThan(10);
      expect(Math.abs(atRelay.dbfs - -12)).toBeLessThan(3);
      expect(Math.abs(atPeer.hz - 800)).toBeLessThan(10);
      expect(Math.abs(atPeer.dbfs - -12)).toBeLessThan(3);

      const stats = call.bridge.stats();
      expect(stats.whatsappToSip.packetsOut).toBeGreaterThan(50);
      expect(stats.sipToWhatsapp.packetsOut).toBeGreaterThan(50);
      expect(stats.whatsappToSip.lost).toBe(0);
      expect(call.relay.businessSsrcs).toHaveLength(1);
      // Real-time input is never held back or dropped by the passthrough pacing.
      expect(stats.sipToWhatsapp.paced).toBe(0);
      expect(stats.sipToWhatsapp.overflowDropped).toBe(0);
    });

    it('relays DTMF "159#" WhatsApp→SIP (RFC 4733 PT 101) and SIP→WhatsApp (PT 126)', async () => {
      const { relay, peer, bridge } = await bridgedCall(codec);
      relay.playTone(800, -20);
      peer.startTone(1000, -20);
      await until(() => peer.audioPackets().length > 5 && relay.firstBusinessMediaAt !== undefined);
      const digits: string[] = [];
      bridge.onDtmf((d) => digits.push(`${d.direction === 'sip-to-whatsapp' ? '>' : '<'}${d.digit}`));

      await relay.sendDtmf('159#');
      await until(() => peer.digits.length === 4);
      expect(peer.digits).toBe('159#');
      // Each digit: one start with marker, durations in 8 kHz units, 3 end packets.
      const ends = peer.events.filter((e) => e.end);
      expect(ends).toHaveLength(12);
      expect(peer.received.filter((p) => p.pt === 101 && p.marker)).toHaveLength(4);
      expect(Math.max(...ends.map((e) => e.duration))).toBeGreaterThanOrEqual(800);
      // The event timestamp sits on the SIP audio timeline (within 100 ms of the audio around it).
      const firstEvent = peer.events[0]!;
      const audioBefore = peer.audioPackets().filter((p) => p.at <= firstEvent.at);
      const lastAudio = audioBefore[audioBefore.length - 1]!;
      expect(Math.abs(((firstEvent.ts - lastAudio.ts) | 0) / peer.clockRate)).toBeLessThan(0.1);

      await peer.sendDigits('159#');
      await until(() => relay.receivedDigits === '159#');
      expect(digits.join('')).toBe('<1<5<9<#>1>5>9>#');
    });
  });

  it('advances the WhatsApp-side timestamp 960 per 20 ms with one SSRC (transcoding, 8 kHz Opus encoder)', async () => {
    const { peer, wire, bridge } = await bridgedCall('PCMU');
    peer.startTone(1000, -12);
    await sleep(300);
    const from = wire.length;
    await sleep(1000);
    const slice = wire.slice(from).filter((p) => p.pt === 111);
    expect(slice.length).toBeGreaterThan(40);
    expect(new Set(slice.map((p) => p.ssrc)).size).toBe(1);
    for (let i = 1; i < slice.length; i++) {
      expect((slice[i]!.seq - slice[i - 1]!.seq) & 0xffff).toBe(1);
      expect((slice[i]!.ts - slice[i - 1]!.ts) >>> 0).toBe(OPUS_TICKS_PER_FRAME);
    }
    const first = slice[0]!;
    const last = slice[slice.length - 1]!;
    const tsMs = ((last.ts - first.ts) >>> 0) / 48;
    expect(Math.abs(tsMs - (last.at - first.at))).toBeLessThan(60);
    expect(bridge.stats().sipToWhatsapp.underruns).toBeLessThan(5);
  });

  it.each<[number | undefined, number]>([
    [undefined, 160],
    [60, 60],
  ])(
    'passthrough: a backlog flushed after a 1 s stall keeps the WhatsApp timeline within maxJitterMs=%s (%i ms) of real time',
    async (maxJitterMs, bound) => {
      const { peer, wire, bridge, relay } = await bridgedCall('opus', {
        bridge: maxJitterMs === undefined ? {} : { maxJitterMs },
      });
      peer.startTone(1000, -12);
      await sleep(600);
      const stallAt = performance.now();
      // The PBX stops for 1 s, then sends its 50 queued packets back-to-back and carries on.
      const flushed = await peer.stallThenFlush(1000);
      expect(flushed).toBe(50);
      relay.startRecording();
      await sleep(1000);
      const pcm = relay.stopRecording();

      const audio = wire.filter((p) => p.pt === 111);
      const origin = audio[0] as WireRtp;
      // How far a packet's timestamp runs ahead of its arrival on the relay's clock (ms).
      const ahead = (p: WireRtp) => ((p.ts - origin.ts) | 0) / 48 - (p.at - origin.at);
      const steady = audio.filter((p) => p.at > stallAt - 400 && p.at < stallAt);
      const base = Math.max(...steady.map(ahead));
      const after = audio.filter((p) => p.at >= stallAt);
      const maxAhead = Math.max(...after.map(ahead)) - base;
      const endAhead = ahead(after[after.length - 1] as WireRtp) - base;
      const stats = bridge.stats().sipToWhatsapp;
      console.info(
        `[media-bridge opus] 1 s stall + 50-packet flush, bound ${bound} ms: timeline ahead of real time ` +
          `max ${maxAhead.toFixed(1)} ms, at the end ${endAhead.toFixed(1)} ms; paced ${stats.paced}, dropped ${stats.overflowDropped}`,
      );
      // Unpaced, the 50 packets (1 s of audio) would put the timeline ~1 s ahead.
      expect(maxAhead).toBeLessThanOrEqual(bound + 10);
      expect(endAhead).toBeLessThanOrEqual(bound + 10);
      expect(stats.paced).toBeGreaterThan(0);
      expect(stats.overflowDropped).toBeGreaterThan(0);
      // The bridge's hold histogram sees the pacing: queued packets waited for their turn (~a frame each).
      expect(bridge.sipToWhatsappHold.percentile(1)).toBeGreaterThan(5);
      expect(bridge.sipToWhatsappHold.percentile(1)).toBeLessThanOrEqual(bound + 2 * 20);
      // One continuous stream: one SSRC, sequence +1, timestamps moving forward.
      const span = audio.filter((p) => p.at > stallAt - 400);
      expect(new Set(span.map((p) => p.ssrc)).size).toBe(1);
      for (let i = 1; i < span.length; i++) {
        expect((span[i]!.seq - span[i - 1]!.seq) & 0xffff).toBe(1);
        expect((span[i]!.ts - span[i - 1]!.ts) | 0).toBeGreaterThan(0);
      }
      expect(relay.businessSsrcs).toHaveLength(1);
      // The audio after the burst is still the PBX's tone, at the real-time packet rate.
      const m = measureTone(trimSilence(pcm, 48_000), 48_000);
      expect(Math.abs(m.hz - 1000)).toBeLessThan(10);
      expect(after.filter((p) => p.at > stallAt + 1200).length).toBeGreaterThan(30);
    },
  );

  it('transcoding with a 20 ms de-jitter buffer: after a PBX burst, and after an event-loop stall, the depth returns to its target within 2.5 s', async () => {
    const { peer, wire, bridge, relay } = await bridgedCall('PCMU', { bridge: { jitterMs: 20 } });
    peer.startTone(1000, -12);
    await sleep(600);
    const t0 = performance.now();
    const depths: { at: number; depth: number }[] = [];
    const sampler = setInterval(
      () => depths.push({ at: performance.now() - t0, depth: bridge.stats().sipToWhatsapp.bufferedPackets }),
      5,
    );
    relay.startRecording();
    // Burst: the PBX stalls 200 ms, then flushes its 10 queued frames at once. Before the
    // fix the buffer kept them (200 ms of added delay) for the rest of the call.
    await peer.stallThenFlush(200);
    const burstAt = performance.now() - t0;
    await sleep(2600);
    const afterBurst = bridge.stats().sipToWhatsapp.trimmed;
    // Delay: the bridge's event loop blocks for 150 ms; its playout clock skips 7 ticks, and
    // the 7 packets the PBX sent meanwhile arrive together after it. (The PBX peer shares this
    // process, so its stall-and-flush stands in for the packets queued in the socket.)
    const stallAt = performance.now() - t0;
    const flushed = peer.stallThenFlush(150);
    const busyUntil = performance.now() + 150;
    while (performance.now() < busyUntil) {
      // busy
    }
    await flushed;
    await sleep(2600);
    clearInterval(sampler);
    const pcm = relay.stopRecording();
    const stats = bridge.stats().sipToWhatsapp;
    const max = (from: number, to: number) =>
      Math.max(...depths.filter((d) => d.at >= from && d.at < to).map((d) => d.depth));
    const lastHigh = (from: number, to: number) =>
      (depths.filter((d) => d.at >= from && d.at < to && d.depth > 2).at(-1)?.at ?? from) - from;
    console.info(
      `[media-bridge PCMU] de-jitter depth: burst peak ${max(burstAt - 50, stallAt)}, above 2 until +${lastHigh(burstAt - 50, stallAt).toFixed(0)} ms; ` +
        `stall peak ${max(stallAt, Infinity)}, above 2 until +${lastHigh(stallAt, Infinity).toFixed(0)} ms; ` +
        `trimmed ${afterBurst} + ${stats.trimmed - afterBurst}, concealed ${stats.concealed}, underruns ${stats.underruns}`,
    );
    // Target: 1 packet (jitterMs 20). Sampled between ticks, the depth is 0–1 (2 when a
    // packet lands just before a tick).
    expect(max(burstAt - 50, stallAt)).toBeGreaterThan(5);
    expect(afterBurst).toBeGreaterThan(0);
    expect(max(burstAt + 2500, stallAt)).toBeLessThanOrEqual(2);
    // What the skipped ticks should have played is dropped as it arrives: back at once.
    expect(max(stallAt + 250, Infinity)).toBeLessThanOrEqual(2);
    expect(stats.trimmed).toBeGreaterThan(afterBurst);
    // Continuity: one SSRC, sequence +1, timestamps moving forward on the WhatsApp side.
    const audio = wire.filter((p) => p.pt === 111 && p.at > t0);
    expect(new Set(audio.map((p) => p.ssrc)).size).toBe(1);
    for (let i = 1; i < audio.length; i++) {
      expect((audio[i]!.seq - audio[i - 1]!.seq) & 0xffff).toBe(1);
      expect((audio[i]!.ts - audio[i - 1]!.ts) | 0).toBeGreaterThan(0);
    }
    // Still the PBX's tone.
    const m = measureTone(trimSilence(pcm, 48_000), 48_000);
    expect(Math.abs(m.hz - 1000)).toBeLessThan(10);
    expect(Math.abs(m.dbfs - -12)).toBeLessThan(3);
  });

  it('passthrough: a PBX timestamp step (1 s, no time passing) does not throw the WhatsApp timeline ahead', async () => {
    const { peer, wire, bridge } = await bridgedCall('opus');
    peer.startTone(1000, -12);
    await sleep(500);
    const stepAt = performance.now();
    peer.jumpTimestamp(48_000);
    await sleep(500);
    const audio = wire.filter((p) => p.pt === 111);
    const origin = audio[0] as WireRtp;
    const ahead = (p: WireRtp) => ((p.ts - origin.ts) | 0) / 48 - (p.at - origin.at);
    const base = Math.max(...audio.filter((p) => p.at > stepAt - 300 && p.at < stepAt).map(ahead));
    const after = audio.filter((p) => p.at >= stepAt);
    const maxAhead = Math.max(...after.map(ahead)) - base;
    console.info(
      `[media-bridge opus] after a 1 s timestamp step: timeline ahead of real time max ${maxAhead.toFixed(1)} ms`,
    );
    expect(maxAhead).toBeLessThanOrEqual(160 + 10);
    // The step is absorbed, not paid for with audio.
    expect(bridge.stats().sipToWhatsapp.overflowDropped).toBe(0);
    expect(after.length).toBeGreaterThan(20);
    for (let i = 1; i < after.length; i++) expect((after[i]!.seq - after[i - 1]!.seq) & 0xffff).toBe(1);
  });

  it.each(['PCMU', 'opus'] as const)(
    '%s: when the PBX stops sending, the leg’s silence follows within 60 ms (no long hole)',
    async (codec) => {
      const { peer, wire } = await bridgedCall(codec);
      const holes: number[] = [];
      for (let i = 0; i < 3; i++) {
        peer.startTone(1000, -12);
        // Passthrough waits a little longer after recently late packets
        // (call setup): let that estimate settle first.
        await sleep(i === 0 ? 1000 : 300);
        const from = wire.length - 3;
        peer.stop();
        await sleep(300);
        const slice = wire.slice(from).filter((p) => p.pt === 111);
        const k = slice.findIndex((p) => p.silence);
        expect(k).toBeGreaterThan(0);
        holes.push(slice[k]!.at - slice[k - 1]!.at);
      }
      holes.sort((a, b) => a - b);
      console.info(
        `[media-bridge ${codec}] last bridged packet → first leg silence at the relay: ${holes.map((h) => h.toFixed(1)).join(', ')} ms`,
      );
      expect(holes[1]).toBeLessThanOrEqual(60);
    },
  );

  describe('transcoding on arrival (the default: no de-jitter buffer in the bridge)', () => {
    it('encodes each 20 ms as it arrives: nothing waits in the bridge, timestamps step 960', async () => {
      const { relay, peer, bridge, wire } = await bridgedCall('PCMU');
      peer.startTone(1000, -12, { periodMs: 20 });
      await sleep(300);
      const from = wire.length;
      relay.startRecording();
      await sleep(1500);
      const m = measureTone(trimSilence(relay.stopRecording(), 48_000), 48_000);
      expect(Math.abs(m.hz - 1000)).toBeLessThan(10);
      expect(Math.abs(m.dbfs - -12)).toBeLessThan(3);
      const audio = wire.slice(from).filter((p) => p.pt === 111 && !p.silence);
      expect(audio.length).toBeGreaterThan(60);
      for (let i = 1; i < audio.length; i++) expect((audio[i]!.ts - audio[i - 1]!.ts) >>> 0).toBe(OPUS_TICKS_PER_FRAME);
      // Frames leave the bridge in the millisecond their packet arrived (1 ms buckets), measured from the
      // RTP callback to the WhatsApp leg; none waited a frame.
      expect(bridge.sipToWhatsappHold.count).toBeGreaterThan(60);
      expect(bridge.sipToWhatsappHold.percentile(0.99)).toBe(1);
      expect(bridge.sipToWhatsappHold.percentile(1)).toBeLessThan(20);
      expect(bridge.stats().sipToWhatsapp).toMatchObject({ underruns: 0, concealed: 0, bufferedPackets: 0 });
    });

    it.each([30, 10])('re-frames a %i ms PBX into 20 ms Opus frames without a seam', async (ptimeMs) => {
      const { relay, peer, wire } = await bridgedCall('PCMU');
      peer.startTone(1000, -12, { ptimeMs });
      await sleep(300);
      const from = wire.length;
      relay.startRecording();
      await sleep(1500);
      const m = measureTone(trimSilence(relay.stopRecording(), 48_000), 48_000);
      expect(Math.abs(m.hz - 1000)).toBeLessThan(10);
      expect(Math.abs(m.dbfs - -12)).toBeLessThan(3);
      const audio = wire.slice(from).filter((p) => p.pt === 111 && !p.silence);
      expect(audio.length).toBeGreaterThan(60); // 50 frames a second, from 33 or 100 packets a second
      for (let i = 1; i < audio.length; i++) expect((audio[i]!.ts - audio[i - 1]!.ts) >>> 0).toBe(OPUS_TICKS_PER_FRAME);
    });

    it('passes a lost PBX packet on as a timestamp gap WhatsApp conceals, and counts it', async () => {
      const { peer, bridge, wire } = await bridgedCall('PCMU');
      peer.startTone(1000, -12, { lose: (n) => n % 25 === 24 }); // one in 25 lost
      await sleep(300);
      const from = wire.length;
      await sleep(1500);
      const audio = wire.slice(from).filter((p) => p.pt === 111 && !p.silence);
      const steps = audio.slice(1).map((p, i) => (p.ts - audio[i]!.ts) >>> 0);
      expect(steps.filter((d) => d === 2 * OPUS_TICKS_PER_FRAME).length).toBeGreaterThanOrEqual(2);
      expect(steps.every((d) => d === OPUS_TICKS_PER_FRAME || d === 2 * OPUS_TICKS_PER_FRAME)).toBe(true);
      expect(wire.slice(from).filter((p) => p.silence)).toHaveLength(0); // no silence frame in the lost slot
      expect(bridge.stats().sipToWhatsapp.lost).toBeGreaterThanOrEqual(2);
    });
  });

  it.each([
    ['slow', 20.5],
    ['fast', 19.5],
  ] as const)(
    'transcoding with a 20 ms de-jitter buffer: a PBX packet clock 2.5 %% %s against ours keeps the tone whole and the delay bounded',
    async (kind, periodMs) => {
      const { relay, peer, bridge } = await bridgedCall('PCMU', { bridge: { jitterMs: 20 } });
      peer.startTone(1000, -12, { periodMs });
      await sleep(500);
      relay.startRecording();
      await sleep(3000);
      const m = measureTone(trimSilence(relay.stopRecording(), 48_000), 48_000);
      const s = bridge.stats().sipToWhatsapp;
      console.info(`[media-bridge] PBX clock ${kind} (${periodMs} ms): ${JSON.stringify(s)}`);
      expect(Math.abs(m.hz - 1000)).toBeLessThan(10);
      expect(Math.abs(m.dbfs - -12)).toBeLessThan(3);
      expect(s.concealed).toBe(0);
      if (kind === 'slow') {
        // Arrivals slide behind the ticks: each such packet is played as it arrives, not a frame later.
        expect(s.playedOnArrival).toBeGreaterThan(20);
      } else {
        // Arrivals slide ahead of the ticks and the PBX sends ~2 % more than is played: the buffer does not
        // grow, because surplus packets are trimmed and/or the ticks are moved up behind the arrivals
        // (which of the two depends on the phase the call started with).
        expect(s.trimmed + s.rephased).toBeGreaterThan(0);
        expect(s.bufferedPackets).toBeLessThanOrEqual(2);
      }
    },
  );

  it('measures the one-way latency SIP→WhatsApp (tone onset at the peer → audible at the relay)', async () => {
    for (const codec of ['PCMU', 'opus'] as const) {
      const { relay, peer } = await bridgedCall(codec);
      await until(() => relay.firstBusinessMediaAt !== undefined);
      await sleep(200);
      const sentAt = Date.now();
      peer.startTone(1000, -12);
      await until(() => relay.firstAudibleBusinessMediaAt !== undefined);
      const latency = (relay.firstAudibleBusinessMediaAt as number) - sentAt;
      console.info(
        `[media-bridge ${codec}] SIP tone onset → audible at relay: ${latency} ms (includes 20 ms send tick)`,
      );
      expect(latency).toBeLessThan(codec === 'opus' ? 60 : 100);
      await track.closeAll();
    }
  });

  it('latches to the source the PBX actually sends from, not the SDP port (RFC 4961)', async () => {
    // The PBX advertises a decoy port but sends from its real socket.
    const decoy = track(await SipRtpPeer.open('PCMU'));
    const { peer, rtp, relay } = await bridgedCall('PCMU', { sdpPort: () => decoy.port });
    relay.playTone(800, -12);
    peer.startTone(1000, -12);
    await until(() => rtp.stats().latched);
    const decoyBefore = decoy.received.length;
    const peerBefore = peer.received.length;
    await sleep(500);
    expect(rtp.stats().remote).toEqual({ address: '127.0.0.1', port: peer.port });
    expect(peer.received.length - peerBefore).toBeGreaterThan(15);
    expect(decoy.received.length).toBe(decoyBefore);
  });

  it.each(['PCMU', 'opus'] as const)(
    '%s: on hold keeps WhatsApp receiving packets and stops sending to the PBX; resume restores both',
    async (codec) => {
      const { peer, relay, bridge } = await bridgedCall(codec);
      relay.playTone(800, -12);
      peer.startTone(1000, -12);
      await sleep(300);
      // re-INVITE with a=sendonly; the PBX then goes quiet.
      bridge.updateSip(parseSipAnswer(peer.answerSdp(peer.port, 'sendonly')));
      peer.stop();
      expect(bridge.onHold).toBe(true);
      await sleep(200);
      const relayBefore = relay.stats().packetsReceived;
      const peerBefore = peer.audioPackets().length;
      await sleep(1000);
      expect(relay.stats().packetsReceived - relayBefore).toBeGreaterThanOrEqual(40);
      expect(peer.audioPackets().length).toBe(peerBefore);

      bridge.updateSip(parseSipAnswer(peer.answerSdp(peer.port, 'sendrecv')));
      peer.startTone(1000, -12);
      await sleep(300);
      expect(bridge.onHold).toBe(false);
      expect(peer.audioPackets().length).toBeGreaterThan(peerBefore + 10);
    },
  );

  it('keeps the SIP stream continuous from early media (183) into the answer (200 OK)', async () => {
    const { peer, relay, bridge } = await bridgedCall('PCMU');
    relay.playTone(800, -12);
    peer.startTone(1000, -12);
    await sleep(400);
    // The 200 OK repeats the 183's SDP with a new o= version: same stream.
    bridge.updateSip(parseSipAnswer(peer.answerSdp(peer.port)));
    await sleep(400);
    const audio = peer.audioPackets();
    expect(new Set(audio.map((p) => p.ssrc)).size).toBe(1);
    for (let i = 1; i < audio.length; i++) {
      expect((audio[i]!.seq - audio[i - 1]!.seq) & 0xffff).toBe(1);
      expect((audio[i]!.ts - audio[i - 1]!.ts) >>> 0).toBe(160);
    }
    expect(audio.filter((p) => p.marker)).toHaveLength(1);
  });

  it('drops garbage from the SIP side without throwing and counts it', async () => {
    const { peer, rtp, relay } = await bridgedCall('PCMU');
    peer.startTone(1000, -12);
    await until(() => rtp.stats().latched);
    for (let i = 0; i < 200; i++)
      peer.sendRaw(Buffer.from(Array.from({ length: i % 40 }, (_, k) => (k * 37 + i) & 0xff)));
    peer.sendRaw(Buffer.from([0x80, 200, 0, 1])); // truncated
    await sleep(200);
    expect(rtp.stats().packetsRejected).toBeGreaterThan(150);
    expect(relay.connectionState).toBe('connected');
  });

  it('close() releases timers and sockets: no handles left open', async () => {
    await sleep(300); // let earlier tests' sockets finish closing
    const before = countResources();
    const call = await bridgedCall('PCMU');
    call.peer.startTone(1000, -12);
    call.relay.playTone(800, -12);
    await sleep(500);
    await Promise.all([call.bridge.close(), call.bridge.close()]);
    await track.closeAll();
    await sleep(100);
    const after = countResources();
    console.info('[media-bridge] active resources before/after a call:', JSON.stringify(before), JSON.stringify(after));
    expect(after.UDPWrap ?? 0).toBe(before.UDPWrap ?? 0);
    expect(after.Timeout ?? 0).toBeLessThanOrEqual(before.Timeout ?? 0);
  });
});

function countResources(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}
