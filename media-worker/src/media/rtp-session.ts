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
 * @module
 */
import { randomInt } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Logger } from 'pino';
import { MediaError } from './errors.ts';
import { createRtpView, parseRtp, RTP_HEADER_BYTES, type RtpView, writeRtp } from './rtp.ts';

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
}

/** Source of a received packet. */
export interface RtpSource {
  address: string;
  port: number;
}

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
}

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
  private readonly view: RtpView = createRtpView();
  private readonly listeners = new Set<(packet: RtpView, source: RtpSource) => void>();
  private sdpRemote: RtpSource | undefined;
  private latchedRemote: RtpSource | undefined;
  private seq = randomInt(0, 0x10000);
  private closing: Promise<void> | undefined;
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
    this.log = options.logger?.child({ component: 'rtp-session', callId: options.callId, port });
    rtp.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo));
    rtcp.on('message', () => {
      this.counters.rtcpPacketsReceived++;
    });
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
    if (changed) this.latchedRemote = undefined;
  }

  /** Subscribe to valid RTP from the peer. The view is reused: copy what you keep. */
  onPacket(cb: (packet: RtpView, source: RtpSource) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
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
    const buf = Buffer.allocUnsafe(RTP_HEADER_BYTES + payload.length);
    const seq = this.seq;
    this.seq = (seq + 1) & 0xffff;
    writeRtp(buf, payloadType, marker, seq, timestamp >>> 0, this.ssrc, payload);
    this.counters.packetsSent++;
    this.counters.bytesSent += buf.length;
    this.rtp.send(buf, remote.port, remote.address, (err) => {
      if (err) this.log?.debug({ err }, 'RTP send failed');
    });
  }

  /** Counter snapshot. */
  stats(): RtpSessionStats {
    return {
      ...this.counters,
      remote: this.latchedRemote ?? this.sdpRemote,
      latched: this.latchedRemote !== undefined,
    };
  }

  /** Close both sockets. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.listeners.clear();
      await Promise.all([closeSocket(this.rtp), closeSocket(this.rtcp)]);
    })();
    return this.closing;
  }

  private onDatagram(msg: Buffer, rinfo: RemoteInfo): void {
    if (this.closing) return;
    if (!parseRtp(msg, this.view)) {
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
      this.latchedRemote = { address: rinfo.address, port: rinfo.port };
      const sdp = this.sdpRemote;
      if (sdp && (sdp.address !== rinfo.address || sdp.port !== rinfo.port)) {
        this.log?.info({ sdp, actual: this.latchedRemote }, 'latched RTP to a source other than the SDP (RFC 4961)');
      }
    }
    this.counters.packetsReceived++;
    this.counters.bytesReceived += msg.length;
    const source = this.latchedRemote as RtpSource;
    for (const cb of this.listeners) {
      try {
        cb(this.view, source);
      } catch (err) {
        this.log?.warn({ err, callId: this.callId }, 'an RTP listener threw');
      }
    }
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
