/**
 * The media bridge wired to the real legs: RelayPeer (Meta) ⇄ WhatsAppLeg (DTLS-SRTP) ⇄
 * MediaBridge ⇄ RtpSession (UDP) ⇄ SipRtpPeer (PBX), on real time. A few end-to-end checks with
 * wide bounds (tones both ways, DTMF, latching, hold, garbage, no leaked handles); the bridge's
 * timing rules are asserted exactly in media-bridge.test.ts, and latencies and hold percentiles
 * are measured by bench/media-bridge.ts.
 */
import { describe, expect, it } from 'vitest';
import { measureTone, trimSilence } from '#simulator/media/audio.ts';
import { RelayPeer } from '#simulator/media/relay-peer.ts';
import { MediaBridge, type MediaBridgeOptions } from '#worker/media/media-bridge.ts';
import { RtpSession } from '#worker/media/rtp-session.ts';
import { parseSipAnswer } from '#worker/media/sip-sdp.ts';
import { WhatsAppLeg } from '#worker/webrtc/whatsapp-leg.ts';
import { closeAfterEach, sleep, until } from '../../helpers/async.ts';
import { type PeerCodec, SipRtpPeer } from './sip-rtp-peer.ts';

const track = closeAfterEach();

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

  const rtp = track(
    await RtpSession.open({ bindAddress: '127.0.0.1', portRange: [41000, 41999], callId: 'bridge-test' }),
  );
  const peer = track(await SipRtpPeer.open(codec));
  const sip = parseSipAnswer(peer.answerSdp(opts.sdpPort?.(peer) ?? peer.port));
  const bridge = track(new MediaBridge({ whatsapp: leg, rtp, sip, callId: 'bridge-test', ...opts.bridge }));
  bridge.start();
  peer.sendTo('127.0.0.1', rtp.port);
  return { relay, leg, rtp, peer, bridge };
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

  it('latches to the source the PBX actually sends from, not the SDP port (RFC 4961)', async () => {
    // The PBX advertises a decoy port but sends from its real socket.
    const decoy = track(await SipRtpPeer.open('PCMU'));
    const { peer, rtp, relay } = await bridgedCall('PCMU', { sdpPort: () => decoy.port });
    relay.playTone(800, -12);
    peer.startTone(1000, -12);
    await until(() => rtp.stats().latched);
    const decoyBefore = decoy.received.length;
    const peerBefore = peer.received.length;
    await until(() => peer.received.length - peerBefore > 15);
    expect(rtp.stats().remote).toEqual({ address: '127.0.0.1', port: peer.port });
    expect(decoy.received.length).toBe(decoyBefore);
  });

  it('on hold keeps WhatsApp receiving packets (the leg’s silence) and stops sending to the PBX; resume restores both', async () => {
    const { peer, relay, bridge } = await bridgedCall('PCMU');
    relay.playTone(800, -12);
    peer.startTone(1000, -12);
    await until(() => peer.audioPackets().length > 5);
    // re-INVITE with a=sendonly; the PBX then goes quiet.
    bridge.updateSip(parseSipAnswer(peer.answerSdp(peer.port, 'sendonly')));
    peer.stop();
    expect(bridge.onHold).toBe(true);
    await sleep(200); // packets already in flight to the PBX land
    const relayBefore = relay.stats().packetsReceived;
    const peerBefore = peer.audioPackets().length;
    await until(() => relay.stats().packetsReceived - relayBefore >= 20);
    expect(peer.audioPackets().length).toBe(peerBefore);

    bridge.updateSip(parseSipAnswer(peer.answerSdp(peer.port, 'sendrecv')));
    peer.startTone(1000, -12);
    expect(bridge.onHold).toBe(false);
    await until(() => peer.audioPackets().length > peerBefore + 10);
  });

  it('drops garbage from the SIP side without throwing and counts it', async () => {
    const { peer, rtp, relay } = await bridgedCall('PCMU');
    peer.startTone(1000, -12);
    await until(() => rtp.stats().latched);
    for (let i = 0; i < 200; i++)
      peer.sendRaw(Buffer.from(Array.from({ length: i % 40 }, (_, k) => (k * 37 + i) & 0xff)));
    peer.sendRaw(Buffer.from([0x80, 200, 0, 1])); // truncated
    await until(() => rtp.stats().packetsRejected > 150);
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
    // Sockets and timers go away asynchronously after close: poll, with a wide deadline.
    await until(() => {
      const after = countResources();
      return (after.UDPWrap ?? 0) <= (before.UDPWrap ?? 0) && (after.Timeout ?? 0) <= (before.Timeout ?? 0);
    }, 5000).catch(() => undefined);
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
