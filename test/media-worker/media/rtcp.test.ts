import { describe, expect, it } from 'vitest';
import {
  RtcpPacketConverter,
  RtcpReceiverInfo,
  RtcpRrPacket,
  RtcpSenderInfo,
  RtcpSourceDescriptionPacket,
  RtcpSrPacket,
  SourceDescriptionChunk,
  SourceDescriptionItem,
} from 'werift';
import { buildRtcpReport, ntpFromUnixMs, ntpMiddle32, parseRtcp } from '#worker/media/rtcp.ts';

/** A deterministic byte source for the mutation test (a failure can be replayed). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('RTCP reports (RFC 3550 §6.4), cross-checked with werift', () => {
  const block = {
    ssrc: 0x42,
    fractionLost: 64,
    cumulativeLost: -3,
    highestSeq: 0x1_0005,
    jitter: 80,
    lsr: 0xabcd1234,
    dlsr: 655,
  };
  const sender = {
    ntpSeconds: 3_973_000_000,
    ntpFraction: 0x8000_0000,
    rtpTimestamp: 12_345,
    packetCount: 50,
    octetCount: 8000,
  };

  it('builds an SR with a report block and a CNAME that werift reads as the same figures', () => {
    const buf = buildRtcpReport({ ssrc: 0xdeadbeef, sender, blocks: [block], cname: 'abc@wa-sip-bridge' });
    expect(buf.length % 4).toBe(0);
    expect(buf[0]).toBe(0x81); // V=2, one block
    expect(buf[1]).toBe(200);

    const [sr, sdes, ...rest] = RtcpPacketConverter.deSerialize(buf);
    expect(rest).toEqual([]);
    expect(sr).toBeInstanceOf(RtcpSrPacket);
    const { senderInfo, reports, ssrc } = sr as RtcpSrPacket;
    expect(ssrc).toBe(0xdeadbeef);
    expect(senderInfo.ntpTimestamp).toBe((3_973_000_000n << 32n) | 0x8000_0000n);
    expect([senderInfo.rtpTimestamp, senderInfo.packetCount, senderInfo.octetCount]).toEqual([12_345, 50, 8000]);
    expect(reports.map((r) => r.toJSON())).toEqual([
      // werift reads the 24-bit loss unsigned: −3 is 0xfffffd on the wire.
      {
        ssrc: 0x42,
        fractionLost: 64,
        packetsLost: 0xff_fffd,
        highestSequence: 0x1_0005,
        jitter: 80,
        lsr: 0xabcd1234,
        dlsr: 655,
      },
    ]);
    expect(sdes).toBeInstanceOf(RtcpSourceDescriptionPacket);
    const [chunk] = (sdes as RtcpSourceDescriptionPacket).chunks;
    expect(chunk?.source).toBe(0xdeadbeef);
    expect(chunk?.items.map((i) => [i.type, i.text])).toEqual([[1, 'abc@wa-sip-bridge']]);

    // And our own parser agrees.
    expect(parseRtcp(buf)).toEqual([{ type: 'SR', ssrc: 0xdeadbeef, sender, blocks: [block] }]);
  });

  it('builds an RR when there is nothing sent', () => {
    const buf = buildRtcpReport({ ssrc: 7, blocks: [], cname: 'x' });
    const [rr] = RtcpPacketConverter.deSerialize(buf);
    expect(rr).toBeInstanceOf(RtcpRrPacket);
    expect((rr as RtcpRrPacket).ssrc).toBe(7);
    expect(parseRtcp(buf)).toEqual([{ type: 'RR', ssrc: 7, blocks: [] }]);
  });

  it('reads what werift builds: an SR with two blocks, an RR and werift-padded SDES in one datagram', () => {
    const info = (ssrc: number, packetsLost: number) =>
      new RtcpReceiverInfo({ ssrc, fractionLost: 3, packetsLost, highestSequence: 70_000, jitter: 9, lsr: 5, dlsr: 6 });
    const sr = new RtcpSrPacket({
      ssrc: 1,
      senderInfo: new RtcpSenderInfo({
        ntpTimestamp: (7n << 32n) | 9n,
        rtpTimestamp: 2,
        packetCount: 3,
        octetCount: 4,
      }),
      reports: [info(10, 1), info(11, 0xff_ffff)],
    });
    const rr = new RtcpRrPacket({ ssrc: 2, reports: [info(12, 0x7f_ffff)] });
    const sdes = new RtcpSourceDescriptionPacket({
      chunks: [new SourceDescriptionChunk({ source: 1, items: [new SourceDescriptionItem({ type: 1, text: 'a@b' })] })],
    });
    const blockOf = (ssrc: number, cumulativeLost: number) => ({
      ssrc,
      fractionLost: 3,
      cumulativeLost,
      highestSeq: 70_000,
      jitter: 9,
      lsr: 5,
      dlsr: 6,
    });
    expect(parseRtcp(Buffer.concat([sr.serialize(), rr.serialize(), sdes.serialize()]))).toEqual([
      {
        type: 'SR',
        ssrc: 1,
        sender: { ntpSeconds: 7, ntpFraction: 9, rtpTimestamp: 2, packetCount: 3, octetCount: 4 },
        blocks: [blockOf(10, 1), blockOf(11, -1)], // 0xffffff is −1 (RFC 3550 §6.4.1: signed)
      },
      { type: 'RR', ssrc: 2, blocks: [blockOf(12, 0x7f_ffff)] },
    ]);
  });

  it('clamps figures to their field widths: loss to ±2^23, fraction to a byte, at most 31 blocks', () => {
    const many = Array.from({ length: 40 }, (_, i) => ({ ...block, ssrc: i, cumulativeLost: -1e9, fractionLost: 999 }));
    const [rr] = parseRtcp(buildRtcpReport({ ssrc: 7, blocks: many, cname: 'x' }));
    expect(rr?.type === 'RR' && rr.blocks.length).toBe(31);
    expect(rr?.type === 'RR' && rr.blocks[0]).toMatchObject({ cumulativeLost: -0x80_0000, fractionLost: 255 });
  });

  it('ends every SDES chunk with a null octet on a 32-bit boundary, whatever the CNAME length (RFC 3550 §6.5)', () => {
    for (let n = 1; n <= 33; n++) {
      const cname = 'c'.repeat(n);
      const buf = buildRtcpReport({ ssrc: 7, blocks: [], cname });
      const sdesAt = 8; // after an RR without blocks
      const sdesEnd = sdesAt + (buf.readUInt16BE(sdesAt + 2) + 1) * 4;
      expect(sdesEnd).toBe(buf.length);
      // Chunk: SSRC (4), CNAME type and length (2), text, then ≥ 1 null octet up to the boundary.
      const itemsEnd = sdesAt + 4 + 4 + 2 + n;
      expect(buf.length - itemsEnd, `CNAME of ${n} bytes`).toBeGreaterThanOrEqual(1);
      expect(buf.length - itemsEnd, `CNAME of ${n} bytes`).toBeLessThanOrEqual(4);
      expect([...buf.subarray(itemsEnd)].every((b) => b === 0)).toBe(true);
      const [, sdes] = RtcpPacketConverter.deSerialize(buf);
      expect((sdes as RtcpSourceDescriptionPacket).chunks[0]?.items[0]?.text).toBe(cname);
    }
  });

  it('reads a BYE (which werift has no class for) and skips packet types it does not use', () => {
    const bye = Buffer.from([0x82, 203, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
    const app = Buffer.from([0x80, 204, 0, 2, 0, 0, 0, 1, 0x41, 0x42, 0x43, 0x44]);
    const rr = buildRtcpReport({ ssrc: 7, blocks: [], cname: 'x' });
    expect(parseRtcp(Buffer.concat([rr, app, bye]))).toEqual([
      { type: 'RR', ssrc: 7, blocks: [] },
      { type: 'BYE', ssrcs: [1, 2] },
    ]);
  });

  it('keeps within each packet where werift reads on into the next one', () => {
    // An SR whose count says 2 blocks but whose length holds 1, followed by a BYE. werift's converter
    // decodes the BYE's bytes as the second block; the walk here takes the one block the length holds.
    const good = buildRtcpReport({ ssrc: 9, sender, blocks: [block], cname: 'x' });
    const srLen = (good.readUInt16BE(2) + 1) * 4;
    const sr = Buffer.from(good.subarray(0, srLen));
    sr[0] = 0x82;
    const bye = Buffer.from([0x81, 203, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    bye.writeUInt16BE(bye.length / 4 - 1, 2);
    const datagram = Buffer.concat([sr, bye]);
    const [weriftSr] = RtcpPacketConverter.deSerialize(datagram);
    expect((weriftSr as RtcpSrPacket).reports).toHaveLength(2);
    expect(parseRtcp(datagram)).toEqual([
      { type: 'SR', ssrc: 9, sender, blocks: [block] },
      { type: 'BYE', ssrcs: [9] },
    ]);
  });

  it('never throws on garbage and stops at the first malformed part', () => {
    const good = buildRtcpReport({ ssrc: 7, sender, blocks: [block], cname: 'x' });
    expect(parseRtcp(Buffer.alloc(0))).toEqual([]);
    expect(parseRtcp(Buffer.from([0x80, 200, 0xff, 0xff]))).toEqual([]); // length beyond the datagram
    expect(parseRtcp(Buffer.from([0x80, 200, 0, 1, 0, 0, 0, 1]))).toEqual([]); // an SR without sender info
    expect(parseRtcp(Buffer.concat([good, Buffer.from([0x00, 1, 2])]))).toHaveLength(1);
    const random = lcg(11);
    for (let i = 0; i < 2000; i++) {
      const b = Buffer.from(good);
      for (let k = 0; k < 1 + (i % 3); k++) b[Math.floor(random() * b.length)] = Math.floor(random() * 256);
      expect(() => parseRtcp(b.subarray(0, b.length - (i % 5)))).not.toThrow();
    }
  });

  it('converts Unix time to NTP and its compact middle 32 bits', () => {
    const t = ntpFromUnixMs(Date.UTC(2026, 10, 25, 12, 0, 0, 500));
    expect(t.seconds).toBe(Date.UTC(2026, 10, 25, 12) / 1000 + 2_208_988_800);
    expect(t.fraction).toBe(2 ** 31);
    expect(ntpMiddle32(0x0001_2345, 0x6789_0000)).toBe(0x2345_6789);
  });
});
