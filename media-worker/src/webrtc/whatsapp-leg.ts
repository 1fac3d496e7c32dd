/**
 * The WhatsApp leg of a bridged call: one werift `RTCPeerConnection` facing
 * Meta's media relay (docs/meta-calling-api.md §5.1).
 *
 * What Meta requires, and how this leg meets it:
 * - Meta's relay is ICE-lite and always controlled; the business must be a
 *   **full ICE agent in the controlling role** and start the checks
 *   (RFC 8445 §6.1.1). werift takes that role by itself when the offer says
 *   `a=ice-lite`, and then uses regular nomination (§8.1.1).
 * - The business answers **`a=setup:active`**, i.e. it is the DTLS client
 *   (RFC 5763 §5), with **exactly one sha-256 fingerprint** (Meta rejects
 *   extra fingerprint lines, error 138008).
 * - One BUNDLEd, rtcp-mux audio m-line with one SSRC for the whole call:
 *   Opus/48000 (RFC 7587) with `a=ptime:20` and telephone-event/8000
 *   (RFC 4733) on PT 126. Meta rewrites the business SSRC to a fixed value,
 *   so a second SSRC corrupts audio: this leg owns one sequence/timestamp
 *   space for silence, audio and DTMF alike.
 * - Meta's relay sends nothing until the business's first ("maiden") packet
 *   and ends the call after ~20 s without media: {@link WhatsAppLeg.startSilence}
 *   sends Opus silence from the moment DTLS is up until real audio flows.
 *
 * ICE is configured explicitly: werift would otherwise gather a
 * server-reflexive candidate from stun.l.google.com (a 5 s stall without
 * DNS). Host candidates come only from the configured bind address, and a
 * cloud deployment behind 1:1 NAT advertises its public address instead.
 *
 * @module
 */
import { Encoder } from '@evan/opus';
import type { Logger } from 'pino';
import { RTCPeerConnection, RTCRtpCodecParameters, type RTCRtpTransceiver, RtpHeader, RtpPacket } from 'werift';
import { MediaError, type MediaErrorCode } from '../media/errors.ts';
import { FrameClock } from '../media/frame-clock.ts';
import {
  buildTelephoneEvent,
  DTMF_EVENTS,
  dtmfEventCode,
  parseTelephoneEvent,
  RTP_HEADER_BYTES,
  type RtpView,
  type TelephoneEvent,
  TelephoneEventReceiver,
  writeRtp,
} from '../media/rtp.ts';
import type { SrtpProfile } from './srtp.ts';
import { type SrtpDropCounters, SrtpMediaPath } from './srtp-media-path.ts';

/** Opus payload type Meta uses (§5.1). */
export const WHATSAPP_OPUS_PT = 111;
/** telephone-event/8000 payload type Meta uses (§5.1). */
export const WHATSAPP_TELEPHONE_EVENT_PT = 126;
/** RTP clock ticks per 20 ms Opus frame (RFC 7587 §4.1: the clock is always 48 kHz). */
export const OPUS_TICKS_PER_FRAME = 960;

const FRAME_MS = 20;
/** 48 kHz RTP clock ticks per millisecond. */
const TICKS_PER_MS = 48;
const OPUS_FMTP = 'minptime=10;useinbandfec=1';

let silenceFrame: Buffer | undefined;
/**
 * One 20 ms Opus frame of digital silence, encoded once per process. Any
 * valid Opus packet works for every decoder regardless of its sample rate.
 */
export function opusSilenceFrame(): Buffer {
  if (!silenceFrame) {
    const encoder = new Encoder({ channels: 1, sample_rate: 48_000, application: 'voip' });
    silenceFrame = Buffer.from(encoder.encode(new Int16Array(960)));
  }
  return silenceFrame;
}

/** Options for {@link WhatsAppLeg}. */
export interface WhatsAppLegOptions {
  /**
   * IPv4 address the ICE socket binds and the only host candidate.
   * @default '127.0.0.1'
   */
  bindAddress?: string;
  /**
   * Optional IPv6 address for a second host candidate (Meta offers one IPv4
   * and one IPv6 candidate, §5.1). Off by default.
   */
  bindAddress6?: string;
  /**
   * Public IPv4 address to advertise (cloud 1:1 NAT, e.g. a Fargate task's
   * public IP): replaces the bind address in `c=` and in the host candidate.
   * Meta also learns it peer-reflexively from our checks (§5.1).
   */
  publicAddress?: string;
  /** UDP port range for the ICE socket, `[min, max]` (min < max). Default: ephemeral. */
  portRange?: [number, number];
  /**
   * `host:port` of a STUN server for a server-reflexive candidate. Off by
   * default: Meta needs none, and werift's fallback (Google) stalls offline.
   */
  stunServer?: string;
  /**
   * While silence is armed, how long without {@link WhatsAppLeg.sendAudio}
   * before silence resumes by itself; a caller that knows its audio ended
   * calls {@link WhatsAppLeg.resumeSilence} instead (the media bridge does). @default 100
   */
  silenceResumeMs?: number;
  /** Call id for logs and errors. */
  callId?: string;
  /** Logger; a `component: 'whatsapp-leg'` child is used. */
  logger?: Logger;
}

/** Options for {@link WhatsAppLeg.sendAudio}. */
export interface SendAudioOptions {
  /**
   * 48 kHz ticks since the previous audio packet. @default 960 (20 ms).
   * Ignored for the first packet after generated silence, which continues
   * the silence's timeline (so nothing jumps ahead of the wall clock).
   */
  timestampDelta?: number;
  /** Set the RTP marker (start of a talkspurt, RFC 3551 §4.1). */
  marker?: boolean;
}

/** Options for {@link WhatsAppLeg.sendDtmf}. */
export interface SendDtmfOptions {
  /** Tone length per digit. @default 100 */
  durationMs?: number;
  /** Pause between digits. @default 60 */
  gapMs?: number;
  /** Volume in -dBm0 (RFC 4733 §2.3). @default 10 */
  volume?: number;
}

/** A received telephone-event packet with its place in the event. */
export interface ReceivedTelephoneEvent extends TelephoneEvent {
  /** `start` (first packet seen), `update`, or `end` (first end packet; retransmissions are dropped). */
  phase: 'start' | 'update' | 'end';
  /** RTP timestamp of the event start (Meta's audio clock, 48 kHz). */
  timestamp: number;
}

/** Snapshot returned by {@link WhatsAppLeg.stats}. */
export interface WhatsAppLegStats {
  /** RTP packets sent (audio, silence and telephone-event). */
  packetsSent: number;
  /** Of which generated silence frames. */
  silenceFramesSent: number;
  /** RTP packets received from Meta (audio and telephone-event). */
  packetsReceived: number;
  /** Packets lost from Meta (RTCP receiver statistics, RFC 3550 A.3). */
  packetsLost: number;
  /** Inter-arrival jitter of Meta's stream in ms (RFC 3550 A.8). */
  jitterMs: number;
  /** Round-trip time in ms from RTCP (remote-inbound-rtp), or the ICE pair's STUN RTT. */
  roundTripTimeMs: number | undefined;
  /** Fraction of our packets Meta reports lost (0–1). */
  remoteFractionLost: number | undefined;
  /** DTMF digits sent / received. */
  dtmfSent: number;
  dtmfReceived: number;
  /**
   * SRTP packets from Meta dropped (failed authentication, replays, malformed);
   * undefined while werift's own RTP path is in use (see {@link SrtpMediaPath}).
   */
  srtpDropped: SrtpDropCounters | undefined;
}

type Role = 'answerer' | 'offerer';

/** W3C `RTCPeerConnectionState`. */
export type RTCPeerConnectionState = 'new' | 'connecting' | 'connected' | 'disconnected' | 'failed' | 'closed';

/**
 * The WhatsApp WebRTC leg. User-initiated call: {@link answer} Meta's offer.
 * Business-initiated: {@link createOffer}, then {@link applyAnswer}.
 */
export class WhatsAppLeg {
  private readonly opts: WhatsAppLegOptions;
  private readonly bindAddress: string;
  private readonly log: Logger | undefined;
  private readonly pc: RTCPeerConnection;
  private transceiver: RTCRtpTransceiver | undefined;
  private role: Role | undefined;
  private closing: Promise<void> | undefined;
  private readonly unsubscribers: (() => void)[] = [];

  // Outbound RTP state: one SSRC (the sender's), one seq and timestamp space.
  private seq = Math.floor(Math.random() * 0x10000);
  private ts = Math.floor(Math.random() * 0x1_0000_0000) >>> 0;
  private sentAny = false;
  private lastSentAt = 0;
  /**
   * Wall-clock time (`performance.now()`) the last sent timestamp stands
   * for: advanced by each packet's timestamp delta, never earlier than the
   * moment the packet went out. Its excess over "now" is how far the stream
   * runs ahead of real time ({@link audioLeadMs}).
   */
  private tsWallAt = 0;
  private lastWasSilence = false;
  private lastAudioAt = Number.NEGATIVE_INFINITY;
  private silenceArmed = false;
  private readonly silenceResumeMs: number;
  private readonly silenceClock: FrameClock;
  private teEventTs: number | undefined;
  private teEvent: TelephoneEvent | undefined;
  private dtmfChain: Promise<void> = Promise.resolve();

  /** RTP fast path once DTLS-SRTP is up (undefined: werift's own path). */
  private mediaPath: SrtpMediaPath | undefined;
  /** Plain RTP is built here before {@link SrtpMediaPath.send} protects it into a new buffer. */
  private readonly txScratch = Buffer.alloc(RTP_HEADER_BYTES + 1500);
  /** werift-path packets are re-described here for the listeners. */
  private readonly rxView: RtpView = {
    payloadType: 0,
    marker: false,
    sequenceNumber: 0,
    timestamp: 0,
    ssrc: 0,
    payload: new Uint8Array(0),
  };

  // Inbound.
  private readonly audioListeners = new Set<(rtp: RtpView) => void>();
  private readonly eventListeners = new Set<(ev: ReceivedTelephoneEvent) => void>();
  private readonly digitListeners = new Set<(digit: string) => void>();
  private readonly stateListeners = new Set<(state: RTCPeerConnectionState) => void>();
  private readonly teReceiver = new TelephoneEventReceiver();
  private remoteOpusPt = WHATSAPP_OPUS_PT;
  private remoteTePt = WHATSAPP_TELEPHONE_EVENT_PT;
  private connectedAt: number | undefined;
  private firstPacketSentAt: number | undefined;

  private readonly counters = {
    packetsSent: 0,
    silenceFramesSent: 0,
    packetsReceived: 0,
    dtmfSent: 0,
    dtmfReceived: 0,
  };

  /** @param options - see {@link WhatsAppLegOptions} */
  constructor(options: WhatsAppLegOptions = {}) {
    this.opts = options;
    this.bindAddress = options.bindAddress ?? '127.0.0.1';
    this.log = options.logger?.child({ component: 'whatsapp-leg', callId: options.callId });
    this.silenceResumeMs = options.silenceResumeMs ?? 100;
    this.silenceClock = new FrameClock(() => this.onSilenceFrame());
    const stun = options.stunServer;
    this.pc = new RTCPeerConnection({
      iceServers: stun ? [{ urls: `stun:${stun}` }] : [],
      iceStunGatherTimeout: 1,
      // No interface enumeration: the one host candidate is the bind address,
      // and the socket is bound to it so nothing else can leak into the SDP.
      iceUseIpv4: false,
      iceUseIpv6: false,
      iceUseTcp: false,
      iceAdditionalHostAddresses: options.bindAddress6 ? [this.bindAddress, options.bindAddress6] : [this.bindAddress],
      iceInterfaceAddresses: options.bindAddress6
        ? { udp4: this.bindAddress, udp6: options.bindAddress6 }
        : { udp4: this.bindAddress },
      icePortRange: options.portRange,
      bundlePolicy: 'max-bundle',
      codecs: {
        audio: [
          new RTCRtpCodecParameters({
            mimeType: 'audio/opus',
            clockRate: 48_000,
            channels: 2,
            payloadType: WHATSAPP_OPUS_PT,
            parameters: OPUS_FMTP,
          }),
          new RTCRtpCodecParameters({
            mimeType: 'audio/telephone-event',
            clockRate: 8000,
            payloadType: WHATSAPP_TELEPHONE_EVENT_PT,
          }),
        ],
      },
    });
    const sub = this.pc.connectionStateChange.subscribe((state) => this.onState(state));
    this.unsubscribers.push(() => sub.unSubscribe());
  }

  // ------------------------------------------------------------ signalling

  /**
   * User-initiated call: answer Meta's offer (the `connect` webhook's
   * `session.sdp`). The answer is full ICE, `a=setup:active`, one sha-256
   * fingerprint, Opus + telephone-event/8000, `a=ptime:20`; it passes Meta's
   * SDP validation. Connectivity checks start at once.
   *
   * @throws {@link MediaError} `invalid-sdp` if the offer has no Opus/48000
   */
  async answer(metaOffer: string): Promise<string> {
    this.begin('answerer');
    if (!/^a=rtpmap:\d+ opus\/48000/im.test(metaOffer)) {
      throw this.error('invalid-sdp', 'the offer has no opus/48000');
    }
    try {
      await this.pc.setRemoteDescription({ type: 'offer', sdp: withoutWidebandTelephoneEvents(metaOffer) });
      const transceiver = this.pc.getTransceivers()[0];
      if (!transceiver) throw new Error('the offer produced no audio transceiver');
      transceiver.setDirection('sendrecv');
      // RFC 5763 §5: answer an actpass/passive offer as DTLS client (setup:active),
      // as Meta recommends (M-PAT); an `active` offer leaves us the server.
      transceiver.dtlsTransport.role = offeredSetup(metaOffer) === 'active' ? 'server' : 'client';
      this.attach(transceiver);
      this.learnRemotePayloadTypes(metaOffer);
      await this.pc.setLocalDescription(await this.pc.createAnswer());
      return this.shapeLocalSdp();
    } catch (err) {
      throw this.wrap(err, 'answering the Meta offer failed');
    }
  }

  /**
   * Business-initiated call: create the offer for `POST /calls action=connect`.
   * `a=setup:actpass`; Meta's answer pins the DTLS role.
   */
  async createOffer(): Promise<string> {
    this.begin('offerer');
    try {
      const transceiver = this.pc.addTransceiver('audio', { direction: 'sendrecv' });
      this.attach(transceiver);
      await this.pc.setLocalDescription(await this.pc.createOffer());
      return this.shapeLocalSdp();
    } catch (err) {
      throw this.wrap(err, 'creating the offer failed');
    }
  }

  /** Apply Meta's answer (the BIC `connect` webhook's `session.sdp`) to {@link createOffer}. */
  async applyAnswer(metaAnswer: string): Promise<void> {
    this.assertOpen();
    if (this.role !== 'offerer' || this.pc.remoteDescription) {
      throw this.error('invalid-state', 'applyAnswer needs a prior createOffer and no applied answer');
    }
    try {
      this.learnRemotePayloadTypes(metaAnswer);
      await this.pc.setRemoteDescription({ type: 'answer', sdp: withoutWidebandTelephoneEvents(metaAnswer) });
    } catch (err) {
      throw this.wrap(err, 'applying the Meta answer failed');
    }
  }

  /** W3C connection state of the PeerConnection. */
  get connectionState(): RTCPeerConnectionState {
    return this.pc.connectionState;
  }

  /** `performance.now()` when the leg became `connected` (ICE + DTLS), if it did. */
  get connectedAtMs(): number | undefined {
    return this.connectedAt;
  }

  /** `performance.now()` of the first packet sent to Meta (the maiden packet). */
  get firstPacketSentAtMs(): number | undefined {
    return this.firstPacketSentAt;
  }

  /** The ICE role werift took (`controlling` against Meta's ICE-lite relay). */
  get iceRole(): 'controlling' | 'controlled' | 'unknown' | undefined {
    return this.pc.iceTransports[0]?.role;
  }

  /** The DTLS role (`client` when we answered `a=setup:active`). */
  get dtlsRole(): 'client' | 'server' | 'auto' | undefined {
    return this.pc.dtlsTransports[0]?.role;
  }

  /** Subscribe to connection state changes; returns an unsubscribe function. */
  onConnectionStateChange(cb: (state: RTCPeerConnectionState) => void): () => void {
    this.stateListeners.add(cb);
    return () => this.stateListeners.delete(cb);
  }

  /**
   * Resolve once `connected`; reject with {@link MediaError} on `failed`,
   * `closed`, or after `timeoutMs`.
   */
  waitForConnected(timeoutMs = 5000): Promise<void> {
    const now = this.pc.connectionState;
    if (now === 'connected') return Promise.resolve();
    if (now === 'failed' || now === 'closed' || this.closing) {
      return Promise.reject(this.error(this.closing ? 'closed' : 'webrtc', `connection ${now}`));
    }
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(this.error('timeout', `not connected after ${timeoutMs} ms (${this.pc.connectionState})`));
      }, timeoutMs);
      const off = this.onConnectionStateChange((s) => {
        if (s !== 'connected' && s !== 'failed' && s !== 'closed') return;
        clearTimeout(timer);
        off();
        if (s === 'connected') resolve();
        else reject(this.error('webrtc', `connection ${s}`));
      });
    });
  }

  // ------------------------------------------------------------ receive

  /**
   * Subscribe to Opus RTP from Meta (telephone-events excluded). The packet
   * is werift's; do not keep it past the callback. Returns an unsubscribe function.
   */
  onAudio(cb: (rtp: RtpView) => void): () => void {
    this.audioListeners.add(cb);
    return () => this.audioListeners.delete(cb);
  }

  /**
   * The SRTP profile of the RTP fast path once it carries the media, or
   * undefined while werift's own path does (before DTLS, or if werift's
   * internals were not as expected).
   */
  get srtpFastPathProfile(): SrtpProfile | undefined {
    return this.mediaPath?.profile;
  }

  /** Subscribe to every RFC 4733 packet from Meta, de-duplicated (see {@link ReceivedTelephoneEvent}). */
  onTelephoneEvent(cb: (ev: ReceivedTelephoneEvent) => void): () => void {
    this.eventListeners.add(cb);
    return () => this.eventListeners.delete(cb);
  }

  /** Subscribe to completed DTMF digits from Meta (one call per event). */
  onDtmf(cb: (digit: string) => void): () => void {
    this.digitListeners.add(cb);
    return () => this.digitListeners.delete(cb);
  }

  // ------------------------------------------------------------ send

  /**
   * Send Opus silence every 20 ms from the moment DTLS is up (at once if it
   * already is) whenever no audio was sent for `silenceResumeMs`. This is the
   * maiden packet Meta waits for (M-SIP) and keeps Meta's 20 s no-media
   * watchdog quiet before the SIP side answers and while it is on hold.
   */
  startSilence(): void {
    if (this.closing) return;
    this.silenceArmed = true;
    if (this.pc.connectionState === 'connected') this.silenceClock.start();
  }

  /**
   * The caller's audio has stopped (end of a talkspurt, the PBX went quiet):
   * if silence is armed, resume it with the next frame, now, instead of
   * waiting `silenceResumeMs`, so Meta's stream has no hole. No-op when
   * silence is not armed; the next {@link sendAudio} takes over again.
   */
  resumeSilence(): void {
    if (this.closing || !this.silenceArmed || this.lastWasSilence) return;
    this.lastAudioAt = Number.NEGATIVE_INFINITY;
    if (this.pc.connectionState !== 'connected') return;
    // Restart the clock so its first frame runs at once and the next ones
    // follow every 20 ms from here.
    this.silenceClock.stop();
    this.silenceClock.start();
  }

  /**
   * How far ahead of real time (ms) an audio frame sent now with
   * `timestampDelta` would put the outgoing stream: its timestamp, on the
   * leg's timeline, minus the wall clock. The timeline follows the wall
   * clock whenever it falls behind (late packets, gaps filled by silence),
   * so a positive value means packets came in faster than real time, e.g.
   * a burst after a stall. Negative when the frame would be late.
   *
   * @param timestampDelta - as for {@link sendAudio} (48 kHz ticks). @default 960
   * @param now - `performance.now()` to evaluate at
   */
  audioLeadMs(timestampDelta: number = OPUS_TICKS_PER_FRAME, now: number = performance.now()): number {
    if (!this.sentAny) return 0;
    const delta = this.lastWasSilence ? OPUS_TICKS_PER_FRAME : timestampDelta;
    return this.tsWallAt + delta / TICKS_PER_MS - now;
  }

  /** Stop generating silence (audio sent with {@link sendAudio} is unaffected). */
  stopSilence(): void {
    this.silenceArmed = false;
    this.silenceClock.stop();
  }

  /**
   * Send one Opus frame to Meta. The leg stamps sequence number, timestamp
   * (48 kHz, RFC 7587) and SSRC, so silence, audio and DTMF share one
   * continuous stream. Dropped (clock still advancing) while a DTMF event is
   * being sent (RFC 4733 §2.5.1.1) and before DTLS is up.
   */
  sendAudio(payload: Uint8Array, options?: SendAudioOptions): void {
    if (this.closing) return;
    const now = performance.now();
    this.lastAudioAt = now;
    const afterSilence = this.lastWasSilence;
    const delta =
      afterSilence || !this.sentAny ? OPUS_TICKS_PER_FRAME : (options?.timestampDelta ?? OPUS_TICKS_PER_FRAME);
    this.sendOpus(payload, delta, afterSilence || options?.marker === true, false, now);
  }

  /**
   * Relay one RFC 4733 telephone-event packet to Meta on PT 126 (durations
   * in 8 kHz units, §5.1). Call with `end: false` for the start and updates,
   * then `end: true` (this method sends the end packet three times,
   * RFC 4733 §2.5.1.4). The event's timestamp is the audio timestamp when it
   * started, on the shared sequence space (Meta: "DTMF packets share the
   * audio stream's timestamp and sequence bases").
   *
   * @param isStart - force a new event even if the previous one of the same
   *   code never ended (its end packets were lost)
   */
  sendTelephoneEvent(ev: TelephoneEvent, isStart = false): void {
    if (this.closing || !this.transceiver) return;
    let marker = false;
    if (isStart || this.teEvent === undefined || this.teEvent.event !== ev.event) {
      // A new event starts on the audio timeline "now" (RFC 4733 §2.5.1.2).
      this.teEventTs = this.nextAudioTimestamp(performance.now());
      marker = true;
    }
    this.teEvent = ev;
    const repeats = ev.end ? 3 : 1;
    const payload = buildTelephoneEvent(ev);
    for (let i = 0; i < repeats; i++) this.sendTelephoneEventPacket(payload, marker && i === 0);
    if (ev.end) {
      this.teEvent = undefined;
      this.counters.dtmfSent++;
    }
  }

  /**
   * Send DTMF digits as RFC 4733 events paced in real time (an update every
   * 20 ms, three end packets, then a pause). Resolves when the last digit
   * ended; calls queue behind each other.
   *
   * @throws {@link MediaError} `invalid-argument` for characters outside 0-9*#A-D
   */
  sendDtmf(digits: string, options: SendDtmfOptions = {}): Promise<void> {
    if (this.closing) return Promise.reject(this.error('closed', 'the WhatsApp leg is closed'));
    const codes = [...digits].map(dtmfEventCode);
    if (codes.some((c) => c < 0)) {
      return Promise.reject(this.error('invalid-argument', `invalid DTMF digits "${digits}"`));
    }
    const ticks = Math.max(1, Math.round((options.durationMs ?? 100) / FRAME_MS));
    const gapMs = Math.max(0, options.gapMs ?? 60);
    const volume = options.volume ?? 10;
    const run = async (): Promise<void> => {
      for (const event of codes) {
        for (let t = 1; t <= ticks && !this.closing; t++) {
          this.sendTelephoneEvent({ event, end: t === ticks, volume, duration: t * 160 }, t === 1);
          await sleep(FRAME_MS);
        }
        if (gapMs > 0) await sleep(gapMs);
      }
    };
    this.dtmfChain = this.dtmfChain.then(run, run);
    return this.dtmfChain;
  }

  // ------------------------------------------------------------ stats / close

  /** Counters plus RTCP-derived loss, jitter and RTT from `getStats()`. */
  async stats(): Promise<WhatsAppLegStats> {
    const fast = this.mediaPath?.stats();
    const out: WhatsAppLegStats = {
      ...this.counters,
      packetsLost: fast?.packetsLost ?? 0,
      jitterMs: fast?.jitterMs ?? 0,
      roundTripTimeMs: undefined,
      remoteFractionLost: undefined,
      srtpDropped: fast?.dropped,
    };
    if (this.closing) return out;
    const report = await this.pc.getStats();
    let pairRtt: number | undefined;
    for (const s of report.values()) {
      const r = s as unknown as Record<string, unknown> & { type: string };
      if (r.type === 'inbound-rtp' && !fast) {
        out.packetsLost = num(r.packetsLost) ?? 0;
        out.jitterMs = (num(r.jitter) ?? 0) * 1000;
      } else if (r.type === 'remote-inbound-rtp') {
        const rtt = num(r.roundTripTime);
        if (rtt !== undefined) out.roundTripTimeMs = rtt * 1000;
        out.remoteFractionLost = num(r.fractionLost);
      } else if (r.type === 'candidate-pair' && r.nominated === true) {
        const rtt = num(r.currentRoundTripTime);
        if (rtt !== undefined) pairRtt = rtt * 1000;
      }
    }
    out.roundTripTimeMs ??= pairRtt;
    return out;
  }

  /** Close the PeerConnection, stop timers and drop listeners. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.silenceArmed = false;
    this.silenceClock.stop();
    this.mediaPath?.detach();
    for (const off of this.unsubscribers.splice(0)) off();
    try {
      await this.pc.close();
    } catch (err) {
      this.log?.warn({ err }, 'closing the PeerConnection failed');
    }
    for (const cb of [...this.stateListeners]) safeCall(this.log, cb, 'closed' as RTCPeerConnectionState);
    this.stateListeners.clear();
    this.audioListeners.clear();
    this.eventListeners.clear();
    this.digitListeners.clear();
  }

  // ------------------------------------------------------------ internals

  private begin(role: Role): void {
    this.assertOpen();
    if (this.role) throw this.error('invalid-state', `this leg already negotiated as ${this.role}`);
    this.role = role;
  }

  private attach(transceiver: RTCRtpTransceiver): void {
    this.transceiver = transceiver;
    // werift falls back to stun.l.google.com even with iceServers: [];
    // without DNS that stalls gathering for iceStunGatherTimeout.
    if (!this.opts.stunServer) {
      for (const ice of this.pc.iceTransports) ice.connection.stunServer = undefined;
    }
    // The DTLS transport sees every SRTP packet of the BUNDLE, whatever its
    // SSRC or PT, even if the remote SDP announced no a=ssrc.
    const sub = transceiver.dtlsTransport.onRtp.subscribe((rtp) => this.onWeriftRtp(rtp));
    this.unsubscribers.push(() => sub.unSubscribe());
  }

  /** The remote side's Opus and telephone-event/8000 payload types (usually 111/126). */
  private learnRemotePayloadTypes(sdp: string): void {
    const opus = /^a=rtpmap:(\d+) opus\/48000/im.exec(sdp);
    const te = /^a=rtpmap:(\d+) telephone-event\/8000/im.exec(sdp);
    if (opus) this.remoteOpusPt = Number(opus[1]);
    if (te) this.remoteTePt = Number(te[1]);
  }

  /**
   * Post-process werift's local SDP into what Meta accepts: exactly one
   * sha-256 fingerprint, `a=ptime:20`, no trickle lines (Meta has no trickle),
   * and the public address in `c=` and the host candidate when configured.
   */
  private shapeLocalSdp(): string {
    const sdp = this.pc.localDescription?.sdp;
    if (!sdp) throw new Error('werift produced no local description');
    const pub = this.opts.publicAddress;
    const lines = sdp.split(/\r?\n/).filter((l) => l !== '');
    const out: string[] = [];
    let fingerprint: string | undefined;
    let candidatePort: string | undefined;
    for (const line of lines) {
      if (line.startsWith('a=fingerprint:')) {
        if (!fingerprint && /^a=fingerprint:sha-256 /i.test(line)) {
          fingerprint = line;
          out.push(line);
        }
        continue;
      }
      if (line === 'a=ice-options:trickle' || line === 'a=end-of-candidates' || line.startsWith('a=ptime:')) continue;
      if (line.startsWith('a=candidate:')) {
        const parts = line.split(' ');
        candidatePort ??= parts[5];
        if (pub && parts[4] === this.bindAddress) parts[4] = pub;
        out.push(parts.join(' '));
        continue;
      }
      if (pub && line.startsWith('c=IN IP4 ')) {
        out.push(`c=IN IP4 ${pub}`);
        continue;
      }
      out.push(line);
    }
    if (!fingerprint) throw new Error('werift offered no sha-256 fingerprint');
    const shaped: string[] = [];
    for (const line of out) {
      if (line.startsWith('m=audio ') && candidatePort && pub) {
        shaped.push(line.replace(/^m=audio \d+ /, `m=audio ${candidatePort} `));
      } else {
        shaped.push(line);
      }
    }
    shaped.push(`a=ptime:${FRAME_MS}`);
    return `${shaped.join('\r\n')}\r\n`;
  }

  private onState(state: RTCPeerConnectionState): void {
    this.log?.debug({ state }, 'WhatsApp leg connection state');
    if (state === 'connected') {
      this.connectedAt ??= performance.now();
      this.attachMediaPath();
      if (this.silenceArmed) this.silenceClock.start();
    } else if (state === 'failed' || state === 'closed') {
      this.silenceClock.stop();
    }
    for (const cb of [...this.stateListeners]) safeCall(this.log, cb, state);
  }

  /**
   * DTLS-SRTP is up: move RTP onto the fast path. If werift's internals are
   * not as expected the leg stays on werift's path, which works, slower.
   */
  private attachMediaPath(): void {
    if (this.mediaPath || this.closing || !this.transceiver) return;
    this.mediaPath = SrtpMediaPath.attach(this.transceiver, (rtp) => this.onRtp(rtp));
    if (this.mediaPath) this.log?.debug({ profile: this.mediaPath.profile }, 'SRTP fast path attached');
    else this.log?.warn('SRTP fast path unavailable (unexpected werift internals); using werift RTP path');
  }

  /** A packet that came through werift's path (before the fast path attached). */
  private onWeriftRtp(rtp: RtpPacket): void {
    const v = this.rxView;
    v.payloadType = rtp.header.payloadType;
    v.marker = rtp.header.marker;
    v.sequenceNumber = rtp.header.sequenceNumber;
    v.timestamp = rtp.header.timestamp;
    v.ssrc = rtp.header.ssrc;
    v.payload = rtp.payload;
    this.onRtp(v);
  }

  private onRtp(rtp: RtpView): void {
    this.counters.packetsReceived++;
    const pt = rtp.payloadType;
    if (pt === this.remoteTePt) {
      const ev = parseTelephoneEvent(rtp.payload);
      if (!ev) return;
      const phase = this.teReceiver.push(rtp.timestamp, ev);
      if (phase === 'duplicate') return;
      const received: ReceivedTelephoneEvent = { ...ev, phase, timestamp: rtp.timestamp };
      for (const cb of this.eventListeners) safeCall(this.log, cb, received);
      if (phase === 'end' && ev.event < DTMF_EVENTS.length) {
        this.counters.dtmfReceived++;
        const digit = DTMF_EVENTS[ev.event] as string;
        for (const cb of this.digitListeners) safeCall(this.log, cb, digit);
      }
      return;
    }
    if (pt !== this.remoteOpusPt) return;
    for (const cb of this.audioListeners) safeCall(this.log, cb, rtp);
  }

  private onSilenceFrame(): void {
    const now = performance.now();
    if (now - this.lastAudioAt < this.silenceResumeMs) return;
    // After a gap, move the timestamp on by the wall-clock time that passed
    // (whole frames), so Meta's jitter buffer sees a gap, not a time warp.
    let delta = OPUS_TICKS_PER_FRAME;
    if (this.sentAny && !this.lastWasSilence) {
      delta = Math.max(1, Math.round((now - this.lastSentAt) / FRAME_MS)) * OPUS_TICKS_PER_FRAME;
    }
    this.sendOpus(opusSilenceFrame(), delta, !this.lastWasSilence, true, now);
  }

  /** Timestamp the next audio frame would carry if sent at `now`. */
  private nextAudioTimestamp(now: number): number {
    if (!this.sentAny) return this.ts;
    const frames = Math.max(1, Math.round((now - this.lastSentAt) / FRAME_MS));
    return (this.ts + frames * OPUS_TICKS_PER_FRAME) >>> 0;
  }

  private sendOpus(payload: Uint8Array, delta: number, marker: boolean, silence: boolean, now: number): void {
    const transceiver = this.transceiver;
    if (!transceiver) return;
    if (this.sentAny) {
      this.ts = (this.ts + delta) >>> 0;
      this.tsWallAt = Math.max(this.tsWallAt + delta / TICKS_PER_MS, now);
    } else {
      this.tsWallAt = now;
    }
    this.sentAny = true;
    this.lastSentAt = now;
    this.lastWasSilence = silence;
    // RFC 4733 §2.5.1.1: no audio while an event is being sent; the
    // timestamp above still advanced so audio resumes in the right place.
    if (this.teEvent !== undefined) return;
    if (this.pc.connectionState !== 'connected') return;
    this.counters.packetsSent++;
    if (silence) this.counters.silenceFramesSent++;
    this.firstPacketSentAt ??= now;
    if (this.mediaPath) {
      this.sendFast(WHATSAPP_OPUS_PT, marker, this.nextSeq(), this.ts, transceiver.sender.ssrc, payload);
      return;
    }
    const header = new RtpHeader({
      payloadType: WHATSAPP_OPUS_PT,
      sequenceNumber: this.nextSeq(),
      timestamp: this.ts,
      ssrc: transceiver.sender.ssrc,
      marker,
    });
    // werift rewrites SSRC and PT here and adds its RTCP sender report
    // bookkeeping; seq/timestamp pass through unchanged (its offsets stay 0).
    transceiver.sender
      .sendRtp(new RtpPacket(header, Buffer.isBuffer(payload) ? payload : Buffer.from(payload)))
      .catch((err: unknown) => this.log?.debug({ err }, 'sendRtp failed'));
  }

  private sendTelephoneEventPacket(payload: Buffer, marker: boolean): void {
    const transceiver = this.transceiver;
    if (!transceiver || this.pc.connectionState !== 'connected' || this.teEventTs === undefined) return;
    this.counters.packetsSent++;
    this.firstPacketSentAt ??= performance.now();
    if (this.mediaPath) {
      this.sendFast(this.remoteTePt, marker, this.nextSeq(), this.teEventTs, transceiver.sender.ssrc, payload);
      return;
    }
    const header = new RtpHeader({
      payloadType: this.remoteTePt,
      sequenceNumber: this.nextSeq(),
      timestamp: this.teEventTs,
      ssrc: transceiver.sender.ssrc,
      marker,
    });
    // werift's sender.sendRtp forces the Opus PT, so events go straight to
    // the DTLS transport (SRTP) with our own, shared sequence numbers.
    transceiver.dtlsTransport
      .sendRtp(payload, header)
      .catch((err: unknown) => this.log?.debug({ err }, 'telephone-event send failed'));
  }

  /** Build the plain packet in the scratch buffer; the fast path protects it into a new one. */
  private sendFast(pt: number, marker: boolean, seq: number, ts: number, ssrc: number, payload: Uint8Array): void {
    const n = writeRtp(this.txScratch, pt, marker, seq, ts, ssrc, payload);
    this.mediaPath?.send(this.txScratch.subarray(0, n), payload.length);
  }

  private nextSeq(): number {
    const s = this.seq;
    this.seq = (s + 1) & 0xffff;
    return s;
  }

  private assertOpen(): void {
    if (this.closing) throw this.error('closed', 'the WhatsApp leg is closed');
  }

  private error(code: MediaErrorCode, message: string, cause?: unknown): MediaError {
    return new MediaError(
      code,
      message,
      { callId: this.opts.callId, component: 'whatsapp-leg' },
      cause === undefined ? undefined : { cause },
    );
  }

  private wrap(err: unknown, message: string): MediaError {
    if (err instanceof MediaError) return err;
    return this.error('webrtc', `${message}: ${err instanceof Error ? err.message : String(err)}`, err);
  }
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function safeCall<T>(log: Logger | undefined, cb: (arg: T) => void, arg: T): void {
  try {
    cb(arg);
  } catch (err) {
    log?.warn({ err }, 'a WhatsApp leg listener threw');
  }
}

/** The offer's `a=setup` value (media level wins over session level). */
function offeredSetup(sdp: string): string | undefined {
  const all = [...sdp.matchAll(/^a=setup:(\w+)/gm)];
  return all[all.length - 1]?.[1];
}

/**
 * Drop telephone-event payload types whose clock is not 8000 Hz when an
 * 8000 Hz one exists. Meta supports DTMF at 8 kHz only (§5.1), and werift's
 * codec matching ignores the clock rate, so it would otherwise pick the first.
 */
function withoutWidebandTelephoneEvents(sdp: string): string {
  const wide = [...sdp.matchAll(/^a=rtpmap:(\d+) telephone-event\/(\d+)/gim)].filter((m) => m[2] !== '8000');
  if (wide.length === 0 || !/^a=rtpmap:\d+ telephone-event\/8000/im.test(sdp)) return sdp;
  const drop = new Set(wide.map((m) => m[1] as string));
  return sdp
    .split(/\r?\n/)
    .filter((l) => {
      const m = /^a=(?:rtpmap|fmtp|rtcp-fb):(\d+)[ /]/.exec(l);
      return !(m && drop.has(m[1] as string));
    })
    .map((l) =>
      l.startsWith('m=audio ')
        ? l
            .split(' ')
            .filter((tok, i) => i < 3 || !drop.has(tok))
            .join(' ')
        : l,
    )
    .join('\r\n');
}
