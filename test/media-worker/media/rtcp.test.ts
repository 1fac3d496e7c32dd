import { describe, expect, it } from 'vitest';
import { buildRtcpReport, ntpFromUnixMs, ntpMiddle32, parseRtcp } from '#worker/media/rtcp.ts';

describe('RTCP reports (RFC 3550 §6.4)', () => {
  const block = {
    ssrc: 0x42,
    fractionLost: 64,
    cumulativeLost: -3,
    highestSeq: 0x1_0005,
    jitter: 80,
    lsr: 0xabcd1234,
    dlsr: 655,
  };

  it('builds an SR with a report block and a CNAME that parses back to the same figures', () => {
    const sender = {
      ntpSeconds: 3_973_000_000,
      ntpFraction: 0x8000_0000,
      rtpTimestamp: 12_345,
      packetCount: 50,
      octetCount: 8000,
    };
    const buf = buildRtcpReport({ ssrc: 0xdeadbeef, sender, blocks: [block], cname: 'abc@wa-sip-bridge' });
    expect(buf.length % 4).toBe(0);
    expect(buf[0]).toBe(0x81); // V=2, one block
    expect(buf[1]).toBe(200);
    expect(parseRtcp(buf)).toEqual([{ type: 'SR', ssrc: 0xdeadbeef, sender, blocks: [block] }]);
    // The SDES follows: PT 202, CNAME item.
    const sdesAt = (buf.readUInt16BE(2) + 1) * 4;
    expect(buf[sdesAt + 1]).toBe(202);
    expect(buf.subarray(sdesAt + 10, sdesAt + 10 + 17).toString()).toBe('abc@wa-sip-bridge');
  });

  it('builds an RR when there is nothing sent', () => {
    const buf = buildRtcpReport({ ssrc: 7, blocks: [], cname: 'x' });
    expect(parseRtcp(buf)).toEqual([{ type: 'RR', ssrc: 7, blocks: [] }]);
  });

  it('never throws on garbage and stops at the first malformed part', () => {
    const good = buildRtcpReport({ ssrc: 7, blocks: [block], cname: 'x' });
    expect(parseRtcp(Buffer.alloc(0))).toEqual([]);
    expect(parseRtcp(Buffer.from([0x80, 200, 0xff, 0xff]))).toEqual([]); // length beyond the datagram
    expect(parseRtcp(Buffer.concat([good, Buffer.from([0x00, 1, 2])]))).toHaveLength(1);
    for (let i = 0; i < 2000; i++) {
      const b = Buffer.from(good);
      b[Math.floor(Math.random() * b.length)] = Math.floor(Math.random() * 256);
      expect(() => parseRtcp(b)).not.toThrow();
    }
  });

  it('converts Unix time to NTP and its compact middle 32 bits', () => {
    const t = ntpFromUnixMs(Date.UTC(2026, 10, 25, 12, 0, 0, 500));
    expect(t.seconds).toBe(Date.UTC(2026, 10, 25, 12) / 1000 + 2_208_988_800);
    expect(t.fraction).toBe(2 ** 31);
    expect(ntpMiddle32(0x0001_2345, 0x6789_0000)).toBe(0x2345_6789);
  });
});
