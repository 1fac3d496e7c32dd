/**
 * RTCP (RFC 3550 §6) for the SIP leg: build sender/receiver reports with a
 * CNAME, and read the reports a PBX sends back (for round-trip time and the
 * loss it sees of our stream). Parsing never throws: anything malformed is
 * skipped.
 *
 * The field layouts are werift's (`RtcpSrPacket`, `RtcpRrPacket`,
 * `RtcpReceiverInfo`, `RtcpSenderInfo`, `RtcpSourceDescriptionPacket`); this
 * module only maps them to plain numbers and keeps four things werift does
 * not do for us (each measured against werift 0.25.2 in `rtcp.test.ts`):
 * - **Framing of a received compound packet.** `RtcpPacketConverter` hands
 *   each sub-packet the rest of the datagram (a short length field makes it
 *   read the next packet's bytes as report blocks), checks no version, and
 *   throws on a datagram that ends inside a header. A packet from the network
 *   is untrusted, so the walk (version 2, length within the datagram, report
 *   count within the length) stays here and werift decodes the bounded bytes.
 * - **BYE** (PT 203): werift has no class for it; its converter drops it.
 * - **The signed cumulative loss** (RFC 3550 §6.4.1, 24-bit two's
 *   complement): werift reads and writes it as unsigned.
 * - **The SDES END item** (RFC 3550 §6.5: "the list of items in each chunk
 *   MUST be terminated by one or more null octets"): werift pads a chunk to
 *   32 bits but writes no terminator when the items already end on a 32-bit
 *   boundary (a CNAME of 2, 6, 10… bytes; ours are 16–30 bytes long), so
 *   {@link buildRtcpReport} adds the null item in exactly that case.
 *
 * @module
 */
import {
  RtcpReceiverInfo,
  RtcpRrPacket,
  RtcpSenderInfo,
  RtcpSourceDescriptionPacket,
  RtcpSrPacket,
  SourceDescriptionChunk,
  SourceDescriptionItem,
} from 'werift';

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

const PT_BYE = 203;
/** SDES item type of the canonical name (RFC 3550 §6.5.1). */
const SDES_CNAME = 1;
/** Bytes of an RTCP common header, of the SR sender info, and of one report block (RFC 3550 §6.4). */
const HEADER_BYTES = 4;
const SENDER_INFO_BYTES = 20;
const BLOCK_BYTES = 24;
/** At most 31 report blocks fit the 5-bit count (RFC 3550 §6.4.1). */
const MAX_BLOCKS = 31;

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
  const ssrc = options.ssrc >>> 0;
  const reports = options.blocks.slice(0, MAX_BLOCKS).map(toReceiverInfo);
  const report = options.sender
    ? new RtcpSrPacket({ ssrc, senderInfo: toSenderInfo(options.sender), reports })
    : new RtcpRrPacket({ ssrc, reports });
  return Buffer.concat([report.serialize(), cnameSdes(ssrc, options.cname).serialize()]);
}

/** Read the SR, RR and BYE packets of a compound RTCP datagram; malformed parts end the walk. */
export function parseRtcp(buf: Uint8Array): RtcpReport[] {
  const out: RtcpReport[] = [];
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  let o = 0;
  while (o + HEADER_BYTES <= view.length) {
    const b0 = view[o] as number;
    if (b0 >> 6 !== 2) break;
    const count = b0 & 0x1f;
    const pt = view[o + 1] as number;
    const end = o + (view.readUInt16BE(o + 2) + 1) * 4;
    if (end > view.length) break;
    // Only this packet's bytes, without the common header.
    const body = view.subarray(o + HEADER_BYTES, end);
    if (pt === RtcpSrPacket.type) {
      if (body.length < 4 + SENDER_INFO_BYTES) break;
      const sr = RtcpSrPacket.deSerialize(body, blocksIn(body.length - 4 - SENDER_INFO_BYTES, count));
      out.push({
        type: 'SR',
        ssrc: sr.ssrc,
        sender: fromSenderInfo(sr.senderInfo),
        blocks: sr.reports.map(fromReceiverInfo),
      });
    } else if (pt === RtcpRrPacket.type && body.length >= 4) {
      const rr = RtcpRrPacket.deSerialize(body, blocksIn(body.length - 4, count));
      out.push({ type: 'RR', ssrc: rr.ssrc, blocks: rr.reports.map(fromReceiverInfo) });
    } else if (pt === PT_BYE) {
      const ssrcs: number[] = [];
      for (let i = 0; i < count && (i + 1) * 4 <= body.length; i++) ssrcs.push(body.readUInt32BE(i * 4));
      out.push({ type: 'BYE', ssrcs });
    }
    o = end;
  }
  return out;
}

/** How many of `count` announced report blocks fit in `bytes`. */
function blocksIn(bytes: number, count: number): number {
  return Math.min(count, Math.floor(bytes / BLOCK_BYTES));
}

/**
 * An SDES packet with one chunk: our SSRC and CNAME, then the END item when
 * werift would leave it out (see the module header).
 */
function cnameSdes(ssrc: number, cname: string): RtcpSourceDescriptionPacket {
  let text = cname;
  while (Buffer.byteLength(text) > 255) text = text.slice(0, -1); // the item's length is one octet
  const items = [new SourceDescriptionItem({ type: SDES_CNAME, text })];
  // SSRC (4) + type and length (2) + text: on a 32-bit boundary werift adds no padding, so no null octet.
  if ((4 + 2 + Buffer.byteLength(text)) % 4 === 0) items.push(new SourceDescriptionItem({ type: 0, text: '' }));
  return new RtcpSourceDescriptionPacket({ chunks: [new SourceDescriptionChunk({ source: ssrc, items })] });
}

function toSenderInfo(s: SenderInfo): RtcpSenderInfo {
  return new RtcpSenderInfo({
    ntpTimestamp: (BigInt(s.ntpSeconds >>> 0) << 32n) | BigInt(s.ntpFraction >>> 0),
    rtpTimestamp: s.rtpTimestamp >>> 0,
    packetCount: s.packetCount >>> 0,
    octetCount: s.octetCount >>> 0,
  });
}

function fromSenderInfo(s: RtcpSenderInfo): SenderInfo {
  return {
    ntpSeconds: Number(s.ntpTimestamp >> 32n),
    ntpFraction: Number(s.ntpTimestamp & 0xffff_ffffn),
    rtpTimestamp: s.rtpTimestamp,
    packetCount: s.packetCount,
    octetCount: s.octetCount,
  };
}

/** Our block as werift's, with the values clamped to their field widths. */
function toReceiverInfo(b: ReportBlock): RtcpReceiverInfo {
  const lost = Math.max(-0x80_0000, Math.min(0x7f_ffff, Math.round(b.cumulativeLost)));
  return new RtcpReceiverInfo({
    ssrc: b.ssrc >>> 0,
    fractionLost: Math.max(0, Math.min(255, Math.round(b.fractionLost))),
    packetsLost: lost & 0xff_ffff, // 24-bit two's complement
    highestSequence: b.highestSeq >>> 0,
    jitter: Math.max(0, Math.round(b.jitter)) >>> 0,
    lsr: b.lsr >>> 0,
    dlsr: Math.max(0, Math.round(b.dlsr)) >>> 0,
  });
}

function fromReceiverInfo(r: RtcpReceiverInfo): ReportBlock {
  return {
    ssrc: r.ssrc,
    fractionLost: r.fractionLost,
    cumulativeLost: r.packetsLost & 0x80_0000 ? r.packetsLost - 0x100_0000 : r.packetsLost,
    highestSeq: r.highestSequence,
    jitter: r.jitter,
    lsr: r.lsr,
    dlsr: r.dlsr,
  };
}
