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
 * - WhatsApp clients take the first media packet as the answer (M-FAQ): a
 *   user-initiated call's leg is {@link WhatsAppLeg.withholdMedia | withheld}
 *   until `accept` has returned, then {@link WhatsAppLeg.releaseMedia | released}.
 *
 * The leg is the PeerConnection's owner: signalling, connection state, the
 * SRTP fast path's attach and detach, inbound dispatch, stats and close. The
 * SDP shaping for Meta is in `whatsapp-sdp.ts`, the outbound stream (seq,
 * timestamps, silence, the RFC 4733 sender, the one send) in
 * `outbound-stream.ts`; time comes from an injected {@link Clock}.
 *
 * ICE is configured explicitly: werift would otherwise gather a
 * server-reflexive candidate from stun.l.google.com (a 5 s stall without
 * DNS). Host candidates come only from the configured bind address, and a
 * cloud deployment behind 1:1 NAT advertises its public address instead.
 *
 * @module
 */
import type { Logger } from 'pino';
import { RTCPeerConnection, RTCRtpCodecParameters, type RTCRtpTransceiver, type RtpPacket } from 'werift';
import { type Clock, realClock } from '#core/clock.ts';
import { Emitter } from '../emitter.ts';
import { MediaError, type MediaErrorCode, UnsupportedKeyExchangeError } from '../media/errors.ts';
import {
  DTMF_EVENTS,
  parseTelephoneEvent,
  type RtpView,
  type TelephoneEvent,
  TelephoneEventReceiver,
} from '../media/rtp.ts';
import {
  OutboundStream,
  type SendAudioOptions,
  type SendDtmfOptions,
  WHATSAPP_OPUS_PT,
  WHATSAPP_TELEPHONE_EVENT_PT,
} from './outbound-stream.ts';
import type { SrtpProfile } from './srtp.ts';
import { type SrtpDropCounters, SrtpMediaPath } from './srtp-media-path.ts';
import {
  offeredKeyExchange,
  offeredSetup,
  remotePayloadTypes,
  shapeLocalSdp,
  withoutWidebandTelephoneEvents,
} from './whatsapp-sdp.ts';

export {
  OPUS_TICKS_PER_FRAME,
  opusSilenceFrame,
  type SendAudioOptions,
  type SendDtmfOptions,
  WHATSAPP_OPUS_PT,
  WHATSAPP_TELEPHONE_EVENT_PT,
} from './outbound-stream.ts';

const OPUS_FMTP = 'minptime=10;useinbandfec=1';

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
   * calls {@link WhatsAppLeg.resumeSilence} instead (the media bridge does, after 250 ms). @default 400
   */
  silenceResumeMs?: number;
  /**
   * Time source of the leg: silence frames, DTMF pacing, `audioLeadMs`,
   * `connectedAtMs`, the connect timeout and the fast path's RTCP figures.
   * @default realClock (monotonic `performance.now()`)
   */
  clock?: Clock;
  /** Call id for logs and errors. */
  callId?: string;
  /** Logger; a `component: 'whatsapp-leg'` child is used. */
  logger?: Logger;
}

/** A received telephone-event packet with its place in the event. */
export interface ReceivedTelephoneEvent extends TelephoneEvent {
  /**
   * `start` (first packet seen), `update`, `end` (first end packet), or `repeat` (a
   * retransmission of an ended event: nothing new, but a packet of Meta's sequence space).
   */
  phase: 'start' | 'update' | 'end' | 'repeat';
  /** The packet's RTP sequence number (shared with the audio stream). */
  sequenceNumber: number;
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
  private readonly clock: Clock;
  private readonly log: Logger | undefined;
  private readonly pc: RTCPeerConnection;
  private transceiver: RTCRtpTransceiver | undefined;
  private role: Role | undefined;
  private closing: Promise<void> | undefined;
  private readonly unsubscribers: (() => void)[] = [];

  /** RTP fast path once DTLS-SRTP is up (undefined: werift's own path). */
  private mediaPath: SrtpMediaPath | undefined;
  /** Seq, timestamps, silence and the RFC 4733 sender of the one outbound stream. */
  private readonly outbound: OutboundStream;

  // Inbound.
  private readonly audio: Emitter<RtpView>;
  private readonly events: Emitter<ReceivedTelephoneEvent>;
  private readonly digits: Emitter<string>;
  private readonly states: Emitter<RTCPeerConnectionState>;
  private readonly teReceiver = new TelephoneEventReceiver();
  private remoteOpusPt = WHATSAPP_OPUS_PT;
  /** werift-path packets are re-described here for the listeners. */
  private readonly rxView: RtpView = {
    payloadType: 0,
    marker: false,
    sequenceNumber: 0,
    timestamp: 0,
    ssrc: 0,
    payload: new Uint8Array(0),
  };
  private connectedAt: number | undefined;
  private readonly received = { packetsReceived: 0, dtmfReceived: 0 };

  /** @param options - see {@link WhatsAppLegOptions} */
  constructor(options: WhatsAppLegOptions = {}) {
    this.opts = options;
    this.bindAddress = options.bindAddress ?? '127.0.0.1';
    this.clock = options.clock ?? realClock;
    this.log = options.logger?.child({ component: 'whatsapp-leg', callId: options.callId });
    this.audio = new Emitter(this.log, 'whatsapp-leg audio');
    this.events = new Emitter(this.log, 'whatsapp-leg telephone-event');
    this.digits = new Emitter(this.log, 'whatsapp-leg dtmf');
    this.states = new Emitter(this.log, 'whatsapp-leg connection state');
    const leg = this;
    this.outbound = new OutboundStream(
      {
        get transceiver() {
          return leg.transceiver;
        },
        get connected() {
          return leg.pc.connectionState === 'connected';
        },
        get fastPath() {
          return leg.mediaPath;
        },
      },
      {
        clock: this.clock,
        silenceResumeMs: options.silenceResumeMs,
        errorContext: { callId: options.callId, component: 'whatsapp-leg' },
        logger: this.log,
      },
    );
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
    // Meta's SDES mode (the number's srtp_key_exchange_protocol): nothing this leg can answer; say so, by name.
    if (offeredKeyExchange(metaOffer) === 'SDES') throw new UnsupportedKeyExchangeError(this.opts.callId);
    this.begin('answerer');
    if (remotePayloadTypes(metaOffer).opus === undefined) {
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
      return this.localSdpForMeta();
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
      return this.localSdpForMeta();
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
    if (offeredKeyExchange(metaAnswer) === 'SDES') throw new UnsupportedKeyExchangeError(this.opts.callId);
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

  /** Clock time (`performance.now()` on the real clock) when the leg became `connected` (ICE + DTLS), if it did. */
  get connectedAtMs(): number | undefined {
    return this.connectedAt;
  }

  /** Clock time (`performance.now()` on the real clock) of the first packet sent to Meta (the maiden packet). */
  get firstPacketSentAtMs(): number | undefined {
    return this.outbound.firstPacketSentAt;
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
    return this.states.on(cb);
  }

  /**
   * Resolve once `connected`; reject with {@link MediaError} on `failed`,
   * `closed`, or after `timeoutMs` (on the leg's clock).
   */
  waitForConnected(timeoutMs = 5000): Promise<void> {
    const now = this.pc.connectionState;
    if (now === 'connected') return Promise.resolve();
    if (now === 'failed' || now === 'closed' || this.closing) {
      return Promise.reject(this.error(this.closing ? 'closed' : 'webrtc', `connection ${now}`));
    }
    return new Promise<void>((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        off();
        reject(this.error('timeout', `not connected after ${timeoutMs} ms (${this.pc.connectionState})`));
      }, timeoutMs);
      const off = this.onConnectionStateChange((s) => {
        if (s !== 'connected' && s !== 'failed' && s !== 'closed') return;
        this.clock.clearTimeout(timer);
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
    return this.audio.on(cb);
  }

  /**
   * The SRTP profile of the RTP fast path once it carries the media, or
   * undefined while werift's own path does (before DTLS, or if werift's
   * internals were not as expected).
   */
  get srtpFastPathProfile(): SrtpProfile | undefined {
    return this.mediaPath?.profile;
  }

  /** Subscribe to every RFC 4733 packet from Meta, retransmissions as phase `repeat` (see {@link ReceivedTelephoneEvent}). */
  onTelephoneEvent(cb: (ev: ReceivedTelephoneEvent) => void): () => void {
    return this.events.on(cb);
  }

  /** Subscribe to completed DTMF digits from Meta (one call per event). */
  onDtmf(cb: (digit: string) => void): () => void {
    return this.digits.on(cb);
  }

  // ------------------------------------------------------------ send (the outbound stream)

  /**
   * Send Opus silence every 20 ms from the moment DTLS is up (at once if it
   * already is) whenever no audio was sent for `silenceResumeMs`. This is the
   * maiden packet Meta waits for (M-SIP) and keeps Meta's 20 s no-media
   * watchdog quiet before the SIP side answers and while it is on hold.
   */
  startSilence(): void {
    if (this.closing) return;
    this.outbound.startSilence();
  }

  /**
   * Send Meta nothing until {@link releaseMedia}: no silence, audio or DTMF; audio given
   * meanwhile is held (up to a second, the newest kept). A user-initiated call is withheld until
   * its `accept` has returned 200 OK, because WhatsApp clients take the first media packet as the
   * answer (M-FAQ; meta-calling-api.md Corrections 1). No-op once anything was sent.
   */
  withholdMedia(): void {
    if (this.closing) return;
    this.outbound.withhold();
  }

  /**
   * Sending may start: held audio goes out at once (once DTLS is up), else the first silence
   * frame if silence is armed — the maiden packet. See {@link withholdMedia}.
   */
  releaseMedia(): void {
    if (this.closing) return;
    this.outbound.release();
  }

  /** True while {@link withholdMedia} holds the outgoing stream back. */
  get mediaWithheld(): boolean {
    return this.outbound.withheld;
  }

  /**
   * The caller's audio has stopped (end of a talkspurt, the PBX went quiet):
   * if silence is armed, resume it with the next frame, now, instead of
   * waiting `silenceResumeMs`, so Meta's stream has no hole. No-op when
   * silence is not armed; the next {@link sendAudio} takes over again.
   */
  resumeSilence(): void {
    if (this.closing) return;
    this.outbound.resumeSilence();
  }

  /**
   * How far ahead of real time (ms) an audio frame sent now with
   * `timestampDelta` would put the outgoing stream (see
   * {@link OutboundStream.audioLeadMs}).
   *
   * @param timestampDelta - as for {@link sendAudio} (48 kHz ticks). @default 960
   * @param now - the leg's clock time to evaluate at (`performance.now()` on the real clock)
   */
  audioLeadMs(timestampDelta?: number, now?: number): number {
    return this.outbound.audioLeadMs(timestampDelta, now);
  }

  /** Stop generating silence (audio sent with {@link sendAudio} is unaffected). */
  stopSilence(): void {
    this.outbound.stopSilence();
  }

  /**
   * Send one Opus frame to Meta. The leg stamps sequence number, timestamp
   * (48 kHz, RFC 7587) and SSRC, so silence, audio and DTMF share one
   * continuous stream. Dropped (clock still advancing) while a DTMF event is
   * being sent (RFC 4733 §2.5.1.1) and before DTLS is up.
   */
  sendAudio(payload: Uint8Array, options?: SendAudioOptions): void {
    if (this.closing) return;
    this.outbound.sendAudio(payload, options);
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
    if (this.closing) return;
    this.outbound.sendTelephoneEvent(ev, isStart);
  }

  /**
   * Send DTMF digits as RFC 4733 events paced on the leg's clock (an update
   * every 20 ms, three end packets, then a pause). Resolves when the last
   * digit ended; calls queue behind each other.
   *
   * @throws {@link MediaError} `invalid-argument` for characters outside 0-9*#A-D
   */
  sendDtmf(digits: string, options: SendDtmfOptions = {}): Promise<void> {
    if (this.closing) return Promise.reject(this.error('closed', 'the WhatsApp leg is closed'));
    return this.outbound.sendDtmf(digits, options);
  }

  // ------------------------------------------------------------ stats / close

  /** Counters plus RTCP-derived loss, jitter and RTT from `getStats()`. */
  async stats(): Promise<WhatsAppLegStats> {
    const fast = this.mediaPath?.stats();
    const sent = this.outbound.counters;
    const out: WhatsAppLegStats = {
      packetsSent: sent.packetsSent,
      silenceFramesSent: sent.silenceFramesSent,
      packetsReceived: this.received.packetsReceived,
      dtmfSent: sent.dtmfSent,
      dtmfReceived: this.received.dtmfReceived,
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
    this.outbound.close();
    this.mediaPath?.detach();
    for (const off of this.unsubscribers.splice(0)) off();
    try {
      await this.pc.close();
    } catch (err) {
      this.log?.warn({ err }, 'closing the PeerConnection failed');
    }
    this.states.emit('closed');
    this.states.clear();
    this.audio.clear();
    this.events.clear();
    this.digits.clear();
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
    const pts = remotePayloadTypes(sdp);
    if (pts.opus !== undefined) this.remoteOpusPt = pts.opus;
    if (pts.telephoneEvent !== undefined) this.outbound.telephoneEventPt = pts.telephoneEvent;
  }

  /** werift's local description, shaped for Meta (see {@link shapeLocalSdp}). */
  private localSdpForMeta(): string {
    const sdp = this.pc.localDescription?.sdp;
    if (!sdp) throw new Error('werift produced no local description');
    return shapeLocalSdp(sdp, { bindAddress: this.bindAddress, publicAddress: this.opts.publicAddress });
  }

  private onState(state: RTCPeerConnectionState): void {
    this.log?.debug({ state }, 'WhatsApp leg connection state');
    if (state === 'connected') {
      this.connectedAt ??= this.clock.now();
      this.attachMediaPath();
      this.outbound.linkUp();
    } else if (state === 'failed' || state === 'closed') {
      this.outbound.linkDown();
    }
    this.states.emit(state);
  }

  /**
   * DTLS-SRTP is up: move RTP onto the fast path. If werift's internals are
   * not as expected the leg stays on werift's path, which works, slower.
   */
  private attachMediaPath(): void {
    if (this.mediaPath || this.closing || !this.transceiver) return;
    this.mediaPath = SrtpMediaPath.attach(this.transceiver, (rtp) => this.onRtp(rtp), this.clock);
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
    this.received.packetsReceived++;
    const pt = rtp.payloadType;
    if (pt === this.outbound.telephoneEventPt) {
      const ev = parseTelephoneEvent(rtp.payload);
      if (!ev) return;
      const pushed = this.teReceiver.push(rtp.timestamp, ev);
      const phase = pushed === 'duplicate' ? 'repeat' : pushed;
      this.events.emit({ ...ev, phase, timestamp: rtp.timestamp, sequenceNumber: rtp.sequenceNumber });
      if (phase === 'repeat') return;
      if (phase === 'end' && ev.event < DTMF_EVENTS.length) {
        this.received.dtmfReceived++;
        this.digits.emit(DTMF_EVENTS[ev.event] as string);
      }
      return;
    }
    if (pt !== this.remoteOpusPt) return;
    this.audio.emit(rtp);
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
