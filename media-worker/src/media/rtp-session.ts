/**
 * The SIP leg's RTP endpoint: a UDP socket pair (RTP on an even port, RTCP
 * on the next odd one, RFC 3550 §11) with symmetric RTP latching.
 *
 * Latching (RFC 4961 symmetric RTP, a.k.a. "comedia"): a PBX or SBC behind
 * NAT often sends from an address/port other than the one in its SDP. Until
 * a packet arrives we send to the SDP address; the first valid RTP packet
 * latches the session to its source and from then on we send there and
 * accept packets only from there. `setRemote()` (re-INVITE with a new
 * address) re-arms latching.
 *
 * Garbage (non-RTP, truncated, RTCP-on-RTP) is counted and dropped; nothing
 * a remote sends can throw.
 *
 * RTCP (RFC 3550 §6): every ~5 s (randomised ×0.5–1.5, §6.3.1) the session
 * sends a sender report (or a receiver report while it has sent nothing)
 * with a report block on the PBX's stream and a CNAME, to the PBX's RTCP
 * source once one was seen (symmetric RTCP, RFC 4961), else to its RTP port
 * + 1 (§11). Reports from the PBX give the round-trip time and the loss and
 * jitter it sees of our stream.
 *
 * SDES-SRTP (RFC 4568, setting `SIP_SRTP`): once {@link RtpSession.useSrtp} has the two keys, what
 * we send is SRTP and SRTCP (RFC 3711 §3.1, §3.4) and what arrives must authenticate; a packet that
 * does not (wrong key, tampered, replayed, plain RTP) is counted and dropped, and never latches
 * the session to its source.
 *
 * @module
 */
import { randomInt } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Logger } from 'pino';
import { type Clock, type ClockTimer, realClock } from '#core/clock.ts';
import { Emitter } from '../emitter.ts';
import { SrtpStream } from '../webrtc/srtp.ts';
import { MediaError } from './errors.ts';
import type { RtpSource } from './ports.ts';
import { ReceptionStatistics } from './reception-statistics.ts';
import { buildRtcpReport, ntpFromUnixMs, ntpMiddle32, parseRtcp, type ReportBlock } from './rtcp.ts';
import { createRtpView, parseRtp, RTP_HEADER_BYTES, type RtpView, writeRtp } from './rtp.ts';

/** How long the source latched before a media move is refused after `setRemote` (in-flight packets of the old stream). */
const RETIRED_SOURCE_GRACE_MS = 500;

/** Options for {@link RtpSession.open}. */
export interface RtpSessionOptions {
  /** Address to bind (and advertise unless the caller overrides it in SDP). @default '127.0.0.1' */
  bindAddress?: string;
  /** Port range `[min, max]`; an even RTP port and the odd RTCP port above it are taken. @default [20000, 30000] */
  portRange?: [number, number];
  /**
   * Latch only to sources with the SDP's IP address (port may differ).
   * Off by default: a NATed PBX may send from another IP as well.
   */
  strictSourceAddress?: boolean;
  /** Call id for logs and errors. */
  callId?: string;
  /** Logger; a `component: 'rtp-session'` child is used. */
  logger?: Logger;
  /** Mean RTCP report interval in ms (RFC 3550 §6.2 minimum: 5 s). @default 5000 */
  rtcpIntervalMs?: number;
  /**
   * Time source of arrival times (jitter), the report timer and the sender report's times. NTP
   * times are `performance.timeOrigin` plus its `now()`: one timeline for LSR/DLSR and the RTT.
   * @default realClock
   */
  clock?: Clock;
}

/** What RTCP says about the SIP leg; see {@link RtpSessionStats}. */
export interface RtcpStats {
  reportsSent: number;
  reportsReceived: number;
  /** Packets lost from the PBX (RFC 3550 A.3). */
  packetsLost: number;
  /** Interarrival jitter of the PBX's stream, ms (A.8). */
  jitterMs: number;
  /** Round-trip time to the PBX from its report on our SR (§6.4.1), ms. */
  roundTripTimeMs: number | undefined;
  /** What the PBX's last report said of our stream. */
  remote: { fractionLost: number; packetsLost: number; jitterMs: number } | undefined;
}

/** Source of a received packet. */
export type { RtpSource } from './ports.ts';

/** Counters returned by {@link RtpSession.stats}. */
export interface RtpSessionStats {
  packetsSent: number;
  bytesSent: number;
  packetsReceived: number;
  bytesReceived: number;
  /** Datagrams that were not valid RTP. */
  packetsRejected: number;
  /** Valid RTP from a source other than the latched one (dropped). */
  packetsFromOtherSources: number;
  /** Datagrams received on the RTCP port. */
  rtcpPacketsReceived: number;
  /** Where we send now (latched source, else the SDP address). */
  remote: RtpSource | undefined;
  /** True once latched to an observed source. */
  latched: boolean;
  rtcp: RtcpStats;
  /** SDES-SRTP, while it is on: packets and reports refused (authentication or replay). */
  srtp?: { rtpRejected: number; rtcpRejected: number };
}

/** SDES master key ‖ salt of each side (30 bytes each for AES_CM_128_HMAC_SHA1_80). */
export interface SrtpKeys {
  /** Ours: protects what we send. */
  local: Buffer;
  /** The PBX's: unprotects what it sends. */
  remote: Buffer;
}

/** The SRTP and SRTCP streams of each direction, with the keys they were made from. */
interface SrtpState {
  local: Buffer;
  remote: Buffer;
  rtpOut: SrtpStream;
  rtpIn: SrtpStream;
  rtcpOut: SrtpStream;
  rtcpIn: SrtpStream;
}

const SRTP_PROFILE = 'AES_CM_128_HMAC_SHA1_80';
const SDES_KEY_BYTES = 16;

/** A UDP RTP endpoint for the SIP leg; create with {@link RtpSession.open}. */
export class RtpSession {
  /** Bound address. */
  readonly address: string;
  /** Bound RTP port (even). */
  readonly port: number;
  /** Our SSRC on this leg (random, RFC 3550 §8). */
  readonly ssrc: number;

  private readonly rtp: Socket;
  private readonly rtcp: Socket;
  private readonly strict: boolean;
  private readonly log: Logger | undefined;
  private readonly callId: string | undefined;
  private readonly clock: Clock;
  private readonly view: RtpView = createRtpView();
  private readonly packets: Emitter<RtpView, RtpSource>;
  private sdpRemote: RtpSource | undefined;
  private latchedRemote: RtpSource | undefined;
  /** The source latched before a `setRemote` that moved the media, refused until `until` (clock time). */
  private retiredRemote: (RtpSource & { until: number }) | undefined;
  private seq = randomInt(0, 0x10000);
  private closing: Promise<void> | undefined;
  private srtp: SrtpState | undefined;
  private readonly srtpRejected = { rtp: 0, rtcp: 0 };
  /** The plain packet before SRTP protects it into a new buffer (one allocation per packet, as plain RTP). */
  private scratch = Buffer.allocUnsafe(1500);
  // RTCP state.
  private readonly rtcpIntervalMs: number;
  private readonly cname =
    `${randomInt(0, 0x1_0000_0000).toString(16)}${randomInt(0, 0x1_0000_0000).toString(16)}@wa-sip-bridge`;
  private clockRate = 8000;
  private reception: ReceptionStatistics | undefined;
  private receptionSsrc = 0;
  private receivedSinceReport = false;
  private sentSinceReport = false;
  private payloadBytesSent = 0;
  private lastSentTs = 0;
  private lastSentAt = 0;
  /** The PBX's last SR: its compact NTP time and when it arrived (clock time). */
  private peerSr: { lsr: number; at: number } | undefined;
  private rtcpRemote: RtpSource | undefined;
  private rtcpTimer: ClockTimer | undefined;
  private readonly rtcpStats: RtcpStats = {
    reportsSent: 0,
    reportsReceived: 0,
    packetsLost: 0,
    jitterMs: 0,
    roundTripTimeMs: undefined,
    remote: undefined,
  };
  private readonly counters = {
    packetsSent: 0,
    bytesSent: 0,
    packetsReceived: 0,
    bytesReceived: 0,
    packetsRejected: 0,
    packetsFromOtherSources: 0,
    rtcpPacketsReceived: 0,
  };

  private constructor(rtp: Socket, rtcp: Socket, address: string, port: number, options: RtpSessionOptions) {
    this.rtp = rtp;
    this.rtcp = rtcp;
    this.address = address;
    this.port = port;
    this.ssrc = randomInt(1, 0x1_0000_0000) >>> 0;
    this.strict = options.strictSourceAddress ?? false;
    this.callId = options.callId;
    this.clock = options.clock ?? realClock;
    this.log = options.logger?.child({ component: 'rtp-session', callId: options.callId, port });
    this.packets = new Emitter(this.log, 'rtp-packet');
    rtp.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo));
    this.rtcpIntervalMs = options.rtcpIntervalMs ?? 5000;
    rtcp.on('message', (msg, rinfo) => this.onRtcp(msg, rinfo));
    const onError = (err: Error): void => this.log?.warn({ err }, 'RTP socket error');
    rtp.on('error', onError);
    rtcp.on('error', onError);
  }

  /**
   * Bind an RTP/RTCP port pair in the range. Tries random even ports.
   *
   * @throws {@link MediaError} `socket` when no pair is free, `invalid-argument` for a bad range
   */
  static async open(options: RtpSessionOptions = {}): Promise<RtpSession> {
    const address = options.bindAddress ?? '127.0.0.1';
    const [min, max] = options.portRange ?? [20000, 30000];
    const context = { callId: options.callId, component: 'rtp-session' };
    const lo = min + (min % 2);
    if (!(Number.isInteger(min) && Number.isInteger(max) && lo > 0 && lo + 1 <= max && max <= 65535)) {
      throw new MediaError('invalid-argument', `bad RTP port range [${min}, ${max}]`, context);
    }
    const pairs = Math.floor((max - lo + 1) / 2);
    const first = randomInt(0, pairs);
    const attempts = Math.min(pairs, 64);
    let lastError: unknown;
    for (let i = 0; i < attempts; i++) {
      const port = lo + ((first + i) % pairs) * 2;
      const rtp = await bind(address, port).catch((err: unknown) => {
        lastError = err;
        return undefined;
      });
      if (!rtp) continue;
      const rtcp = await bind(address, port + 1).catch((err: unknown) => {
        lastError = err;
        return undefined;
      });
      if (!rtcp) {
        await closeSocket(rtp);
        continue;
      }
      return new RtpSession(rtp, rtcp, address, port, options);
    }
    throw new MediaError('socket', `no free RTP port pair in [${min}, ${max}] on ${address}`, context, {
      cause: lastError,
    });
  }

  /**
   * Set the peer's address from SDP (answer or re-INVITE). Re-arms latching
   * when the address changes.
   */
  setRemote(address: string, port: number): void {
    const changed = this.sdpRemote?.address !== address || this.sdpRemote?.port !== port;
    this.sdpRemote = { address, port };
    if (!changed) return;
    // Packets of the old stream still in flight must not win the re-armed latch (the PBX moved its
    // media, RFC 3264 §8.3.1: the new address applies from the answer on). The old source is refused
    // for a short grace time only, so a PBX behind NAT that keeps its source port still latches.
    const old = this.latchedRemote;
    this.retiredRemote =
      old && (old.address !== address || old.port !== port)
        ? { ...old, until: this.clock.now() + RETIRED_SOURCE_GRACE_MS }
        : undefined;
    this.latchedRemote = undefined;
  }

  /** RTP clock rate of the negotiated codec (for jitter and the SR's timestamp). @default 8000 */
  setClockRate(hz: number): void {
    if (hz === this.clockRate) return;
    this.clockRate = hz;
    this.reception = undefined;
  }

  /**
   * SDES-SRTP on this leg (RFC 4568 with RFC 3711): protect what we send with `keys.local` and
   * require `keys.remote` on what arrives, RTP and RTCP alike; `undefined` goes back to plain RTP.
   * A key that did not change keeps its streams, so the rollover counter and replay window carry
   * on (RFC 4568 §7.1.4 allows keeping the key in a re-offer); a new remote key starts afresh.
   */
  useSrtp(keys: SrtpKeys | undefined): void {
    if (!keys) {
      this.srtp = undefined;
      return;
    }
    const old = this.srtp;
    const stream = (key: Buffer, rtcp: boolean) => {
      const master = key.subarray(0, SDES_KEY_BYTES);
      const salt = key.subarray(SDES_KEY_BYTES);
      return rtcp ? SrtpStream.forRtcp(SRTP_PROFILE, master, salt) : SrtpStream.sender(SRTP_PROFILE, master, salt);
    };
    const sameLocal = old?.local.equals(keys.local) ?? false;
    const sameRemote = old?.remote.equals(keys.remote) ?? false;
    this.srtp = {
      local: Buffer.from(keys.local),
      remote: Buffer.from(keys.remote),
      rtpOut: sameLocal && old ? old.rtpOut : stream(keys.local, false),
      rtcpOut: sameLocal && old ? old.rtcpOut : stream(keys.local, true),
      rtpIn: sameRemote && old ? old.rtpIn : stream(keys.remote, false),
      rtcpIn: sameRemote && old ? old.rtcpIn : stream(keys.remote, true),
    };
  }

  /** Subscribe to valid RTP from the peer. The view is reused: copy what you keep. */
  onPacket(cb: (packet: RtpView, source: RtpSource) => void): () => void {
    return this.packets.on(cb);
  }

  /**
   * Send one RTP packet with our SSRC and the next sequence number (audio
   * and telephone-events share the space, RFC 4733 §2.1). Dropped silently
   * while no remote is known or after close.
   */
  send(payloadType: number, timestamp: number, payload: Uint8Array, marker = false): void {
    const remote = this.latchedRemote ?? this.sdpRemote;
    if (!remote || this.closing) return;
    if (remote.address === '0.0.0.0' || remote.port === 0) return; // RFC 2543 hold: nowhere to send
    const length = RTP_HEADER_BYTES + payload.length;
    const srtp = this.srtp;
    if (srtp && this.scratch.length < length) this.scratch = Buffer.allocUnsafe(length);
    let buf: Buffer = srtp ? this.scratch.subarray(0, length) : Buffer.allocUnsafe(length);
    const seq = this.seq;
    this.seq = (seq + 1) & 0xffff;
    writeRtp(buf, payloadType, marker, seq, timestamp >>> 0, this.ssrc, payload);
    if (srtp) buf = srtp.rtpOut.protect(buf);
    this.counters.packetsSent++;
    this.counters.bytesSent += buf.length;
    this.payloadBytesSent += payload.length;
    this.lastSentTs = timestamp >>> 0;
    this.lastSentAt = this.clock.now();
    this.sentSinceReport = true;
    this.scheduleRtcp();
    this.rtp.send(buf, remote.port, remote.address, (err) => {
      if (err) this.log?.debug({ err }, 'RTP send failed');
    });
  }

  /** Counter snapshot. */
  stats(): RtpSessionStats {
    const r = this.reception;
    return {
      ...this.counters,
      remote: this.latchedRemote ?? this.sdpRemote,
      latched: this.latchedRemote !== undefined,
      rtcp: {
        ...this.rtcpStats,
        packetsLost: r?.packets_lost ?? 0,
        jitterMs: r ? (r.jitter / r.clockRate) * 1000 : 0,
        remote: this.rtcpStats.remote && { ...this.rtcpStats.remote },
      },
      ...(this.srtp ? { srtp: { rtpRejected: this.srtpRejected.rtp, rtcpRejected: this.srtpRejected.rtcp } } : {}),
    };
  }

  /** Close both sockets. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.packets.clear();
      this.clock.clearTimeout(this.rtcpTimer);
      this.rtcpTimer = undefined;
      await Promise.all([closeSocket(this.rtp), closeSocket(this.rtcp)]);
    })();
    return this.closing;
  }

  /** Arm the report timer (first RTP in either direction starts it). */
  private scheduleRtcp(): void {
    if (this.rtcpTimer || this.closing) return;
    // RFC 3550 §6.3.1: randomise the interval between 0.5 and 1.5 times the mean.
    const delay = this.rtcpIntervalMs * (0.5 + Math.random());
    this.rtcpTimer = this.clock.setTimeout(() => {
      this.rtcpTimer = undefined;
      // The next RTP packet in either direction arms the next report.
      this.sendRtcpReport();
    }, delay);
  }

  /** One compound report: SR (if we sent RTP since the last one) or RR, a block on the PBX's stream, CNAME. */
  private sendRtcpReport(): void {
    if (this.closing) return;
    const rtpRemote = this.latchedRemote ?? this.sdpRemote;
    const to = this.rtcpRemote ?? (rtpRemote && { address: rtpRemote.address, port: rtpRemote.port + 1 });
    if (!to || to.address === '0.0.0.0' || to.port <= 1) return;
    const now = this.clock.now();
    const blocks: ReportBlock[] = [];
    const r = this.reception;
    if (r && this.receivedSinceReport) {
      blocks.push({
        ssrc: this.receptionSsrc,
        fractionLost: r.fraction_lost,
        cumulativeLost: r.packets_lost,
        highestSeq: r.max_seq,
        jitter: r.jitter,
        lsr: this.peerSr?.lsr ?? 0,
        dlsr: this.peerSr ? ((now - this.peerSr.at) / 1000) * 65536 : 0,
      });
    }
    let sender: Parameters<typeof buildRtcpReport>[0]['sender'];
    if (this.sentSinceReport) {
      // The NTP time of now, and the RTP time of now extrapolated from the last packet sent (§6.4.1).
      const ntp = ntpFromUnixMs(performance.timeOrigin + now);
      const rtpNow = (this.lastSentTs + Math.round(((now - this.lastSentAt) * this.clockRate) / 1000)) >>> 0;
      sender = {
        ntpSeconds: ntp.seconds,
        ntpFraction: ntp.fraction,
        rtpTimestamp: rtpNow,
        packetCount: this.counters.packetsSent,
        octetCount: this.payloadBytesSent,
      };
    }
    this.sentSinceReport = false;
    this.receivedSinceReport = false;
    const plain = buildRtcpReport({ ssrc: this.ssrc, blocks, cname: this.cname, ...(sender ? { sender } : {}) });
    // RFC 3711 §3.4: with SRTP the reports are SRTCP, with the same master key as the RTP.
    const packet = this.srtp ? this.srtp.rtcpOut.protectRtcp(plain) : plain;
    this.rtcpStats.reportsSent++;
    this.rtcp.send(packet, to.port, to.address, (err) => {
      if (err) this.log?.debug({ err }, 'RTCP send failed');
    });
  }

  /** A datagram on the RTCP port: the PBX's SR/RR (only from the PBX's address). */
  private onRtcp(msg: Buffer, rinfo: RemoteInfo): void {
    this.counters.rtcpPacketsReceived++;
    if (this.closing) return;
    const peer = this.latchedRemote ?? this.sdpRemote;
    if (!peer || peer.address !== rinfo.address) return;
    let rtcp = msg;
    if (this.srtp) {
      const plain = this.srtp.rtcpIn.unprotectRtcp(msg);
      if (typeof plain === 'string') {
        if (this.srtpRejected.rtcp++ === 0)
          this.log?.debug({ why: plain, bytes: msg.length }, 'first SRTCP packet refused');
        return;
      }
      rtcp = plain;
    }
    const reports = parseRtcp(rtcp);
    if (reports.length === 0) return;
    this.rtcpStats.reportsReceived++;
    this.rtcpRemote = { address: rinfo.address, port: rinfo.port };
    const now = this.clock.now();
    for (const report of reports) {
      if (report.type === 'BYE') continue;
      if (report.type === 'SR') {
        this.peerSr = { lsr: ntpMiddle32(report.sender.ntpSeconds, report.sender.ntpFraction), at: now };
      }
      for (const b of report.blocks) {
        if (b.ssrc !== this.ssrc) continue;
        this.rtcpStats.remote = {
          fractionLost: b.fractionLost / 256,
          packetsLost: b.cumulativeLost,
          jitterMs: (b.jitter / this.clockRate) * 1000,
        };
        if (b.lsr !== 0) {
          // RFC 3550 §6.4.1: RTT = A − LSR − DLSR, all in 1/65536 s of the compact NTP clock.
          const ntp = ntpFromUnixMs(performance.timeOrigin + now);
          const a = ntpMiddle32(ntp.seconds, ntp.fraction);
          const rtt = ((a - b.lsr - b.dlsr) >>> 0) / 65536;
          if (rtt < 60) this.rtcpStats.roundTripTimeMs = rtt * 1000;
        }
      }
    }
  }

  private onDatagram(msg: Buffer, rinfo: RemoteInfo): void {
    if (this.closing) return;
    const srtp = this.srtp;
    if (srtp) {
      // Only an authenticated packet may latch (RFC 4961 latching must not hand the call to
      // whoever sends first), and one from another source is not worth a MAC.
      const latched = this.latchedRemote;
      if (latched && (latched.port !== rinfo.port || latched.address !== rinfo.address)) {
        this.counters.packetsFromOtherSources++;
        return;
      }
      const dropped = srtp.rtpIn.unprotect(msg, this.view);
      if (dropped === 'malformed') {
        this.counters.packetsRejected++;
        return;
      }
      if (dropped) {
        if (this.srtpRejected.rtp++ === 0)
          this.log?.debug({ why: dropped, bytes: msg.length }, 'first SRTP packet refused');
        return;
      }
    } else if (!parseRtp(msg, this.view)) {
      this.counters.packetsRejected++;
      return;
    }
    const latched = this.latchedRemote;
    if (latched) {
      if (latched.port !== rinfo.port || latched.address !== rinfo.address) {
        this.counters.packetsFromOtherSources++;
        return;
      }
    } else {
      if (this.strict && this.sdpRemote && this.sdpRemote.address !== rinfo.address) {
        this.counters.packetsFromOtherSources++;
        return;
      }
      const retired = this.retiredRemote;
      if (retired && retired.port === rinfo.port && retired.address === rinfo.address) {
        if (this.clock.now() < retired.until) {
          this.counters.packetsFromOtherSources++;
          return;
        }
        this.retiredRemote = undefined;
      }
      this.latchedRemote = { address: rinfo.address, port: rinfo.port };
      const sdp = this.sdpRemote;
      if (sdp && (sdp.address !== rinfo.address || sdp.port !== rinfo.port)) {
        this.log?.info({ sdp, actual: this.latchedRemote }, 'latched RTP to a source other than the SDP (RFC 4961)');
      }
    }
    this.counters.packetsReceived++;
    this.counters.bytesReceived += msg.length;
    const view = this.view;
    if (!this.reception || view.ssrc !== this.receptionSsrc) {
      this.reception = new ReceptionStatistics(this.clockRate);
      this.receptionSsrc = view.ssrc;
    }
    this.reception.add(
      view.sequenceNumber,
      view.timestamp,
      view.payload.length,
      msg.length - view.payload.length,
      this.clock.now(),
    );
    this.receivedSinceReport = true;
    this.scheduleRtcp();
    this.packets.emit(this.view, this.latchedRemote as RtpSource);
  }
}

function bind(address: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket({ type: isIPv6(address) ? 'udp6' : 'udp4' });
    const onError = (err: Error): void => {
      socket.close();
      reject(err);
    };
    socket.once('error', onError);
    socket.bind(port, address, () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

function closeSocket(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}
