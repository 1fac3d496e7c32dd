/**
 * RTCP (RFC 3550 §6) for the SIP leg: build sender/receiver reports with a
 * CNAME, and read the reports a PBX sends back (for round-trip time and the
 * loss it sees of our stream). Parsing never throws: anything malformed is
 * skipped.
 *
 * @module
 */

/** One reception report block (RFC 3550 §6.4.1). */
export interface ReportBlock {
  /** The source this block is about. */
  ssrc: number;
  /** Fraction lost since the previous report, in 1/256. */
  fractionLost: number;
  /** Cumulative packets lost (24-bit signed). */
  cumulativeLost: number;
  /** Extended highest sequence number received. */
  highestSeq: number;
  /** Interarrival jitter in RTP timestamp units. */
  jitter: number;
  /** Middle 32 bits of the NTP timestamp of the last SR from that source (0: none). */
  lsr: number;
  /** Delay since that SR, in 1/65536 s. */
  dlsr: number;
}

/** Sender info of an SR (RFC 3550 §6.4.1). */
export interface SenderInfo {
  /** NTP timestamp: seconds since 1900 and the 32-bit fraction. */
  ntpSeconds: number;
  ntpFraction: number;
  rtpTimestamp: number;
  packetCount: number;
  octetCount: number;
}

/** What {@link parseRtcp} reads from a compound packet. */
export type RtcpReport =
  | { type: 'SR'; ssrc: number; sender: SenderInfo; blocks: ReportBlock[] }
  | { type: 'RR'; ssrc: number; blocks: ReportBlock[] }
  | { type: 'BYE'; ssrcs: number[] };

const PT_SR = 200;
const PT_RR = 201;
const PT_SDES = 202;
const PT_BYE = 203;
/** Seconds between 1900 (NTP epoch) and 1970. */
export const NTP_UNIX_OFFSET_S = 2_208_988_800;

/** The NTP time of a Unix time in ms (RFC 5905 §6). */
export function ntpFromUnixMs(ms: number): { seconds: number; fraction: number } {
  const whole = Math.floor(ms / 1000);
  return {
    seconds: (whole + NTP_UNIX_OFFSET_S) >>> 0,
    fraction: Math.floor(((ms - whole * 1000) / 1000) * 2 ** 32) >>> 0,
  };
}

/** The middle 32 bits of an NTP timestamp (the "compact" form LSR and RTT use). */
export function ntpMiddle32(seconds: number, fraction: number): number {
  return (((seconds & 0xffff) << 16) | (fraction >>> 16)) >>> 0;
}

/**
 * A compound RTCP packet: an SR when `sender` is given, else an RR, with the
 * report blocks, then an SDES with our CNAME (RFC 3550 §6.1: every compound
 * packet starts with SR/RR and carries a CNAME).
 */
export function buildRtcpReport(options: {
  ssrc: number;
  sender?: SenderInfo;
  blocks: readonly ReportBlock[];
  cname: string;
}): Buffer {
  const blocks = options.blocks.slice(0, 31);
  const senderBytes = options.sender ? 20 : 0;
  const reportLen = 8 + senderBytes + blocks.length * 24;
  const cname = Buffer.from(options.cname, 'utf8').subarray(0, 255);
  // SDES chunk: SSRC, CNAME item (type, length, text), END, padded to 32 bits.
  const chunkLen = Math.ceil((4 + 2 + cname.length + 1) / 4) * 4;
  const sdesLen = 4 + chunkLen;
  const buf = Buffer.alloc(reportLen + sdesLen);
  buf[0] = 0x80 | blocks.length;
  buf[1] = options.sender ? PT_SR : PT_RR;
  buf.writeUInt16BE(reportLen / 4 - 1, 2);
  buf.writeUInt32BE(options.ssrc >>> 0, 4);
  let o = 8;
  if (options.sender) {
    const s = options.sender;
    buf.writeUInt32BE(s.ntpSeconds >>> 0, o);
    buf.writeUInt32BE(s.ntpFraction >>> 0, o + 4);
    buf.writeUInt32BE(s.rtpTimestamp >>> 0, o + 8);
    buf.writeUInt32BE(s.packetCount >>> 0, o + 12);
    buf.writeUInt32BE(s.octetCount >>> 0, o + 16);
    o += 20;
  }
  for (const b of blocks) {
    buf.writeUInt32BE(b.ssrc >>> 0, o);
    buf[o + 4] = Math.max(0, Math.min(255, b.fractionLost));
    const lost = Math.max(-0x800000, Math.min(0x7fffff, Math.round(b.cumulativeLost)));
    buf.writeUIntBE(lost & 0xffffff, o + 5, 3);
    buf.writeUInt32BE(b.highestSeq >>> 0, o + 8);
    buf.writeUInt32BE(Math.max(0, Math.round(b.jitter)) >>> 0, o + 12);
    buf.writeUInt32BE(b.lsr >>> 0, o + 16);
    buf.writeUInt32BE(Math.max(0, Math.round(b.dlsr)) >>> 0, o + 20);
    o += 24;
  }
  buf[o] = 0x81; // V=2, one chunk
  buf[o + 1] = PT_SDES;
  buf.writeUInt16BE(sdesLen / 4 - 1, o + 2);
  buf.writeUInt32BE(options.ssrc >>> 0, o + 4);
  buf[o + 8] = 1; // CNAME
  buf[o + 9] = cname.length;
  cname.copy(buf, o + 10);
  // The END item and padding are the zeros already there.
  return buf;
}

/** Read the SR, RR and BYE packets of a compound RTCP datagram; malformed parts end the walk. */
export function parseRtcp(buf: Uint8Array): RtcpReport[] {
  const out: RtcpReport[] = [];
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  let o = 0;
  while (o + 4 <= view.length) {
    const b0 = view[o] as number;
    if (b0 >> 6 !== 2) break;
    const count = b0 & 0x1f;
    const pt = view[o + 1] as number;
    const len = (view.readUInt16BE(o + 2) + 1) * 4;
    if (o + len > view.length) break;
    const end = o + len;
    if ((pt === PT_SR || pt === PT_RR) && len >= 8) {
      const ssrc = view.readUInt32BE(o + 4);
      let p = o + 8;
      let sender: SenderInfo | undefined;
      if (pt === PT_SR) {
        if (p + 20 > end) break;
        sender = {
          ntpSeconds: view.readUInt32BE(p),
          ntpFraction: view.readUInt32BE(p + 4),
          rtpTimestamp: view.readUInt32BE(p + 8),
          packetCount: view.readUInt32BE(p + 12),
          octetCount: view.readUInt32BE(p + 16),
        };
        p += 20;
      }
      const blocks: ReportBlock[] = [];
      for (let i = 0; i < count && p + 24 <= end; i++, p += 24) {
        let lost = view.readUIntBE(p + 5, 3);
        if (lost & 0x800000) lost -= 0x1000000;
        blocks.push({
          ssrc: view.readUInt32BE(p),
          fractionLost: view[p + 4] as number,
          cumulativeLost: lost,
          highestSeq: view.readUInt32BE(p + 8),
          jitter: view.readUInt32BE(p + 12),
          lsr: view.readUInt32BE(p + 16),
          dlsr: view.readUInt32BE(p + 20),
        });
      }
      out.push(sender ? { type: 'SR', ssrc, sender, blocks } : { type: 'RR', ssrc, blocks });
    } else if (pt === PT_BYE) {
      const ssrcs: number[] = [];
      for (let i = 0; i < count && o + 8 + i * 4 <= end; i++) ssrcs.push(view.readUInt32BE(o + 4 + i * 4));
      out.push({ type: 'BYE', ssrcs });
    }
    o = end;
  }
  return out;
}
