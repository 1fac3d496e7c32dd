import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { RtpHeader, RtpPacket } from 'werift';
import {
  buildTelephoneEvent,
  createRtpView,
  parseRtp,
  parseTelephoneEvent,
  seqDiff,
  TelephoneEventReceiver,
  tsDiff,
  writeRtp,
} from '#worker/media/rtp.ts';

describe('Module: rtp', () => {
  it('round-trips a header and agrees with werift’s serialiser', () => {
    const payload = Buffer.from([1, 2, 3, 4, 5]);
    const buf = new Uint8Array(12 + payload.length);
    writeRtp(buf, 0, true, 65535, 0xfffffff0, 0xdeadbeef, payload);
    const werift = new RtpPacket(
      new RtpHeader({ payloadType: 0, marker: true, sequenceNumber: 65535, timestamp: 0xfffffff0, ssrc: 0xdeadbeef }),
      payload,
    ).serialize();
    expect(Buffer.from(buf)).toEqual(werift);
    const view = createRtpView();
    expect(parseRtp(buf, view)).toBe(true);
    expect(view).toMatchObject({
      payloadType: 0,
      marker: true,
      sequenceNumber: 65535,
      timestamp: 0xfffffff0,
      ssrc: 0xdeadbeef,
    });
    expect([...view.payload]).toEqual([1, 2, 3, 4, 5]);
  });

  it('skips CSRCs, header extensions and padding (RFC 3550 §5.1, §5.3.1)', () => {
    const header = new RtpHeader({ payloadType: 8, sequenceNumber: 7, timestamp: 160, ssrc: 1, csrc: [9, 10] });
    header.csrcLength = 2;
    header.extension = true;
    header.extensions = [{ id: 1, payload: Buffer.from([0xaa]) }];
    const packet = new RtpPacket(header, Buffer.from([0x11, 0x22])).serialize();
    const padded = Buffer.concat([packet, Buffer.from([0, 0, 3])]);
    padded[0] = (padded[0] as number) | 0x20;
    const view = createRtpView();
    expect(parseRtp(padded, view)).toBe(true);
    expect([...view.payload]).toEqual([0x11, 0x22]);
  });

  it('rejects 10,000 random datagrams, truncations and RTCP without throwing', () => {
    const view = createRtpView();
    let accepted = 0;
    for (let i = 0; i < 10_000; i++) {
      const junk = randomBytes(i % 64);
      if (parseRtp(junk, view)) {
        accepted++;
        // Whatever is accepted must be internally consistent.
        expect(view.payload.byteOffset + view.payload.length).toBeLessThanOrEqual(junk.byteOffset + junk.length);
      }
    }
    expect(accepted).toBeLessThan(10_000 / 4 + 500); // only version-2 headers can pass
    expect(parseRtp(Buffer.from([0x80, 0xc8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]), view)).toBe(false); // RTCP SR (RFC 5761)
    expect(parseRtp(Buffer.from([0x8f, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]), view)).toBe(false); // 15 CSRCs, no room
    expect(parseRtp(Buffer.from([0xa0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 9]), view)).toBe(false); // padding > payload
  });

  it('computes wrap-around distances', () => {
    expect(seqDiff(2, 65534)).toBe(4);
    expect(seqDiff(65534, 2)).toBe(-4);
    expect(tsDiff(100, 0xffffff00)).toBe(356);
  });

  it('builds and parses RFC 4733 payloads, and reports each event once', () => {
    const p = buildTelephoneEvent({ event: 11, end: true, volume: 10, duration: 960 });
    expect([...p]).toEqual([11, 0x80 | 10, 0x03, 0xc0]);
    expect(parseTelephoneEvent(p)).toEqual({ event: 11, end: true, volume: 10, duration: 960 });
    expect(parseTelephoneEvent(new Uint8Array(3))).toBeUndefined();

    const rx = new TelephoneEventReceiver();
    const ev = (end: boolean) => ({ event: 1, end, volume: 10, duration: 160 });
    expect(rx.push(1000, ev(false))).toBe('start');
    expect(rx.push(1000, ev(false))).toBe('update');
    expect(rx.push(1000, ev(true))).toBe('end');
    expect(rx.push(1000, ev(true))).toBe('duplicate');
    expect(rx.push(1000, ev(true))).toBe('duplicate');
    // An event whose start packets were lost still ends once.
    expect(rx.push(5000, ev(true))).toBe('end');
  });
});
