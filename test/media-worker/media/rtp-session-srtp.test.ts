/**
 * The SIP leg's RTP session with SDES-SRTP (RFC 4568 keys, RFC 3711 packets) over real loopback
 * sockets: the PBX side is plain sockets protected with werift's SRTP/SRTCP sessions, an
 * implementation that shares no code with ours. Timing is on a ManualClock; the sockets only wire.
 */
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { RtpHeader, RtpPacket, SrtcpSession, SrtpSession } from 'werift';
import { ManualClock } from '#core/clock.ts';
import { buildRtcpReport, parseRtcp } from '#worker/media/rtcp.ts';
import { writeRtp } from '#worker/media/rtp.ts';
import { RtpSession } from '#worker/media/rtp-session.ts';
import { until } from '../../helpers/async.ts';

const open: { close(): Promise<void> | void }[] = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close();
});

type Udp = Socket & { received: Buffer[] };

async function bindUdp(port: number): Promise<Udp | undefined> {
  return new Promise((resolve) => {
    const s = createSocket('udp4') as Udp;
    s.received = [];
    s.on('message', (m) => s.received.push(m));
    s.once('error', () => {
      s.close();
      resolve(undefined);
    });
    s.bind(port, '127.0.0.1', () => {
      open.push({ close: () => new Promise<void>((r) => s.close(() => r())) });
      resolve(s);
    });
  });
}

/** A PBX's RTP socket on an even port and its RTCP socket on the next one. */
async function pbxSockets(): Promise<{ rtp: Udp; rtcp: Udp }> {
  for (let port = 43_400; port < 43_600; port += 2) {
    const rtp = await bindUdp(port);
    if (!rtp) continue;
    const rtcp = await bindUdp(port + 1);
    if (rtcp) return { rtp, rtcp };
  }
  throw new Error('no free port pair');
}

/** A PBX speaking SDES-SRTP with werift's SRTP: `key` its own master key ‖ salt, `ours` the bridge's. */
function weriftPbx(key: Buffer, ours: Buffer) {
  const keys = {
    localMasterKey: key.subarray(0, 16),
    localMasterSalt: key.subarray(16),
    remoteMasterKey: ours.subarray(0, 16),
    remoteMasterSalt: ours.subarray(16),
  };
  return { srtp: new SrtpSession({ profile: 1, keys }), srtcp: new SrtcpSession({ profile: 1, keys }) };
}

function plainRtp(seq: number, payload: Buffer, ssrc = 0x5150): Buffer {
  const buf = Buffer.alloc(12 + payload.length);
  writeRtp(buf, 0, false, seq, seq * 160, ssrc, payload);
  return buf;
}

describe('RtpSession with SDES-SRTP', () => {
  it('sends SRTP the PBX decrypts with our key and hands on the audio of the SRTP the PBX sends', async () => {
    const clock = new ManualClock();
    const session = await RtpSession.open({ portRange: [42500, 42599], clock });
    open.push(session);
    const pbx = await pbxSockets();
    const ours = randomBytes(30);
    const theirs = randomBytes(30);
    const peer = weriftPbx(theirs, ours);
    session.setRemote('127.0.0.1', pbx.rtp.address().port);
    session.useSrtp({ local: ours, remote: theirs });

    const heard: Buffer[] = [];
    session.onPacket((p) => heard.push(Buffer.from(p.payload)));
    const sent = Array.from({ length: 5 }, () => randomBytes(160));
    sent.forEach((payload, i) => {
      session.send(0, i * 160, payload);
    });
    const from = Array.from({ length: 5 }, () => randomBytes(160));
    from.forEach((payload, i) => {
      pbx.rtp.send(peer.srtp.encrypt(payload, rtpHeader(i + 1)), session.port, '127.0.0.1');
    });

    await until(() => pbx.rtp.received.length === 5 && heard.length === 5, 3000, { what: 'five packets each way' });
    // On the wire: encrypted payloads with the 10-byte tag (RFC 3711 §4.2, HMAC-SHA1-80).
    for (const [i, wire] of pbx.rtp.received.entries()) {
      expect(wire.length).toBe(12 + 160 + 10);
      expect(wire.subarray(12, 172).equals(sent[i] as Buffer)).toBe(false);
      expect(RtpPacket.deSerialize(peer.srtp.decrypt(wire)).payload.equals(sent[i] as Buffer)).toBe(true);
    }
    expect(heard.map((b) => b.toString('hex'))).toEqual(from.map((b) => b.toString('hex')));
    expect(session.stats()).toMatchObject({
      packetsReceived: 5,
      latched: true,
      srtp: { rtpRejected: 0, rtcpRejected: 0 },
    });
  });

  it('drops and counts plain RTP, a wrong key, tampering and replays, and latches only to authenticated packets', async () => {
    const session = await RtpSession.open({ portRange: [42600, 42699], clock: new ManualClock() });
    open.push(session);
    const pbx = await pbxSockets();
    const intruder = await bindUdp(0);
    if (!intruder) throw new Error('no socket');
    const ours = randomBytes(30);
    const theirs = randomBytes(30);
    const peer = weriftPbx(theirs, ours);
    const stranger = weriftPbx(randomBytes(30), ours);
    session.setRemote('127.0.0.1', pbx.rtp.address().port);
    session.useSrtp({ local: ours, remote: theirs });
    const heard: number[] = [];
    session.onPacket((p) => heard.push(p.sequenceNumber));

    // First from elsewhere: plain RTP, then SRTP under a key nobody agreed. Neither may latch.
    intruder.send(plainRtp(1, randomBytes(160)), session.port, '127.0.0.1');
    intruder.send(stranger.srtp.encrypt(randomBytes(160), rtpHeader(2)), session.port, '127.0.0.1');
    const good = peer.srtp.encrypt(randomBytes(160), rtpHeader(3));
    const tampered = Buffer.from(good);
    tampered[20] = (tampered[20] as number) ^ 1;
    pbx.rtp.send(tampered, session.port, '127.0.0.1');
    await until(() => session.stats().srtp?.rtpRejected === 3, 3000, { what: 'three refusals' });
    expect(session.stats()).toMatchObject({ latched: false, packetsReceived: 0 });

    pbx.rtp.send(good, session.port, '127.0.0.1');
    pbx.rtp.send(good, session.port, '127.0.0.1'); // a replay (RFC 3711 §3.3.2)
    pbx.rtp.send(peer.srtp.encrypt(randomBytes(160), rtpHeader(4)), session.port, '127.0.0.1');
    await until(() => heard.length === 2 && session.stats().srtp?.rtpRejected === 4, 3000, {
      what: () => `heard ${heard.join(',')}; ${JSON.stringify(session.stats().srtp)}`,
    });
    expect(heard).toEqual([3, 4]);
    expect(session.stats()).toMatchObject({
      latched: true,
      remote: { address: '127.0.0.1', port: pbx.rtp.address().port },
      packetsReceived: 2,
    });
    // Garbage too short to be SRTP is malformed, as it is for plain RTP; nothing throws.
    pbx.rtp.send(Buffer.alloc(5), session.port, '127.0.0.1');
    await until(() => session.stats().packetsRejected === 1);
  });

  it('sends its reports as SRTCP and reads the PBX’s SRTCP reports; plain RTCP is refused', async () => {
    const clock = new ManualClock();
    const session = await RtpSession.open({ portRange: [42700, 42799], rtcpIntervalMs: 100, clock });
    open.push(session);
    const pbx = await pbxSockets();
    const ours = randomBytes(30);
    const theirs = randomBytes(30);
    const peer = weriftPbx(theirs, ours);
    session.setRemote('127.0.0.1', pbx.rtp.address().port);
    session.useSrtp({ local: ours, remote: theirs });
    session.send(0, 0, new Uint8Array(160));
    clock.advance(200); // past 1.5 × the mean interval: the first report is out
    await until(() => pbx.rtcp.received.length === 1, 3000, { what: 'our first report' });
    const wire = pbx.rtcp.received[0] as Buffer;
    const plain = Buffer.from(peer.srtcp.decrypt(wire));
    // RFC 3711 §3.4: all but the first 8 bytes are encrypted; E ‖ index and the tag follow.
    expect(wire.length).toBe(plain.length + 4 + 10);
    expect(wire.subarray(8, plain.length).equals(plain.subarray(8))).toBe(false);
    const sr = parseRtcp(plain).find((r) => r.type === 'SR');
    expect(sr).toMatchObject({ type: 'SR', ssrc: session.ssrc, sender: { packetCount: 1 } });

    const rr = (n: number) =>
      buildRtcpReport({
        ssrc: 0x5150,
        cname: 'pbx@test',
        blocks: [{ ssrc: session.ssrc, fractionLost: 0, cumulativeLost: n, highestSeq: 1, jitter: 0, lsr: 0, dlsr: 0 }],
      });
    pbx.rtcp.send(rr(7), session.port + 1, '127.0.0.1'); // plain: refused
    pbx.rtcp.send(Buffer.from(peer.srtcp.encrypt(rr(3))), session.port + 1, '127.0.0.1');
    await until(() => session.stats().rtcp.reportsReceived === 1 && session.stats().srtp?.rtcpRejected === 1, 3000, {
      what: () => JSON.stringify(session.stats()),
    });
    expect(session.stats().rtcp.remote).toMatchObject({ packetsLost: 3 });
  });

  it('keeps its streams for an unchanged key and follows a new PBX key (a re-INVITE that rekeys)', async () => {
    const session = await RtpSession.open({ portRange: [42800, 42899], clock: new ManualClock() });
    open.push(session);
    const pbx = await pbxSockets();
    const ours = randomBytes(30);
    const first = randomBytes(30);
    const second = randomBytes(30);
    const heard: number[] = [];
    session.onPacket((p) => heard.push(p.sequenceNumber));
    session.setRemote('127.0.0.1', pbx.rtp.address().port);
    session.useSrtp({ local: ours, remote: first });
    const before = weriftPbx(first, ours);
    const packet10 = before.srtp.encrypt(randomBytes(160), rtpHeader(10));
    pbx.rtp.send(packet10, session.port, '127.0.0.1');
    await until(() => heard.length === 1);
    // The same keys again (a re-INVITE that keeps them): the replay window carries on.
    session.useSrtp({ local: Buffer.from(ours), remote: Buffer.from(first) });
    pbx.rtp.send(packet10, session.port, '127.0.0.1');
    await until(() => session.stats().srtp?.rtpRejected === 1);
    // A new key: packets under the old one are refused, the new one is heard.
    session.useSrtp({ local: ours, remote: second });
    const after = weriftPbx(second, ours);
    pbx.rtp.send(before.srtp.encrypt(randomBytes(160), rtpHeader(11)), session.port, '127.0.0.1');
    pbx.rtp.send(after.srtp.encrypt(randomBytes(160), rtpHeader(12)), session.port, '127.0.0.1');
    await until(() => heard.length === 2 && session.stats().srtp?.rtpRejected === 2);
    expect(heard).toEqual([10, 12]);
    // Back to plain RTP: no SRTP counters, plain packets are heard.
    session.useSrtp(undefined);
    pbx.rtp.send(plainRtp(13, randomBytes(160)), session.port, '127.0.0.1');
    await until(() => heard.length === 3);
    expect(session.stats().srtp).toBeUndefined();
  });
});

function rtpHeader(seq: number): RtpHeader {
  return new RtpHeader({ payloadType: 0, sequenceNumber: seq, timestamp: seq * 160, ssrc: 0x5150 });
}
