import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '#core/clock.ts';
import { MediaError } from '#worker/media/errors.ts';
import { buildRtcpReport, ntpMiddle32, parseRtcp } from '#worker/media/rtcp.ts';
import { writeRtp } from '#worker/media/rtp.ts';
import { RtpSession } from '#worker/media/rtp-session.ts';

import { until } from '../../helpers/async.ts';

const open: { close(): Promise<void> | void }[] = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close();
});

async function udp(): Promise<Socket & { received: Buffer[] }> {
  const s = createSocket('udp4') as Socket & { received: Buffer[] };
  s.received = [];
  s.on('message', (m) => s.received.push(m));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  open.push({ close: () => new Promise<void>((r) => s.close(() => r())) });
  return s;
}

function rtpPacket(seq: number, ts = seq * 160): Buffer {
  const buf = Buffer.alloc(12 + 160);
  writeRtp(buf, 0, false, seq, ts, 0x42, new Uint8Array(160).fill(0xff));
  return buf;
}

/** An RTP socket on an even port and its RTCP socket on the next one, like a PBX's. */
async function udpPair(): Promise<{ rtp: Socket & { received: Buffer[] }; rtcp: Socket & { received: Buffer[] } }> {
  for (let port = 43_100; port < 43_300; port += 2) {
    const bindTo = (p: number) =>
      new Promise<(Socket & { received: Buffer[] }) | undefined>((resolve) => {
        const s = createSocket('udp4') as Socket & { received: Buffer[] };
        s.received = [];
        s.on('message', (m) => s.received.push(m));
        s.once('error', () => {
          s.close();
          resolve(undefined);
        });
        s.bind(p, '127.0.0.1', () => resolve(s));
      });
    const rtp = await bindTo(port);
    if (!rtp) continue;
    const rtcp = await bindTo(port + 1);
    if (!rtcp) {
      rtp.close();
      continue;
    }
    for (const s of [rtp, rtcp]) open.push({ close: () => new Promise<void>((r) => s.close(() => r())) });
    return { rtp, rtcp };
  }
  throw new Error('no free port pair');
}

describe('Class: RtpSession', () => {
  it('reports by RTCP: SR with our counts and a block on the PBX stream, and reads RTT and remote loss from its RR', async () => {
    const clock = new ManualClock();
    const session = await RtpSession.open({ portRange: [42400, 42499], rtcpIntervalMs: 150, clock });
    open.push(session);
    const pbx = await udpPair();
    session.setRemote('127.0.0.1', pbx.rtp.address().port);
    for (let seq = 1; seq <= 30; seq++) {
      if (seq !== 20) pbx.rtp.send(rtpPacket(seq), session.port, '127.0.0.1'); // seq 20 lost
      session.send(0, seq * 160, new Uint8Array(160));
    }
    await until(() => session.stats().packetsReceived === 29);
    expect(pbx.rtcp.received).toHaveLength(0); // no report before its timer
    // The first report goes out 0.5–1.5 × 150 ms after the first packet (RFC 3550 §6.3.1).
    while (session.stats().rtcp.reportsSent === 0) clock.advance(1);
    const reportAt = clock.now(); // the report went out during the last millisecond
    expect(reportAt).toBeGreaterThanOrEqual(75);
    expect(reportAt).toBeLessThanOrEqual(225);
    await until(() => pbx.rtcp.received.length === 1);
    const reports = pbx.rtcp.received.flatMap((m) => parseRtcp(m));
    const sr = reports.find((r) => r.type === 'SR');
    expect(sr).toBeDefined();
    if (sr?.type !== 'SR') return;
    expect(sr.ssrc).toBe(session.ssrc);
    expect(sr.sender.packetCount).toBe(30);
    expect(sr.sender.octetCount).toBe(30 * 160);
    expect(sr.blocks[0]).toMatchObject({ ssrc: 0x42, cumulativeLost: 1, highestSeq: 30 });

    // The PBX answers 30 ms later with an RR on our stream, saying it held our SR for 10 ms.
    clock.advance(30);
    const rr = buildRtcpReport({
      ssrc: 0x42,
      blocks: [
        {
          ssrc: session.ssrc,
          fractionLost: 64,
          cumulativeLost: 3,
          highestSeq: 30,
          jitter: 80,
          lsr: ntpMiddle32(sr.sender.ntpSeconds, sr.sender.ntpFraction),
          dlsr: 0.01 * 65536,
        },
      ],
      cname: 'pbx',
    });
    pbx.rtcp.send(rr, session.port + 1, '127.0.0.1');
    pbx.rtcp.send(Buffer.from('garbage'), session.port + 1, '127.0.0.1');
    await until(() => session.stats().rtcpPacketsReceived === 2);
    const rtcp = session.stats().rtcp;
    expect(rtcp).toMatchObject({
      reportsSent: 1,
      reportsReceived: 1,
      packetsLost: 1,
      remote: { fractionLost: 0.25, packetsLost: 3, jitterMs: 10 },
    });
    // RFC 3550 §6.4.1: A − LSR − DLSR = (30 ms + what remained of the millisecond the SR went
    // out in) − 10 ms, to the compact NTP clock's 1/65536 s.
    expect(rtcp.roundTripTimeMs).toBeGreaterThanOrEqual(20 - 0.02);
    expect(rtcp.roundTripTimeMs).toBeLessThan(21 + 0.02);
  });

  it('estimates the PBX stream’s interarrival jitter (RFC 3550 A.8) from arrival times on its clock', async () => {
    const clock = new ManualClock();
    const session = await RtpSession.open({ portRange: [42500, 42599], clock });
    open.push(session);
    const pbx = await udp();
    session.setRemote('127.0.0.1', pbx.address().port);
    const arrive = async (seq: number) => {
      pbx.send(rtpPacket(seq), session.port, '127.0.0.1');
      await until(() => session.stats().packetsReceived === seq);
    };
    for (let seq = 1; seq <= 10; seq++) {
      await arrive(seq);
      clock.advance(20);
    }
    expect(session.stats().rtcp.jitterMs).toBe(0); // exactly on time
    clock.advance(10);
    await arrive(11); // 10 ms late: D = 80 ticks, J = 80 / 16 = 5 ticks
    expect(session.stats().rtcp.jitterMs).toBe(0.625);
  });

  it('binds an even RTP port and the odd RTCP port above it inside the range', async () => {
    const sessions = await Promise.all(
      Array.from({ length: 5 }, () => RtpSession.open({ bindAddress: '127.0.0.1', portRange: [42000, 42019] })),
    );
    open.push(...sessions);
    const ports = sessions.map((s) => s.port);
    expect(new Set(ports).size).toBe(5);
    for (const p of ports) {
      expect(p % 2).toBe(0);
      expect(p).toBeGreaterThanOrEqual(42000);
      expect(p).toBeLessThanOrEqual(42018);
    }
  });

  it('fails with a MediaError when the range is exhausted', async () => {
    // A two-port range that is free right now (other suites run in parallel on this machine).
    let one: RtpSession | undefined;
    let range: [number, number] = [0, 0];
    for (let attempt = 0; attempt < 50 && !one; attempt++) {
      const even = 30000 + 2 * Math.floor(Math.random() * 10000);
      range = [even, even + 1];
      one = await RtpSession.open({ portRange: range }).catch(() => undefined);
    }
    expect(one, 'a free port pair').toBeDefined();
    open.push(one!);
    await expect(RtpSession.open({ portRange: range })).rejects.toBeInstanceOf(MediaError);
    await expect(RtpSession.open({ portRange: [range[1], range[1]] })).rejects.toMatchObject({
      code: 'invalid-argument',
    });
  });

  it('sends to the SDP address first, then latches to where packets come from (RFC 4961)', async () => {
    const session = await RtpSession.open({ portRange: [42200, 42299] });
    open.push(session);
    const sdpSocket = await udp();
    const realSocket = await udp();
    session.setRemote('127.0.0.1', sdpSocket.address().port);
    session.send(0, 0, new Uint8Array(160));
    await until(() => sdpSocket.received.length === 1);

    const got: number[] = [];
    session.onPacket((p) => got.push(p.sequenceNumber));
    realSocket.send(rtpPacket(1), session.port, '127.0.0.1');
    await until(() => session.stats().latched);
    session.send(0, 160, new Uint8Array(160));
    await until(() => realSocket.received.length === 1);
    expect(sdpSocket.received).toHaveLength(1);
    // Once latched, other sources are ignored.
    sdpSocket.send(rtpPacket(2), session.port, '127.0.0.1');
    await until(() => session.stats().packetsFromOtherSources === 1);
    expect(got).toEqual([1]);
    expect(session.stats()).toMatchObject({ latched: true, packetsFromOtherSources: 1, packetsReceived: 1 });
    // A re-INVITE with the same address keeps the latch; a new address re-arms it.
    session.setRemote('127.0.0.1', sdpSocket.address().port);
    expect(session.stats().latched).toBe(true);
    session.setRemote('127.0.0.1', realSocket.address().port);
    expect(session.stats().latched).toBe(false);
  });

  it('after a re-INVITE moves the media, late packets of the old stream do not win the re-armed latch', async () => {
    const clock = new ManualClock();
    const session = await RtpSession.open({ portRange: [42200, 42299], clock });
    open.push(session);
    const oldPbx = await udp();
    const newPbx = await udp();
    session.setRemote('127.0.0.1', oldPbx.address().port);
    const got: number[] = [];
    session.onPacket((p) => got.push(p.sequenceNumber));
    oldPbx.send(rtpPacket(1), session.port, '127.0.0.1');
    await until(() => session.stats().latched);

    // The PBX moves its media (RFC 3264 §8.3.1); one packet of the old stream is still in flight.
    session.setRemote('127.0.0.1', newPbx.address().port);
    oldPbx.send(rtpPacket(2), session.port, '127.0.0.1');
    await until(() => session.stats().packetsFromOtherSources === 1);
    expect(session.stats().latched).toBe(false);
    newPbx.send(rtpPacket(3), session.port, '127.0.0.1');
    await until(() => session.stats().latched);
    expect(session.stats().remote).toEqual({ address: '127.0.0.1', port: newPbx.address().port });
    expect(got).toEqual([1, 3]);
  });

  it('refuses the old source only for a grace time: a PBX that keeps its source port still latches', async () => {
    const clock = new ManualClock();
    const session = await RtpSession.open({ portRange: [42200, 42299], clock });
    open.push(session);
    const pbx = await udp();
    const announced = await udp();
    session.setRemote('127.0.0.1', pbx.address().port);
    pbx.send(rtpPacket(1), session.port, '127.0.0.1');
    await until(() => session.stats().latched);
    session.setRemote('127.0.0.1', announced.address().port);
    clock.advance(500);
    pbx.send(rtpPacket(2), session.port, '127.0.0.1');
    await until(() => session.stats().latched);
    expect(session.stats()).toMatchObject({ packetsFromOtherSources: 0, packetsReceived: 2 });
  });

  it('with strictSourceAddress latches only to the SDP IP', async () => {
    const session = await RtpSession.open({ portRange: [42300, 42399], strictSourceAddress: true });
    open.push(session);
    const peer = await udp();
    session.setRemote('192.0.2.1', 4000);
    peer.send(rtpPacket(1), session.port, '127.0.0.1');
    await until(() => session.stats().packetsFromOtherSources === 1);
    expect(session.stats()).toMatchObject({ latched: false, packetsFromOtherSources: 1 });
  });

  it('counts garbage and RTCP, keeps sequence numbers consecutive, and close() is idempotent', async () => {
    const session = await RtpSession.open({ portRange: [42400, 42499] });
    const peer = await udp();
    session.setRemote('127.0.0.1', peer.address().port);
    peer.send(Buffer.from('not rtp at all'), session.port, '127.0.0.1');
    peer.send(Buffer.from([0x80, 0xc9, 0, 1, 0, 0, 0, 1]), session.port + 1, '127.0.0.1');
    for (let i = 0; i < 3; i++) session.send(0, i * 160, new Uint8Array(160), i === 0);
    await until(
      () =>
        peer.received.length === 3 &&
        session.stats().packetsRejected === 1 &&
        session.stats().rtcpPacketsReceived === 1,
    );
    const seqs = peer.received.map((b) => b.readUInt16BE(2));
    expect(seqs[1]! - seqs[0]!).toBe(1);
    expect(seqs[2]! - seqs[1]!).toBe(1);
    expect(peer.received[0]!.readUInt8(1) & 0x80).toBe(0x80);
    expect(session.stats()).toMatchObject({ packetsRejected: 1, rtcpPacketsReceived: 1, packetsSent: 3 });
    await Promise.all([session.close(), session.close()]);
    session.send(0, 0, new Uint8Array(1)); // no throw after close
  });
});
