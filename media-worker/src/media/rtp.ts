/**
 * Allocation-light RTP (RFC 3550) and RFC 4733 telephone-event helpers for
 * the SIP leg's plain RTP and for the bridge.
 *
 * The SIP leg sees up to 50 packets/s per direction per call, so parsing
 * fills a caller-owned {@link RtpView} (payload as a `subarray`, no copy) and
 * serialising writes into a caller-owned buffer.
 *
 * @module
 */

/** Fixed RTP header length (RFC 3550 §5.1). */
export const RTP_HEADER_BYTES = 12;

/** A parsed RTP packet; `payload` is a view into the datagram (valid until the buffer is reused). */
export interface RtpView {
  payloadType: number;
  marker: boolean;
  sequenceNumber: number;
  timestamp: number;
  ssrc: number;
  payload: Uint8Array;
}

/** A fresh, reusable {@link RtpView}. */
export function createRtpView(): RtpView {
  return { payloadType: 0, marker: false, sequenceNumber: 0, timestamp: 0, ssrc: 0, payload: new Uint8Array(0) };
}

/**
 * Parse an RTP datagram into `out`. Returns false (never throws) for anything
 * that is not RTP version 2 with a consistent length: truncated headers, CSRC
 * or extension running past the end, padding larger than the payload, and
 * RTCP (PT 64–95 with the marker bit, RFC 5761 §4) multiplexed on the port.
 */
export function parseRtp(buf: Uint8Array, out: RtpView): boolean {
  const len = buf.length;
  if (len < RTP_HEADER_BYTES) return false;
  const b0 = buf[0] as number;
  if (b0 >> 6 !== 2) return false;
  const b1 = buf[1] as number;
  const pt = b1 & 0x7f;
  // RFC 5761 §4: RTCP packet types 200–204 appear as PT 72–76 with M set.
  if (pt >= 64 && pt <= 95) return false;
  let offset = RTP_HEADER_BYTES + (b0 & 0x0f) * 4;
  if (offset > len) return false;
  if (b0 & 0x10) {
    // RFC 3550 §5.3.1 header extension: 16-bit profile, 16-bit length in words.
    if (offset + 4 > len) return false;
    offset += 4 + (((buf[offset + 2] as number) << 8) | (buf[offset + 3] as number)) * 4;
    if (offset > len) return false;
  }
  let end = len;
  if (b0 & 0x20) {
    const pad = buf[len - 1] as number;
    if (pad === 0 || offset + pad > len) return false;
    end -= pad;
  }
  out.payloadType = pt;
  out.marker = (b1 & 0x80) !== 0;
  out.sequenceNumber = ((buf[2] as number) << 8) | (buf[3] as number);
  out.timestamp =
    (((buf[4] as number) << 24) | ((buf[5] as number) << 16) | ((buf[6] as number) << 8) | (buf[7] as number)) >>> 0;
  out.ssrc =
    (((buf[8] as number) << 24) | ((buf[9] as number) << 16) | ((buf[10] as number) << 8) | (buf[11] as number)) >>> 0;
  out.payload = buf.subarray(offset, end);
  return true;
}

/**
 * Write a 12-byte RTP header plus `payload` into `target` (which must hold
 * `12 + payload.length` bytes). Returns the number of bytes written.
 */
export function writeRtp(
  target: Uint8Array,
  payloadType: number,
  marker: boolean,
  sequenceNumber: number,
  timestamp: number,
  ssrc: number,
  payload: Uint8Array,
): number {
  target[0] = 0x80;
  target[1] = (marker ? 0x80 : 0) | (payloadType & 0x7f);
  target[2] = (sequenceNumber >> 8) & 0xff;
  target[3] = sequenceNumber & 0xff;
  target[4] = (timestamp >>> 24) & 0xff;
  target[5] = (timestamp >>> 16) & 0xff;
  target[6] = (timestamp >>> 8) & 0xff;
  target[7] = timestamp & 0xff;
  target[8] = (ssrc >>> 24) & 0xff;
  target[9] = (ssrc >>> 16) & 0xff;
  target[10] = (ssrc >>> 8) & 0xff;
  target[11] = ssrc & 0xff;
  target.set(payload, RTP_HEADER_BYTES);
  return RTP_HEADER_BYTES + payload.length;
}

/** Signed distance `a - b` between 16-bit sequence numbers (RFC 3550 A.1 wrap-around). */
export function seqDiff(a: number, b: number): number {
  const d = (a - b) & 0xffff;
  return d >= 0x8000 ? d - 0x10000 : d;
}

/** Signed distance `a - b` between 32-bit RTP timestamps. */
export function tsDiff(a: number, b: number): number {
  return (a - b) | 0;
}

// ------------------------------------------------------------ RFC 4733

/** RFC 4733 §3.2 event codes 0–15 as DTMF characters. */
export const DTMF_EVENTS = '0123456789*#ABCD';

/** A decoded RFC 4733 §2.3 telephone-event payload. */
export interface TelephoneEvent {
  /** Event code (0–15 are DTMF digits, see {@link DTMF_EVENTS}). */
  event: number;
  /** E bit: this is (a retransmission of) the final packet of the event. */
  end: boolean;
  /** Volume in -dBm0, 0–63. */
  volume: number;
  /** Duration so far, in units of the telephone-event clock (8000 Hz here). */
  duration: number;
}

/** Parse a telephone-event payload; undefined if shorter than 4 bytes (RFC 4733 §2.3). */
export function parseTelephoneEvent(payload: Uint8Array): TelephoneEvent | undefined {
  if (payload.length < 4) return undefined;
  const b1 = payload[1] as number;
  return {
    event: payload[0] as number,
    end: (b1 & 0x80) !== 0,
    volume: b1 & 0x3f,
    duration: ((payload[2] as number) << 8) | (payload[3] as number),
  };
}

/** Build the 4-byte telephone-event payload (RFC 4733 §2.3). */
export function buildTelephoneEvent(ev: TelephoneEvent): Buffer {
  const d = Math.max(0, Math.min(0xffff, Math.round(ev.duration)));
  return Buffer.from([ev.event & 0xff, (ev.end ? 0x80 : 0) | (ev.volume & 0x3f), d >> 8, d & 0xff]);
}

/** The RFC 4733 event code of a DTMF character, or -1. */
export function dtmfEventCode(digit: string): number {
  return digit.length === 1 ? DTMF_EVENTS.indexOf(digit.toUpperCase()) : -1;
}

/**
 * Tracks RFC 4733 events arriving on one stream and reports each event's
 * start and end once. Events are keyed by RTP timestamp (RFC 4733 §2.5.2.1:
 * all packets of one event carry its start timestamp); the end packet is sent
 * three times (§2.5.1.4) and must be reported once.
 */
export class TelephoneEventReceiver {
  private currentTs: number | undefined;
  private currentEnded = false;
  private readonly endedTs: number[] = [];

  /**
   * Feed one telephone-event packet. Returns `'start'` for the first packet
   * of a new event, `'end'` for its first end packet, `'update'` otherwise,
   * or `'duplicate'` for an already ended event.
   */
  push(timestamp: number, ev: TelephoneEvent): 'start' | 'update' | 'end' | 'duplicate' {
    if (this.endedTs.includes(timestamp)) return 'duplicate';
    let kind: 'start' | 'update' | 'end' = 'update';
    if (this.currentTs !== timestamp) {
      this.currentTs = timestamp;
      this.currentEnded = false;
      kind = 'start';
    }
    if (ev.end && !this.currentEnded) {
      this.currentEnded = true;
      this.endedTs.push(timestamp);
      if (this.endedTs.length > 16) this.endedTs.shift();
      // An event whose start packets were all lost still ends once.
      return 'end';
    }
    return kind;
  }
}
