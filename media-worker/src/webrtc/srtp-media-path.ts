/**
 * The WhatsApp leg's RTP fast path: once werift has done ICE and the DTLS
 * handshake, audio and telephone-event packets bypass werift's per-packet
 * pipeline and go straight between the UDP socket and the bridge.
 *
 * Why: per packet, werift runs a STUN parse attempt, three event hops (each
 * allocating a promise), SRTP with a new cipher/HMAC object, a bit-by-bit
 * header parse (twice), a packet clone and an `async` send chain. Profiled at
 * 100 passthrough calls that was most of the leg's CPU; this path does one
 * SRTP operation ({@link SrtpStream}) and one `send`.
 *
 * What stays with werift: ICE (connectivity checks and consent freshness are
 * STUN, which this path hands back untouched), DTLS, and RTCP (SRTCP, sender
 * and receiver reports). To keep those reports true, this path updates the
 * sender's report counters and feeds the receiver's report with
 * {@link ReceptionStatistics} (RFC 3550 A.3 loss, A.8 jitter).
 *
 * Coupling: werift 0.25.x internals, reached through {@link WeriftInternals}.
 * {@link SrtpMediaPath.attach} checks they look as expected and returns
 * undefined otherwise; the leg then keeps werift's own (slower) path, so a
 * werift upgrade degrades speed, never calls. The tests fail if that happens.
 *
 * @module
 */
import type { RTCRtpTransceiver } from 'werift';
import { type Clock, realClock } from '#core/clock.ts';
import { ReceptionStatistics } from '../media/reception-statistics.ts';
import { ntpFromUnixMs } from '../media/rtcp.ts';
import { createRtpView, type RtpView } from '../media/rtp.ts';
import { type SrtpDropReason, type SrtpProfile, SrtpStream, srtpProfileFromId } from './srtp.ts';

/** The werift 0.25 objects this path touches (public fields unless marked). */
interface WeriftInternals {
  dtls: {
    srtp?: {
      config?: {
        profile: number;
        keys: Record<'localMasterKey' | 'localMasterSalt' | 'remoteMasterKey' | 'remoteMasterSalt', Buffer>;
      };
    };
    packetsReceived: number;
    bytesReceived: number;
    packetsSent: number;
    bytesSent: number;
    iceTransport: { connection: { nominated?: CandidatePairLike } };
  };
  /** RTCRtpSender: report counters are private in werift's types. */
  sender: {
    ssrc: number;
    ntpTimestamp: bigint;
    rtpTimestamp: number;
    octetCount: number;
    packetCount: number;
    runRtcp(): Promise<void>;
  };
  /** RTCRtpReceiver: `remoteStreams` (per-SSRC statistics for its receiver reports) is private. */
  receiver: { remoteStreams: Record<number, unknown>; runRtcp(): Promise<void> };
}

interface CandidatePairLike {
  remoteAddr: readonly [string, number];
  packetsReceived: number;
  bytesReceived: number;
  packetsSent: number;
  bytesSent: number;
  protocol: {
    transport?: {
      onData: (data: Buffer, addr: unknown) => void;
      socket: { send(msg: Uint8Array, port: number, address: string): void };
      closed: boolean;
    };
  };
}

/** Packets this path dropped, by reason. */
export type SrtpDropCounters = Record<SrtpDropReason, number>;

/** Receive-side figures of the fast path. */
export interface SrtpMediaPathStats {
  packetsReceived: number;
  packetsLost: number;
  /** RFC 3550 interarrival jitter of the main stream, in ms. */
  jitterMs: number;
  dropped: SrtpDropCounters;
}

/** RTP clock of Opus and of the leg's timestamps (RFC 7587 §4.1). */
const CLOCK_RATE = 48_000;
/** The sender report's NTP/RTP timestamp pair is refreshed every this many packets (200 ms at 20 ms ptime). */
const SR_PAIR_EVERY = 10;

/** A connected WhatsApp leg's SRTP fast path; see the module comment. */
export class SrtpMediaPath {
  private readonly view: RtpView = createRtpView();
  private readonly streams = new Map<number, ReceptionStatistics>();
  private mainSsrc: number | undefined;
  private readonly dropped: SrtpDropCounters = { malformed: 0, authentication: 0, replay: 0 };
  private sentSinceSrPair = SR_PAIR_EVERY;
  private detached = false;

  private constructor(
    private readonly w: WeriftInternals,
    private readonly pair: CandidatePairLike,
    private readonly transport: NonNullable<CandidatePairLike['protocol']['transport']>,
    private readonly originalOnData: (data: Buffer, addr: unknown) => void,
    private readonly tx: SrtpStream,
    private readonly rx: SrtpStream,
    private readonly onRtp: (rtp: RtpView) => void,
    private readonly clock: Clock,
  ) {}

  /**
   * Take over RTP on a transceiver whose DTLS-SRTP is up. Returns undefined
   * (and changes nothing) when werift's objects are not as expected or the
   * negotiated profile is not one {@link SrtpStream} implements.
   *
   * @param onRtp - every authenticated, non-replayed RTP packet; the view and
   *   its payload are valid only during the call.
   * @param clock - arrival times (RFC 3550 A.8 jitter) and the sender report's
   *   NTP time; on the real clock `performance.timeOrigin + now()` is the wall clock.
   */
  static attach(
    transceiver: RTCRtpTransceiver,
    onRtp: (rtp: RtpView) => void,
    clock: Clock = realClock,
  ): SrtpMediaPath | undefined {
    const w = {
      dtls: transceiver.dtlsTransport,
      sender: transceiver.sender,
      receiver: transceiver.receiver,
    } as unknown as WeriftInternals;
    const config = w.dtls?.srtp?.config;
    const profile: SrtpProfile | undefined = config ? srtpProfileFromId(config.profile) : undefined;
    const pair = w.dtls?.iceTransport?.connection?.nominated;
    const transport = pair?.protocol?.transport;
    if (
      !config ||
      !profile ||
      !pair ||
      !transport ||
      transport.closed ||
      typeof transport.onData !== 'function' ||
      typeof transport.socket?.send !== 'function' ||
      !Array.isArray(pair.remoteAddr) ||
      typeof w.sender.packetCount !== 'number' ||
      typeof w.sender.ntpTimestamp !== 'bigint' ||
      typeof w.sender.runRtcp !== 'function' ||
      typeof w.receiver.remoteStreams !== 'object' ||
      typeof w.receiver.runRtcp !== 'function'
    ) {
      return undefined;
    }
    const { keys } = config;
    const path = new SrtpMediaPath(
      w,
      pair,
      transport,
      transport.onData,
      SrtpStream.sender(profile, keys.localMasterKey, keys.localMasterSalt),
      SrtpStream.receiver(profile, keys.remoteMasterKey, keys.remoteMasterSalt),
      onRtp,
      clock,
    );
    transport.onData = (data, addr) => {
      if (!path.receive(data)) path.originalOnData(data, addr);
    };
    // werift starts these loops on its own first packet; ours never pass through it.
    w.sender.runRtcp().catch(() => undefined);
    w.receiver.runRtcp().catch(() => undefined);
    return path;
  }

  /** The negotiated protection profile. */
  get profile(): SrtpProfile {
    return this.tx.profile;
  }

  /**
   * Protect and send one plain RTP packet (12-byte header, no CSRC or
   * extension). `payloadBytes` feeds the sender report's octet count.
   */
  send(rtp: Uint8Array, payloadBytes: number): void {
    if (this.detached || this.transport.closed) return;
    const srtp = this.tx.protect(rtp);
    const [host, port] = this.pair.remoteAddr;
    this.transport.socket.send(srtp, port, host);
    this.pair.packetsSent++;
    this.pair.bytesSent += srtp.length;
    this.w.dtls.packetsSent++;
    this.w.dtls.bytesSent += srtp.length;
    // RFC 3550 §6.4.1 sender info, read by werift's sender-report loop.
    const s = this.w.sender;
    s.packetCount = (s.packetCount + 1) >>> 0;
    s.octetCount = (s.octetCount + payloadBytes) >>> 0;
    if (++this.sentSinceSrPair >= SR_PAIR_EVERY) {
      // The NTP and RTP timestamps of one instant: the packet being sent now.
      this.sentSinceSrPair = 0;
      s.ntpTimestamp = ntpAt(this.clock.now());
      s.rtpTimestamp =
        ((rtp[4] as number) * 2 ** 24 +
          (((rtp[5] as number) << 16) | ((rtp[6] as number) << 8) | (rtp[7] as number))) >>>
        0;
    }
  }

  /** Loss and jitter of the main (audio) stream, and the drop counters. */
  stats(): SrtpMediaPathStats {
    const main = this.mainSsrc === undefined ? undefined : this.streams.get(this.mainSsrc);
    let packetsReceived = 0;
    for (const s of this.streams.values()) packetsReceived += s.packets_received;
    return {
      packetsReceived,
      packetsLost: main?.packets_lost ?? 0,
      jitterMs: main ? (main.jitter / CLOCK_RATE) * 1000 : 0,
      dropped: { ...this.dropped },
    };
  }

  /** Give RTP back to werift's own path (used when the leg closes). Idempotent. */
  detach(): void {
    if (this.detached) return;
    this.detached = true;
    this.transport.onData = this.originalOnData;
  }

  /**
   * One datagram from the leg's socket. Returns false for anything that is
   * not SRTP (STUN, DTLS, SRTCP), which goes on to werift unchanged.
   */
  private receive(data: Buffer): boolean {
    if (this.detached || data.length < 12) return false;
    // RFC 7983 §7: 128–191 in the first byte is RTP or RTCP; RFC 5761 §4:
    // RTCP packet types 192–223 occupy the second byte.
    const b0 = data[0] as number;
    const b1 = data[1] as number;
    if (b0 < 128 || b0 > 191 || (b1 >= 192 && b1 <= 223)) return false;
    this.pair.packetsReceived++;
    this.pair.bytesReceived += data.length;
    this.w.dtls.packetsReceived++;
    this.w.dtls.bytesReceived += data.length;
    const view = this.view;
    const dropped = this.rx.unprotect(data, view);
    if (dropped) {
      this.dropped[dropped]++;
      return true;
    }
    let stats = this.streams.get(view.ssrc);
    if (!stats) {
      stats = new ReceptionStatistics(CLOCK_RATE);
      this.streams.set(view.ssrc, stats);
      this.mainSsrc ??= view.ssrc;
      this.w.receiver.remoteStreams[view.ssrc] = stats;
    }
    const headerBytes = view.payload.byteOffset - data.byteOffset;
    stats.add(view.sequenceNumber, view.timestamp, view.payload.length, headerBytes, this.clock.now());
    this.onRtp(view);
    return true;
  }
}

/**
 * A monotonic clock reading as a 64-bit NTP timestamp (RFC 5905 §6): the
 * process's time origin plus the reading is the wall clock at that instant.
 */
function ntpAt(monotonicMs: number): bigint {
  const { seconds, fraction } = ntpFromUnixMs(performance.timeOrigin + monotonicMs);
  return (BigInt(seconds) << 32n) | BigInt(fraction);
}
