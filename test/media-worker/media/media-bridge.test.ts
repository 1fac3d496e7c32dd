import { afterEach, describe, expect, it } from 'vitest';
import type { RTCPeerConnection } from 'werift';
import { MediaBridge } from '../../../media-worker/src/media/media-bridge.ts';
import { RtpSession } from '../../../media-worker/src/media/rtp-session.ts';
import { parseSipAnswer } from '../../../media-worker/src/media/sip-sdp.ts';
import { OPUS_TICKS_PER_FRAME, WhatsAppLeg } from '../../../media-worker/src/webrtc/whatsapp-leg.ts';
import { measureTone, trimSilence } from '../../../meta-simulator/media/audio.ts';
import { RelayPeer } from '../../../meta-simulator/media/relay-peer.ts';
import { type PeerCodec, SipRtpPeer } from './sip-rtp-peer.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(10);
  }
}

const open: { close(): Promise<void> }[] = [];
function track<T extends { close(): Promise<void> }>(x: T): T {
  open.push(x);
  return x;
}
afterEach(async () => {
  // Bridge first, then legs, in reverse creation order.
  for (const x of open.splice(0).reverse()) await x.close();
});

interface WireRtp {
  seq: number;
  ts: number;
  ssrc: number;
  pt: number;
  at: number;
}

/**
 * The whole media path: RelayPeer (Meta) ⇄ WhatsAppLeg ⇄ MediaBridge ⇄
 * RtpSession ⇄ SipRtpPeer (PBX). `sdpPort` lets the PBX advertise a port it
 * does not send from (latching).
 */
async function bridgedCall(codec: PeerCodec, opts: { sdpPort?: (peer: SipRtpPeer) => number } = {}) {
  const relay = track(new RelayPeer());
  const leg = track(new WhatsAppLeg({ callId: 'bridge-test' }));
  const offer = await relay.createOffer();
  const answer = await leg.answer(offer);
  leg.startSilence();
  await relay.acceptAnswer(answer);
  await Promise.all([relay.waitForConnected(3000), leg.waitForConnected(3000)]);

  // What reaches the relay on the wire (after SRTP), to check the Meta-side stream.
  const wire: WireRtp[] = [];
  const relayPc = (relay as unknown as { pc: RTCPeerConnection }).pc;
  relayPc.dtlsTransports[0]?.onRtp.subscribe((rtp) =>
    wire.push({
      seq: rtp.header.sequenceNumber,
      ts: rtp.header.timestamp,
      ssrc: rtp.header.ssrc,
      pt: rtp.header.payloadType,
      at: performance.now(),
    }),
  );

  const rtp = track(
    await RtpSession.open({ bindAddress: '127.0.0.1', portRange: [41000, 41999], callId: 'bridge-test' }),
  );
  const peer = track(await SipRtpPeer.open(codec));
  const sip = parseSipAnswer(peer.answerSdp(opts.sdpPort?.(peer) ?? peer.port));
  const bridge = track(new MediaBridge({ whatsapp: leg, rtp, sip, callId: 'bridge-test' }));
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
      for (const x of open.splice(0).reverse()) await x.close();
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
    for (const x of open.splice(0).reverse()) await x.close();
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
