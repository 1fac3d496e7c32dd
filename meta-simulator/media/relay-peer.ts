/**
 * A WebRTC peer that behaves like Meta's WhatsApp media relay, built on werift.
 *
 * What it imitates (docs/meta-calling-api.md §5.1, §7 item 5):
 * - ICE-lite (RFC 8445 §2.5), always controlled, one IPv4 and one IPv6 host
 *   candidate on the same port as in REF26's offers (§5.1), Meta's
 *   `generation 0 network-cost 50 ufrag …/2` candidate extensions, an ICE ufrag
 *   containing `/`, no STUN/TURN and no trickle. Only the IPv4 candidate
 *   (`bindAddress`) is reachable: the IPv6 one is a documentation address
 *   (RFC 3849, `2001:db8::/32`) so that tests stay deterministic on machines
 *   without IPv6, and connectivity must come through IPv4. Checks that claim the controlled role get 487 (Role Conflict);
 *   checks from addresses not in the business SDP are accepted (peer-reflexive).
 * - DTLS-SRTP with one sha-256 fingerprint. Offers `a=setup:actpass`; the
 *   business answers `active` (RFC 5763 §5). Answers to business offers pin a
 *   role: `actpass`→`active`, `active`→`passive`, `passive`→`active`.
 * - One BUNDLEd, rtcp-mux audio m-line, one SSRC, Opus/48000 PT 111 (RFC 7587)
 *   and telephone-event/8000 PT 126 (RFC 4733), `a=ptime:20`.
 * - Meta's SDP validation on everything the business sends (see sdp-validation.ts).
 * - The "maiden packet" rule: no media is sent until the business's first RTP
 *   packet has arrived (M-SIP).
 * - Business-initiated calls: no user audio while the phone rings; the user's
 *   media starts at pickup ({@link RelayPeer.startUserMedia}, M-BIC).
 * - In-band RFC 4733 DTMF both ways; no DTMF webhook.
 * - SDES mode (`keyExchange: 'SDES'`, the number's `srtp_key_exchange_protocol`):
 *   `RTP/SAVP` + `a=crypto` (AES_CM_128_HMAC_SHA1_80), no STUN, ICE or DTLS
 *   (M-SIP SDES samples, §5.3); media is SRTP on a plain UDP socket, sent to the
 *   address in the business SDP (see sdes.ts).
 *
 * @module
 */
import { randomBytes, randomInt } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';
import { Decoder, Encoder } from '@evan/opus';
import alawmulaw from 'alawmulaw';
import type { Logger } from 'pino';
import sdpTransform from 'sdp-transform';
import type { RTCRtpTransceiver, SrtpSession } from 'werift';
import {
  classes,
  parseMessage,
  RTCPeerConnection,
  RTCRtpCodecParameters,
  RTCRtpHeaderExtensionParameters,
  RtpHeader,
  RtpPacket,
} from 'werift';
import { type HeardAudio, PcmRecorder, RecentAudio, rmsDbfs, ToneGenerator } from './audio.ts';
import { newSdesKey, sdesSdp, sdesSrtpSession, usableCrypto } from './sdes.ts';
import { validateBusinessSdp } from './sdp-validation.ts';

/** Options for {@link RelayPeer}. */
export interface RelayPeerOptions {
  /** IPv4 address for the reachable host candidate and the UDP socket. Default `127.0.0.1`. */
  bindAddress?: string;
  /**
   * The IPv6 host candidate Meta's offers and answers carry next to the IPv4 one, on the same port (REF26, §5.1).
   * Nothing listens there. Default {@link RELAY_IPV6_CANDIDATE} (a documentation address, never reachable);
   * `false` leaves it out.
   */
  ipv6CandidateAddress?: string | false;
  /** `audio.additional_codecs` enabled: also offer and accept PCMU/PCMA (since Mar 2026). */
  allowG711?: boolean;
  /**
   * The number's `srtp_key_exchange_protocol` (M-SET): `DTLS` (default) is ICE-lite + DTLS-SRTP; `SDES` is
   * `RTP/SAVP` + `a=crypto`, no ICE or DTLS, and business SDP is validated as SDES.
   */
  keyExchange?: 'DTLS' | 'SDES';
  /** Logger; a `component: 'relay-peer'` child is used. */
  logger?: Logger;
}

/** Connection state of the relay (W3C `RTCPeerConnectionState` minus `disconnected`). */
export type RelayConnectionState = 'new' | 'connecting' | 'connected' | 'failed' | 'closed';

/** Counters returned by {@link RelayPeer.stats}. */
export interface RelayPeerStats {
  /** RTP packets sent (audio + telephone-event). */
  packetsSent: number;
  /** RTP packets received from the business. */
  packetsReceived: number;
  /** RTP payload bytes received from the business. */
  bytesReceived: number;
  /** DTMF digits sent (completed events). */
  dtmfSent: number;
  /** DTMF digits received (distinct ended events). */
  dtmfReceived: number;
}

/** Why a {@link RelayPeerError} was raised. */
export type RelayPeerErrorCode = 'invalid-sdp' | 'invalid-state' | 'invalid-argument' | 'closed' | 'timeout' | 'webrtc';

/** Error raised by {@link RelayPeer}; `code` says why, `details` carries SDP validation text. */
export class RelayPeerError extends Error {
  override readonly name = 'RelayPeerError';
  readonly code: RelayPeerErrorCode;
  /** For `invalid-sdp`: the validation details, like Meta's "SDP Validation error" text. */
  readonly details: string | undefined;

  constructor(code: RelayPeerErrorCode, message: string, options?: { cause?: unknown; details?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details;
  }
}

/** Options for {@link RelayPeer.sendDtmf}. */
export interface DtmfSendOptions {
  /** Tone duration per digit in ms (default 100; RFC 4733 events, ≥ 40 ms advisable). */
  durationMs?: number;
  /** Pause between digits in ms (default 60). */
  gapMs?: number;
}

/**
 * The relay's unreachable IPv6 host candidate: RFC 3849's documentation prefix with the interface id of Meta's
 * sample (§5.1 `2a03:2880:f211:cf:face:b00c:0:6443`).
 */
export const RELAY_IPV6_CANDIDATE = '2001:db8:f211:cf:face:b00c:0:6443';
/** Meta's sample gives the IPv6 candidate a priority 2560 above the IPv4 one (§5.1). */
const IPV6_PRIORITY_BONUS = 2560;

const OPUS_PT = 111;
const TELEPHONE_EVENT_PT = 126;
/** Meta's classic Opus fmtp (§5.1 sample offer). */
const OPUS_FMTP = 'minptime=10;useinbandfec=1';
const FRAME_MS = 20;
const SAMPLE_RATE = 48_000;
const FRAME_SAMPLES = 960;
/** RFC 4733 event codes 0–15. */
const DTMF_EVENTS = '0123456789*#ABCD';
/** An audible business frame: louder than this (dBFS). */
const AUDIBLE_DBFS = -50;

/** Source of 48 kHz mono 20 ms frames. */
interface AudioSource {
  next(): Int16Array;
}

const SILENCE: AudioSource = { next: () => new Int16Array(FRAME_SAMPLES) };

interface DtmfJob {
  digits: string;
  index: number;
  durationTicks: number;
  gapTicks: number;
  phase: 'tone' | 'gap';
  tick: number;
  eventTimestamp: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

type SendCodec = 'opus' | 'pcmu' | 'pcma';

/** The relay's SDES leg: a plain UDP socket and SRTP keyed by the two `a=crypto` lines. */
interface SdesLeg {
  socket: Socket;
  port: number;
  /** The relay's key||salt (its `a=crypto`). */
  localKey: Buffer;
  ssrc: number;
  /** Set once the business's `a=crypto` and address are known. */
  srtp?: SrtpSession;
  remote?: { address: string; port: number };
  /** Payload types of the negotiated SDP: mime (lower case) by PT. */
  codecs: Map<number, string>;
  /** The audio codec the relay sends (the first one both sides have). */
  sendPt?: number;
}

/** Codec names by payload type from an SDP's first m-line (static PCMU 0 / PCMA 8 without rtpmap). */
function sdpCodecs(sdp: string): Map<number, string> {
  const m = sdpTransform.parse(sdp).media[0];
  const out = new Map<number, string>();
  for (const pt of String(m?.payloads ?? '')
    .split(/\s+/)
    .filter((x) => x !== '')
    .map(Number)) {
    const r = m?.rtp.find((x) => x.payload === pt);
    const name = r ? `audio/${r.codec}${r.codec.toLowerCase() === 'telephone-event' ? `/${r.rate}` : ''}` : undefined;
    out.set(pt, (name ?? (pt === 0 ? 'audio/pcmu' : pt === 8 ? 'audio/pcma' : 'unknown')).toLowerCase());
  }
  return out;
}
function metaUfrag(): string {
  // Meta's ufrags look like "6k2qP1R6kBfI/2": 12 alphanumerics, '/', a digit.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = randomBytes(12);
  let s = '';
  for (const b of bytes) s += alphabet[b % alphabet.length];
  return `${s}/2`;
}

/** The offer's `a=setup` value (media level first, then session level). */
function offeredSetup(sdp: string): string | undefined {
  const parsed = sdpTransform.parse(sdp);
  return parsed.media[0]?.setup ?? parsed.setup;
}

/**
 * Drop telephone-event payload types whose clock is not 8000 Hz from an offer
 * that also has an 8000 Hz one. Meta supports DTMF at 8 kHz only, and werift's
 * codec matching ignores the clock rate, so given a browser offer with
 * telephone-event/48000 first it would answer with that one.
 */
function withoutWidebandTelephoneEvents(sdp: string): string {
  const lines = sdp.split(/\r?\n/);
  const events = lines
    .map((l) => /^a=rtpmap:(\d+) telephone-event\/(\d+)/i.exec(l))
    .filter((m): m is RegExpExecArray => m !== null);
  if (!events.some((m) => m[2] === '8000')) return sdp;
  const drop = new Set(events.filter((m) => m[2] !== '8000').map((m) => m[1] as string));
  if (drop.size === 0) return sdp;
  return lines
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

function toInt16(u8: Uint8Array): Int16Array {
  const copy = new Uint8Array(u8.byteLength);
  copy.set(u8);
  return new Int16Array(copy.buffer, 0, copy.byteLength >> 1);
}

/** 48 kHz → 8 kHz by averaging groups of six samples (enough for test tones). */
function downsample6(frame: Int16Array): Int16Array {
  const out = new Int16Array(frame.length / 6);
  for (let i = 0; i < out.length; i++) {
    let s = 0;
    for (let k = 0; k < 6; k++) s += frame[i * 6 + k] as number;
    out[i] = Math.round(s / 6);
  }
  return out;
}

/** 8 kHz → 48 kHz by linear interpolation, continuing from `prev`. */
function upsample6(frame: Int16Array, prev: number): Int16Array {
  const out = new Int16Array(frame.length * 6);
  let a = prev;
  for (let i = 0; i < frame.length; i++) {
    const b = frame[i] as number;
    for (let k = 0; k < 6; k++) out[i * 6 + k] = Math.round(a + ((b - a) * (k + 1)) / 6);
    a = b;
  }
  return out;
}

/**
 * Meta's media relay for one call leg. Use {@link RelayPeer.createOffer} +
 * {@link RelayPeer.acceptAnswer} for a user-initiated call, or
 * {@link RelayPeer.answerOffer} for a business-initiated call.
 */
export class RelayPeer {
  private readonly bindAddress: string;
  private readonly ipv6Candidate: string | undefined;
  private readonly allowG711: boolean;
  private readonly keyExchange: 'DTLS' | 'SDES';
  private readonly log: Logger | undefined;
  private pc: RTCPeerConnection | undefined;
  private sdes: SdesLeg | undefined;
  private transceiver: RTCRtpTransceiver | undefined;
  private role: 'offerer' | 'answerer' | undefined;
  private ufrag: string | undefined;
  private answerApplied = false;
  private state: RelayConnectionState = 'new';
  private readonly stateListeners = new Set<(state: RelayConnectionState) => void>();
  private readonly dtmfListeners = new Set<(digit: string) => void>();
  private readonly firstMediaListeners = new Set<() => void>();
  private readonly unsubscribers: (() => void)[] = [];
  private closing: Promise<void> | undefined;

  // Media clock (starts on the business's maiden packet).
  private clock: NodeJS.Timeout | undefined;
  private clockStart = 0;
  private framesDone = 0;
  private source: AudioSource = SILENCE;
  /** Next RTP sequence number and timestamp; audio and DTMF share both (RFC 4733 §2.1). Random bases per RFC 3550 §5.1. */
  private readonly rtp = { seq: randomInt(0, 0x10000), ts: randomInt(0, 0x1_0000_0000) };
  private encoder: Encoder | undefined;
  private readonly decoder = new Decoder({ channels: 1, sample_rate: SAMPLE_RATE });
  private g711Prev = 0;

  // DTMF.
  private readonly dtmfQueue: DtmfJob[] = [];
  private readonly seenEventTimestamps: number[] = [];
  private digits = '';

  // Recording and observability.
  private recorder: PcmRecorder | undefined;
  /** The last second of decoded business audio: what the simulated user hears now. */
  private readonly recent = new RecentAudio(SAMPLE_RATE, 1000);
  private counters: RelayPeerStats = {
    packetsSent: 0,
    packetsReceived: 0,
    bytesReceived: 0,
    dtmfSent: 0,
    dtmfReceived: 0,
  };
  private firstMediaAt: number | undefined;
  private lastMediaAt: number | undefined;
  /** False while a business-initiated call rings: the user has not picked up, so nothing is sent. */
  private userMediaAllowed = true;
  private firstUserMediaAt: number | undefined;
  private firstAudibleAt: number | undefined;
  private readonly ssrcsSeen = new Set<number>();
  private sdp: string | undefined;

  /** @param options - see {@link RelayPeerOptions} */
  constructor(options: RelayPeerOptions = {}) {
    this.bindAddress = options.bindAddress ?? '127.0.0.1';
    if (!isIPv4(this.bindAddress)) {
      throw new RelayPeerError('invalid-argument', `bindAddress must be an IPv4 address, got "${this.bindAddress}"`);
    }
    const v6 = options.ipv6CandidateAddress ?? RELAY_IPV6_CANDIDATE;
    if (v6 !== false && !isIPv6(v6)) {
      throw new RelayPeerError('invalid-argument', `ipv6CandidateAddress must be an IPv6 address, got "${v6}"`);
    }
    this.ipv6Candidate = v6 === false ? undefined : v6;
    this.allowG711 = options.allowG711 ?? false;
    this.keyExchange = options.keyExchange ?? 'DTLS';
    this.log = options.logger?.child({ component: 'relay-peer' });
  }

  /** Current connection state. */
  get connectionState(): RelayConnectionState {
    return this.state;
  }

  /** `Date.now()` of the first business RTP packet (the maiden packet). */
  get firstBusinessMediaAt(): number | undefined {
    return this.firstMediaAt;
  }

  /** `Date.now()` of the latest business RTP packet (input for Meta's media watchdog, 138021). */
  get lastBusinessMediaAt(): number | undefined {
    return this.lastMediaAt;
  }

  /** `Date.now()` of the first audio packet the relay sent the business (the user's first audio). */
  get firstUserMediaSentAt(): number | undefined {
    return this.firstUserMediaAt;
  }

  /**
   * Business-initiated call: the user picked up. Until then the relay sends
   * nothing (the phone rings; M-BIC); from now on the user's audio flows once
   * the business's maiden packet has arrived.
   */
  startUserMedia(): void {
    this.userMediaAllowed = true;
    if (this.firstMediaAt !== undefined) this.startClock();
  }

  /**
   * `Date.now()` of the first business audio frame louder than -50 dBFS; compare
   * with the accept 200 OK to measure clipping (§5.2, §7 item 5).
   */
  get firstAudibleBusinessMediaAt(): number | undefined {
    return this.firstAudibleAt;
  }

  /**
   * Distinct SSRCs the business has sent from. More than one breaks Meta's
   * fixed-SSRC rewrite (M-PAT); the call engine may flag it.
   */
  get businessSsrcs(): number[] {
    return [...this.ssrcsSeen];
  }

  /** The SDP this relay handed out (offer or answer), once created. */
  get localSdp(): string | undefined {
    return this.sdp;
  }

  /** Digits received so far via RFC 4733, in order. */
  get receivedDigits(): string {
    return this.digits;
  }

  /** Subscribe to connection state changes; returns an unsubscribe function. */
  onConnectionStateChange(cb: (state: RelayConnectionState) => void): () => void {
    this.stateListeners.add(cb);
    return () => this.stateListeners.delete(cb);
  }

  /** Subscribe to received DTMF digits (one call per ended event); returns an unsubscribe function. */
  onDtmf(cb: (digit: string) => void): () => void {
    this.dtmfListeners.add(cb);
    return () => this.dtmfListeners.delete(cb);
  }

  /**
   * Called once, when the business's first RTP packet (the maiden packet) arrives. The call
   * engine uses it for Meta's client rule "a media packet or an accept signal, whichever comes
   * first, is the answer" (M-FAQ). Returns an unsubscribe function.
   */
  onFirstBusinessMedia(cb: () => void): () => void {
    this.firstMediaListeners.add(cb);
    return () => this.firstMediaListeners.delete(cb);
  }

  /**
   * What the simulated WhatsApp user hears now: dominant frequency and level of the last second of
   * decoded business audio (Opus or G.711), `audible` above -50 dBFS.
   */
  heard(): HeardAudio {
    return this.recent.heard(AUDIBLE_DBFS);
  }

  /** Snapshot of the counters. */
  stats(): RelayPeerStats {
    return { ...this.counters };
  }

  /**
   * What the business's RTCP told the relay (Meta reads the same reports):
   * whether a sender report arrived and how many packets, and what its
   * receiver report says about the relay's stream.
   */
  async businessRtcp(): Promise<{
    senderReport: { packetsSent: number } | undefined;
    receiverReport: { packetsLost: number; jitterSeconds: number } | undefined;
  }> {
    const out: Awaited<ReturnType<RelayPeer['businessRtcp']>> = { senderReport: undefined, receiverReport: undefined };
    if (!this.pc) return out;
    for (const s of (await this.pc.getStats()).values()) {
      const r = s as unknown as Record<string, unknown> & { type: string };
      if (r.type === 'remote-outbound-rtp' && typeof r.packetsSent === 'number') {
        out.senderReport = { packetsSent: r.packetsSent };
      } else if (r.type === 'remote-inbound-rtp' && typeof r.packetsLost === 'number') {
        out.receiverReport = { packetsLost: r.packetsLost, jitterSeconds: Number(r.jitter ?? 0) };
      }
    }
    return out;
  }

  /**
   * Resolve once the relay is `connected`; reject with a {@link RelayPeerError}
   * if it fails, closes, or `timeoutMs` (default 5000) passes.
   */
  waitForConnected(timeoutMs = 5000): Promise<void> {
    if (this.state === 'connected') return Promise.resolve();
    if (this.state === 'failed' || this.state === 'closed') {
      return Promise.reject(new RelayPeerError('webrtc', `connection ${this.state}`));
    }
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        clearTimeout(timer);
        off();
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(
        () => done(new RelayPeerError('timeout', `not connected after ${timeoutMs} ms (state ${this.state})`)),
        timeoutMs,
      );
      const off = this.onConnectionStateChange((s) => {
        if (s === 'connected') done();
        else if (s === 'failed' || s === 'closed') done(new RelayPeerError('webrtc', `connection ${s}`));
      });
    });
  }

  /**
   * User-initiated call: create Meta's SDP offer (the `session.sdp` of the
   * `connect` webhook). ICE-lite, `a=setup:actpass`, one host candidate.
   */
  async createOffer(): Promise<string> {
    if (this.keyExchange === 'SDES') return this.createSdesOffer();
    const pc = this.preparePeer('offerer');
    try {
      const transceiver = pc.addTransceiver('audio', { direction: 'sendrecv' });
      // A named MID like Meta's ("a=group:BUNDLE audio", "a=mid:audio").
      transceiver.mid = 'audio';
      this.transceiver = transceiver;
      this.setMetaUfrag(pc);
      this.subscribeMedia(transceiver);
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      this.enforceMessageIntegrity(pc);
      const sdp = pc.localDescription?.sdp;
      if (!sdp) throw new Error('werift produced no local description');
      this.sdp = this.toMetaShape(sdp);
      this.log?.debug({ sdp: this.sdp }, 'relay offer created');
      return this.sdp;
    } catch (err) {
      throw this.wrap(err, 'createOffer failed');
    }
  }

  /**
   * Apply the business's SDP answer (from `pre_accept`/`accept`). Validated
   * like Meta; throws {@link RelayPeerError} `invalid-sdp` with `details` if not
   * acceptable. Connectivity then starts: the business is the controlling,
   * full ICE agent and (with `setup:active`) the DTLS client.
   */
  async acceptAnswer(sdp: string): Promise<void> {
    this.assertOpen();
    if (this.role !== 'offerer' || (!this.pc && !this.sdes)) {
      throw new RelayPeerError('invalid-state', 'acceptAnswer needs a prior createOffer');
    }
    if (this.answerApplied) {
      // Meta has no renegotiation: the accept SDP must equal the pre_accept SDP.
      throw new RelayPeerError('invalid-state', 'an answer was already applied (no renegotiation)');
    }
    const verdict = validateBusinessSdp(sdp, {
      type: 'answer',
      allowG711: this.allowG711,
      keyExchange: this.keyExchange,
    });
    if (!verdict.ok) {
      throw new RelayPeerError('invalid-sdp', `SDP Validation error: ${verdict.details}`, { details: verdict.details });
    }
    if (this.sdes) {
      this.applySdesRemote(sdp);
      this.answerApplied = true;
      return;
    }
    if (!this.pc) throw new RelayPeerError('invalid-state', 'acceptAnswer needs a prior createOffer');
    this.answerApplied = true;
    try {
      await this.pc.setRemoteDescription({ type: 'answer', sdp });
    } catch (err) {
      throw this.wrap(err, 'applying the business answer failed');
    }
  }

  /**
   * Business-initiated call: validate the business's offer and return Meta's
   * answer (ICE-lite, one host candidate, a pinned DTLS role).
   */
  async answerOffer(sdp: string): Promise<string> {
    const verdict = validateBusinessSdp(sdp, {
      type: 'offer',
      allowG711: this.allowG711,
      keyExchange: this.keyExchange,
    });
    this.assertOpen();
    if (this.pc || this.sdes) throw new RelayPeerError('invalid-state', 'this RelayPeer already negotiated');
    if (!verdict.ok) {
      throw new RelayPeerError('invalid-sdp', `SDP Validation error: ${verdict.details}`, { details: verdict.details });
    }
    if (this.keyExchange === 'SDES') return this.answerSdesOffer(sdp);
    const pc = this.preparePeer('answerer');
    // The user's phone rings first: no user audio before pickup (M-BIC).
    this.userMediaAllowed = false;
    try {
      await pc.setRemoteDescription({ type: 'offer', sdp: withoutWidebandTelephoneEvents(sdp) });
      const transceiver = pc.getTransceivers()[0];
      if (!transceiver) throw new Error('no audio transceiver after applying the offer');
      transceiver.setDirection('sendrecv');
      this.transceiver = transceiver;
      // RFC 5763 §5 / RFC 4145 §4: the answerer takes the role opposite to the
      // offer's. werift's createAnswer always says setup:active (DTLS client)
      // unless the transport's role is preset, even for an `active` offer.
      transceiver.dtlsTransport.role = offeredSetup(sdp) === 'active' ? 'server' : 'client';
      this.setMetaUfrag(pc);
      this.subscribeMedia(transceiver);
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      this.enforceMessageIntegrity(pc);
      const local = pc.localDescription?.sdp;
      if (!local) throw new Error('werift produced no local description');
      this.sdp = this.toMetaShape(local);
      this.log?.debug({ sdp: this.sdp }, 'relay answer created');
      return this.sdp;
    } catch (err) {
      throw this.wrap(err, 'answering the business offer failed');
    }
  }

  /** Play a continuous sine tone (phase-continuous across frames). */
  playTone(hz: number, dbfs: number): void {
    const gen = new ToneGenerator(hz, dbfs, SAMPLE_RATE);
    this.source = { next: () => gen.nextFrame(FRAME_SAMPLES) };
  }

  /** Play digital silence (still sending packets, as Meta's relay does). */
  playSilence(): void {
    this.source = SILENCE;
  }

  /**
   * Play 48 kHz mono PCM once (then silence), or looped with `loop: true`.
   * The buffer is copied.
   */
  playPcm(pcm: Int16Array, opts: { loop?: boolean } = {}): void {
    const data = pcm.slice();
    let pos = 0;
    this.source = {
      next: () => {
        const out = new Int16Array(FRAME_SAMPLES);
        let filled = 0;
        while (filled < FRAME_SAMPLES && data.length > 0) {
          if (pos >= data.length) {
            if (!opts.loop) break;
            pos = 0;
          }
          const n = Math.min(FRAME_SAMPLES - filled, data.length - pos);
          out.set(data.subarray(pos, pos + n), filled);
          filled += n;
          pos += n;
        }
        return out;
      },
    };
  }

  /** Start (or restart) recording decoded business audio, 48 kHz mono. */
  startRecording(): void {
    this.recorder = new PcmRecorder(SAMPLE_RATE);
  }

  /** Stop recording and return what was recorded (empty if not recording). */
  stopRecording(): Int16Array {
    const pcm = this.recorder?.toInt16Array() ?? new Int16Array(0);
    this.recorder = undefined;
    return pcm;
  }

  /**
   * Send DTMF digits in-band as RFC 4733 telephone-events on the negotiated
   * 8 kHz telephone-event payload type (126). Resolves once the last digit's
   * end packets are sent. Digits queue behind the maiden-packet rule, so they
   * are not sent before the business's first packet.
   */
  sendDtmf(digits: string, opts: DtmfSendOptions = {}): Promise<void> {
    if (this.closing) return Promise.reject(new RelayPeerError('closed', 'RelayPeer is closed'));
    const normalized = digits.toUpperCase();
    if (!/^[0-9*#A-D]*$/.test(normalized)) {
      return Promise.reject(new RelayPeerError('invalid-argument', `invalid DTMF digits "${digits}"`));
    }
    if (normalized.length === 0) return Promise.resolve();
    const durationMs = Math.min(8000, Math.max(FRAME_MS, opts.durationMs ?? 100));
    const gapMs = Math.max(0, opts.gapMs ?? 60);
    return new Promise<void>((resolve, reject) => {
      this.dtmfQueue.push({
        digits: normalized,
        index: 0,
        durationTicks: Math.ceil(durationMs / FRAME_MS),
        gapTicks: Math.ceil(gapMs / FRAME_MS),
        phase: 'tone',
        tick: 0,
        eventTimestamp: 0,
        resolve,
        reject,
      });
    });
  }

  /** Close the peer: stops the media clock, releases the PeerConnection and its sockets. Idempotent. */
  close(): Promise<void> {
    if (!this.closing) this.closing = this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.stopClock();
    if (this.sdes) {
      const { socket } = this.sdes;
      await new Promise<void>((resolve) => socket.close(() => resolve()));
    }
    for (const job of this.dtmfQueue.splice(0)) job.reject(new RelayPeerError('closed', 'RelayPeer closed'));
    for (const off of this.unsubscribers.splice(0)) off();
    const pc = this.pc;
    try {
      await pc?.close();
    } catch (err) {
      this.log?.warn({ err }, 'closing the PeerConnection failed');
    } finally {
      this.setState('closed');
      this.stateListeners.clear();
      this.dtmfListeners.clear();
      this.firstMediaListeners.clear();
    }
  }

  // ---------------------------------------------------------------- SDES

  /** Bind the SDES leg's UDP socket on `bindAddress` and read SRTP from it. */
  private async openSdes(role: 'offerer' | 'answerer'): Promise<SdesLeg> {
    this.assertOpen();
    if (this.pc || this.sdes) throw new RelayPeerError('invalid-state', 'this RelayPeer already negotiated');
    this.role = role;
    const socket = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, this.bindAddress, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    socket.on('error', (err) => this.log?.debug({ err }, 'SDES socket error'));
    socket.on('message', (msg, rinfo) => this.onSdesDatagram(msg, rinfo));
    const leg: SdesLeg = {
      socket,
      port: socket.address().port,
      localKey: newSdesKey(),
      ssrc: randomInt(1, 0x1_0000_0000),
      codecs: new Map(),
    };
    this.sdes = leg;
    return leg;
  }

  /** The relay's SDES codecs: Opus 111 (+ PCMU 0 / PCMA 8 with `additional_codecs`), telephone-event/8000 126. */
  private sdesOfferCodecs(): { pt: number; rtpmap: string; fmtp?: string }[] {
    return [
      { pt: OPUS_PT, rtpmap: 'opus/48000/2', fmtp: OPUS_FMTP },
      ...(this.allowG711
        ? [
            { pt: 0, rtpmap: 'PCMU/8000' },
            { pt: 8, rtpmap: 'PCMA/8000' },
          ]
        : []),
      { pt: TELEPHONE_EVENT_PT, rtpmap: 'telephone-event/8000' },
    ];
  }

  private async createSdesOffer(): Promise<string> {
    const leg = await this.openSdes('offerer');
    this.sdp = sdesSdp({
      address: this.bindAddress,
      port: leg.port,
      keySalt: leg.localKey,
      tag: 1,
      ssrc: leg.ssrc,
      codecs: this.sdesOfferCodecs(),
    });
    this.log?.debug({ sdp: this.sdp }, 'relay SDES offer created');
    return this.sdp;
  }

  private async answerSdesOffer(offer: string): Promise<string> {
    // Meta's relay sends nothing to a ringing business-initiated call's business (M-BIC).
    this.userMediaAllowed = false;
    const leg = await this.openSdes('answerer');
    const crypto = this.applySdesRemote(offer);
    // Answer with what the business offered that Meta speaks, at the business's payload types (RFC 3264 §6.1).
    const codecs: { pt: number; rtpmap: string; fmtp?: string }[] = [];
    for (const [pt, mime] of sdpCodecs(offer)) {
      if (mime === 'audio/opus') codecs.push({ pt, rtpmap: 'opus/48000/2', fmtp: OPUS_FMTP });
      else if (this.allowG711 && mime === 'audio/pcmu') codecs.push({ pt, rtpmap: 'PCMU/8000' });
      else if (this.allowG711 && mime === 'audio/pcma') codecs.push({ pt, rtpmap: 'PCMA/8000' });
      else if (mime === 'audio/telephone-event/8000') codecs.push({ pt, rtpmap: 'telephone-event/8000' });
    }
    this.sdp = sdesSdp({
      address: this.bindAddress,
      port: leg.port,
      keySalt: leg.localKey,
      tag: crypto.tag,
      ssrc: leg.ssrc,
      codecs,
    });
    this.log?.debug({ sdp: this.sdp }, 'relay SDES answer created');
    return this.sdp;
  }

  /**
   * Take the business's `a=crypto`, address and codecs: SRTP is keyed and media may flow at once (no ICE or
   * DTLS to wait for), so the relay counts as connected.
   */
  private applySdesRemote(sdp: string): { tag: number } {
    const leg = this.sdes;
    if (!leg) throw new RelayPeerError('invalid-state', 'no SDES leg');
    const crypto = usableCrypto(sdp);
    if (!crypto.ok) {
      throw new RelayPeerError('invalid-sdp', `SDP Validation error: ${crypto.details}`, { details: crypto.details });
    }
    const parsed = sdpTransform.parse(sdp);
    const media = parsed.media[0];
    const address = media?.connection?.ip ?? parsed.connection?.ip;
    if (!media || !address || !isIPv4(address) || !media.port) {
      const details = 'SDES needs the business media address: an IPv4 c= line and a non-zero m= port';
      throw new RelayPeerError('invalid-sdp', `SDP Validation error: ${details}`, { details });
    }
    leg.remote = { address, port: media.port };
    leg.codecs = sdpCodecs(sdp);
    leg.sendPt = [...leg.codecs].find(
      ([, mime]) => mime === 'audio/opus' || (this.allowG711 && (mime === 'audio/pcmu' || mime === 'audio/pcma')),
    )?.[0];
    leg.srtp = sdesSrtpSession(leg.localKey, crypto.crypto.keySalt);
    this.setState('connected');
    return { tag: crypto.crypto.tag };
  }

  /** An SRTP (or, rtcp-muxed, SRTCP) datagram from the business. RTCP is not read in SDES mode. */
  private onSdesDatagram(msg: Buffer, rinfo: { address: string; port: number }): void {
    const leg = this.sdes;
    if (!leg?.srtp || msg.length < 12 || (msg[0] as number) >> 6 !== 2) return;
    const pt = (msg[1] as number) & 0x7f;
    if (pt >= 64 && pt <= 95) return; // RFC 5761 §4: RTCP on the muxed port
    let rtp: RtpPacket;
    try {
      rtp = RtpPacket.deSerialize(leg.srtp.decrypt(msg));
    } catch (err) {
      this.log?.debug({ err, from: rinfo }, 'dropped an SRTP packet that failed authentication');
      return;
    }
    this.onBusinessRtp(rtp);
  }

  // ---------------------------------------------------------------- setup

  private preparePeer(role: 'offerer' | 'answerer'): RTCPeerConnection {
    this.assertOpen();
    if (this.pc) throw new RelayPeerError('invalid-state', 'this RelayPeer already negotiated');
    this.role = role;
    const codecs = [
      new RTCRtpCodecParameters({
        mimeType: 'audio/opus',
        clockRate: SAMPLE_RATE,
        channels: 2,
        payloadType: OPUS_PT,
        parameters: OPUS_FMTP,
        rtcpFeedback: [{ type: 'transport-cc' }],
      }),
      ...(this.allowG711
        ? [
            new RTCRtpCodecParameters({ mimeType: 'audio/PCMU', clockRate: 8000, channels: 1, payloadType: 0 }),
            new RTCRtpCodecParameters({ mimeType: 'audio/PCMA', clockRate: 8000, channels: 1, payloadType: 8 }),
          ]
        : []),
      new RTCRtpCodecParameters({
        mimeType: 'audio/telephone-event',
        clockRate: 8000,
        payloadType: TELEPHONE_EVENT_PT,
      }),
    ];
    const pc = new RTCPeerConnection({
      // RFC 8445 §2.5: a lite agent gathers only host candidates and never
      // runs checks, so werift's default Google STUN fallback is never used.
      iceLite: true,
      iceServers: [],
      // Interface enumeration off; the only host address is bindAddress and
      // the socket is bound to it, so no other address can leak into the SDP.
      iceUseIpv4: false,
      iceUseIpv6: false,
      iceUseTcp: false,
      iceAdditionalHostAddresses: [this.bindAddress],
      iceInterfaceAddresses: { udp4: this.bindAddress },
      // Only answer checks addressed to our ufrag (USERNAME = "ours:theirs").
      iceFilterStunResponse: (msg) => {
        const username = msg.getAttributeValue('USERNAME') as unknown;
        return typeof username === 'string' && username.split(':')[0] === this.ufrag;
      },
      bundlePolicy: 'max-bundle',
      codecs: { audio: codecs },
      headerExtensions: {
        audio: [
          new RTCRtpHeaderExtensionParameters({ id: 1, uri: 'urn:ietf:params:rtp-hdrext:ssrc-audio-level' }),
          new RTCRtpHeaderExtensionParameters({
            id: 2,
            uri: 'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time',
          }),
          new RTCRtpHeaderExtensionParameters({
            id: 3,
            uri: 'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01',
          }),
        ],
      },
    });
    this.pc = pc;
    const sub = pc.connectionStateChange.subscribe((s) => {
      // 'disconnected' is transient (consent); the call engine only needs these five.
      if (s === 'disconnected') return;
      this.setState(s);
      if (s === 'failed' || s === 'closed') this.stopClock();
    });
    this.unsubscribers.push(() => sub.unSubscribe());
    return pc;
  }

  /** Replace werift's 4-char ufrag by a Meta-style one containing '/' (before gathering). */
  private setMetaUfrag(pc: RTCPeerConnection): void {
    const ice = pc.iceTransports[0];
    if (!ice) throw new Error('no ICE transport to configure');
    this.ufrag = metaUfrag();
    ice.connection.localUsername = this.ufrag;
  }

  /**
   * Meta answers connectivity checks from any address (peer-reflexive) but
   * only if STUN MESSAGE-INTEGRITY verifies with its ice-pwd (RFC 8445 §7.3,
   * RFC 5389 §10.1.2). werift's agent does not verify incoming requests, so
   * requests that fail the check are dropped before werift sees them. This
   * reaches into werift internals (`Connection.protocols`,
   * `StunProtocol.datagramReceived`); if they change, werift's lax behaviour
   * remains and a debug line is logged.
   */
  private enforceMessageIntegrity(pc: RTCPeerConnection): void {
    type Receiver = (data: Buffer, addr: unknown) => void;
    const connection = pc.iceTransports[0]?.connection as unknown as
      | { protocols?: { datagramReceived?: Receiver }[]; localPassword?: string }
      | undefined;
    const protocols = connection?.protocols;
    if (!connection || !Array.isArray(protocols) || protocols.length === 0) {
      this.log?.debug('werift internals changed: MESSAGE-INTEGRITY of checks is not enforced');
      return;
    }
    for (const protocol of protocols) {
      const original = protocol.datagramReceived;
      if (typeof original !== 'function') continue;
      protocol.datagramReceived = (data: Buffer, addr: unknown): void => {
        const message = parseMessage(data);
        if (
          message?.messageClass === classes.REQUEST &&
          !parseMessage(data, Buffer.from(connection.localPassword ?? '', 'utf8'))
        ) {
          this.log?.debug({ addr }, 'dropped a STUN request failing MESSAGE-INTEGRITY');
          return;
        }
        original.call(protocol, data, addr);
      };
    }
  }

  private subscribeMedia(transceiver: RTCRtpTransceiver): void {
    // Subscribing on the DTLS transport sees every SRTP packet of the single
    // BUNDLE transport, even when the business SDP carries no a=ssrc (werift's
    // SSRC router would drop those).
    const sub = transceiver.dtlsTransport.onRtp.subscribe((rtp) => this.onBusinessRtp(rtp));
    this.unsubscribers.push(() => sub.unSubscribe());
  }

  /**
   * Rewrite werift's SDP into the shape of Meta's (§5.1): session-level
   * `a=ice-lite`, real address/port in `c=`/`m=`, `a=ptime:20`, no trickle
   * lines. Only cosmetic lines change; ICE/DTLS/RTP parameters stay as werift
   * negotiated them.
   */
  private toMetaShape(sdp: string): string {
    const lines = sdp.split(/\r?\n/).filter((l) => l !== '');
    const candidate = lines.find((l) => l.startsWith('a=candidate:'));
    const candParts = candidate?.split(' ') ?? [];
    const candIp = candParts[4] ?? this.bindAddress;
    const candPort = candParts[5] ?? '9';
    const sessionId = BigInt(`0x${randomBytes(8).toString('hex')}`) >> 1n;
    const out: string[] = [];
    let inMedia = false;
    for (const line of lines) {
      if (line.startsWith('o=')) {
        out.push(`o=- ${sessionId} 2 IN IP4 127.0.0.1`);
      } else if (
        line === 'a=extmap-allow-mixed' ||
        line === 'a=ice-options:trickle' ||
        line === 'a=end-of-candidates'
      ) {
        // Meta does not trickle (§5.1).
      } else if (line === 'a=ice-lite') {
        // moved to session level below
      } else if (line.startsWith('m=')) {
        out.push('a=ice-lite'); // RFC 8839 §5.3: session-level attribute
        inMedia = true;
        out.push(line.replace(/^m=audio \d+ /, `m=audio ${candPort} `));
      } else if (inMedia && line.startsWith('c=')) {
        out.push(`c=IN IP4 ${candIp}`);
      } else if (line === candidate) {
        out.push(...this.metaCandidates(candParts));
      } else {
        out.push(line);
      }
    }
    out.push('a=ptime:20');
    return `${out.join('\r\n')}\r\n`;
  }

  /**
   * Meta's two host candidates on one port (§5.1 sample): the reachable IPv4 one werift gathered, then the IPv6
   * one, each with `generation 0 network-cost 50 ufrag <ufrag>`.
   */
  private metaCandidates(parts: string[]): string[] {
    const [foundation, component = '1', transport = 'udp', priority = '2113937151', ip, port] = parts;
    const ext = `typ host generation 0 network-cost 50 ufrag ${this.ufrag ?? ''}`;
    const v4 = `${foundation} ${component} ${transport} ${priority} ${ip} ${port} ${ext}`;
    if (!this.ipv6Candidate) return [v4];
    const v6Foundation = `a=candidate:${randomInt(1, 0x7fffffff)}`;
    const v6Priority = Number(priority) + IPV6_PRIORITY_BONUS;
    return [v4, `${v6Foundation} ${component} ${transport} ${v6Priority} ${this.ipv6Candidate} ${port} ${ext}`];
  }

  // ---------------------------------------------------------------- receive

  private onBusinessRtp(rtp: RtpPacket): void {
    const now = Date.now();
    this.counters.packetsReceived++;
    this.counters.bytesReceived += rtp.payload.length;
    this.ssrcsSeen.add(rtp.header.ssrc);
    this.lastMediaAt = now;
    if (this.firstMediaAt === undefined) {
      this.firstMediaAt = now;
      this.log?.debug('maiden business packet received; media may flow');
      this.startClock();
      // The WhatsApp client counts this packet as the answer if no accept came first (M-FAQ).
      for (const cb of [...this.firstMediaListeners]) cb();
    }
    const pt = rtp.header.payloadType;
    const codec = this.codecForPt(pt);
    if (codec === 'telephone-event') {
      this.onTelephoneEvent(rtp);
      return;
    }
    let pcm: Int16Array;
    try {
      if (codec === 'opus') {
        pcm = toInt16(this.decoder.decode(rtp.payload));
      } else if (codec === 'pcmu' || codec === 'pcma') {
        const narrow = codec === 'pcmu' ? alawmulaw.mulaw.decode(rtp.payload) : alawmulaw.alaw.decode(rtp.payload);
        pcm = upsample6(narrow, this.g711Prev);
        this.g711Prev = narrow[narrow.length - 1] ?? 0;
      } else {
        return;
      }
    } catch (err) {
      this.log?.debug({ err, pt }, 'undecodable business audio');
      return;
    }
    if (this.firstAudibleAt === undefined && rmsDbfs(pcm) > AUDIBLE_DBFS) {
      this.firstAudibleAt = now;
    }
    this.recorder?.push(pcm);
    this.recent.push(pcm);
  }

  /** RFC 4733 §2.3: event(8) | E(1) R(1) volume(6) | duration(16). */
  private onTelephoneEvent(rtp: RtpPacket): void {
    const p = rtp.payload;
    if (p.length < 4) return;
    const event = p[0] as number;
    const end = ((p[1] as number) & 0x80) !== 0;
    if (!end || event >= DTMF_EVENTS.length) return;
    // RFC 4733 §2.5.1.4: the end packet is sent three times with the same
    // timestamp; report each event once.
    const ts = rtp.header.timestamp;
    if (this.seenEventTimestamps.includes(ts)) return;
    this.seenEventTimestamps.push(ts);
    if (this.seenEventTimestamps.length > 32) this.seenEventTimestamps.shift();
    const digit = DTMF_EVENTS[event] as string;
    this.digits += digit;
    this.counters.dtmfReceived++;
    this.log?.debug({ digit }, 'DTMF received');
    for (const cb of this.dtmfListeners) cb(digit);
  }

  private codecForPt(pt: number): SendCodec | 'telephone-event' | undefined {
    const sdesMime = this.sdes?.codecs.get(pt);
    if (sdesMime !== undefined) {
      if (sdesMime.startsWith('audio/telephone-event')) return 'telephone-event';
      return sdesMime === 'audio/opus'
        ? 'opus'
        : sdesMime === 'audio/pcmu'
          ? 'pcmu'
          : sdesMime === 'audio/pcma'
            ? 'pcma'
            : undefined;
    }
    const c = this.transceiver?.codecs.find((x) => x.payloadType === pt);
    if (!c) return pt === TELEPHONE_EVENT_PT ? 'telephone-event' : pt === OPUS_PT ? 'opus' : undefined;
    const mime = c.mimeType.toLowerCase();
    if (mime === 'audio/telephone-event') return 'telephone-event';
    if (mime === 'audio/opus') return 'opus';
    if (mime === 'audio/pcmu') return 'pcmu';
    if (mime === 'audio/pcma') return 'pcma';
    return undefined;
  }

  // ---------------------------------------------------------------- send

  private startClock(): void {
    if (this.clock || this.closing || !this.userMediaAllowed) return;
    this.clockStart = performance.now();
    this.framesDone = 0;
    this.clock = setInterval(() => this.tick(), 10);
  }

  private stopClock(): void {
    if (this.clock) clearInterval(this.clock);
    this.clock = undefined;
  }

  private tick(): void {
    const due = Math.floor((performance.now() - this.clockStart) / FRAME_MS) + 1;
    let behind = due - this.framesDone;
    if (behind > 25) {
      // The event loop stalled (> 0.5 s): skip ahead instead of bursting.
      const skip = behind - 1;
      this.framesDone += skip;
      this.rtp.ts = (this.rtp.ts + skip * this.samplesPerFrame()) >>> 0;
      behind = 1;
    }
    for (let i = 0; i < behind; i++) {
      this.sendFrame();
      this.framesDone++;
    }
  }

  private sendCodec(): SendCodec {
    const sdesPt = this.sdes?.sendPt;
    const mime =
      sdesPt !== undefined ? this.sdes?.codecs.get(sdesPt) : this.transceiver?.sender.codec?.mimeType.toLowerCase();
    return mime === 'audio/pcmu' ? 'pcmu' : mime === 'audio/pcma' ? 'pcma' : 'opus';
  }

  /** RTP clock ticks per 20 ms: 960 for Opus (RFC 7587 48 kHz clock), 160 for G.711. */
  private samplesPerFrame(): number {
    return this.sendCodec() === 'opus' ? FRAME_SAMPLES : 160;
  }

  private nextSeq(): number {
    const s = this.rtp.seq;
    this.rtp.seq = (s + 1) & 0xffff;
    return s;
  }

  private sendFrame(): void {
    if (!this.transceiver && !this.sdes?.srtp) return;
    const frame = this.source.next();
    const ts = this.rtp.ts;
    if (!this.sendDtmfTick(ts)) {
      const codec = this.sendCodec();
      let payload: Uint8Array;
      if (codec === 'opus') {
        if (!this.encoder) {
          this.encoder = new Encoder({ channels: 1, sample_rate: SAMPLE_RATE, application: 'voip' });
          this.encoder.bitrate = 32_000;
        }
        payload = this.encoder.encode(frame);
      } else {
        const narrow = downsample6(frame);
        payload = codec === 'pcmu' ? alawmulaw.mulaw.encode(narrow) : alawmulaw.alaw.encode(narrow);
      }
      const header = new RtpHeader({
        payloadType: this.sdes?.sendPt ?? this.transceiver?.sender.codec?.payloadType ?? OPUS_PT,
        sequenceNumber: this.nextSeq(),
        timestamp: ts,
        ssrc: this.localSsrc(),
        marker: this.framesDone === 0,
      });
      this.counters.packetsSent++;
      this.firstUserMediaAt ??= Date.now();
      if (this.sdes) {
        this.sendSdes(header, Buffer.from(payload));
      } else {
        this.transceiver?.sender.sendRtp(new RtpPacket(header, Buffer.from(payload))).catch((err: unknown) => {
          this.log?.debug({ err }, 'sendRtp failed');
        });
      }
    }
    this.rtp.ts = (ts + this.samplesPerFrame()) >>> 0;
  }

  /**
   * Advance the DTMF state machine by one 20 ms frame. Returns true if this
   * frame was used by an event (audio is suppressed during an event,
   * RFC 4733 §2.5.1.1).
   */
  private sendDtmfTick(ts: number): boolean {
    const job = this.dtmfQueue[0];
    if (!job) return false;
    if (job.phase === 'gap') {
      job.tick++;
      if (job.tick >= job.gapTicks) {
        job.phase = 'tone';
        job.tick = 0;
      }
      return false;
    }
    const pt = this.telephoneEventPt();
    if (pt === undefined) {
      this.dtmfQueue.shift();
      job.reject(new RelayPeerError('invalid-state', 'telephone-event/8000 was not negotiated'));
      return false;
    }
    if (job.tick === 0) job.eventTimestamp = ts;
    const event = DTMF_EVENTS.indexOf(job.digits[job.index] as string);
    job.tick++;
    const ended = job.tick >= job.durationTicks;
    // Duration in 8 kHz units regardless of the audio clock (Meta: "durations
    // are in 8 kHz units"); the timestamp is the event start on the shared
    // audio timeline, sequence numbers continue the audio's.
    const duration = Math.min(0xffff, job.tick * 160);
    const send = (end: boolean, marker: boolean): void => {
      const payload = Buffer.from([event, (end ? 0x80 : 0) | 10, duration >> 8, duration & 0xff]);
      const header = new RtpHeader({
        payloadType: pt,
        sequenceNumber: this.nextSeq(),
        timestamp: job.eventTimestamp,
        ssrc: this.localSsrc(),
        marker,
      });
      this.counters.packetsSent++;
      if (this.sdes) {
        this.sendSdes(header, payload);
        return;
      }
      // werift's sender.sendRtp would overwrite the PT with Opus's, so events
      // go straight to the DTLS transport (dependency-notes §1).
      this.transceiver?.dtlsTransport.sendRtp(payload, header).catch((err: unknown) => {
        this.log?.debug({ err }, 'DTMF sendRtp failed');
      });
    };
    if (!ended) {
      send(false, job.tick === 1);
      return true;
    }
    // RFC 4733 §2.5.1.4: the final packet is retransmitted (3 in total).
    for (let i = 0; i < 3; i++) send(true, job.tick === 1 && i === 0);
    this.counters.dtmfSent++;
    job.index++;
    job.tick = 0;
    if (job.index >= job.digits.length) {
      this.dtmfQueue.shift();
      job.resolve();
    } else {
      job.phase = job.gapTicks > 0 ? 'gap' : 'tone';
    }
    return true;
  }

  private telephoneEventPt(): number | undefined {
    if (this.sdes) {
      return [...this.sdes.codecs].find(([, mime]) => mime === 'audio/telephone-event/8000')?.[0];
    }
    return this.transceiver?.codecs.find(
      (c) => c.mimeType.toLowerCase() === 'audio/telephone-event' && c.clockRate === 8000,
    )?.payloadType;
  }

  /** The SSRC of what the relay sends (one per call; Meta rewrites to a fixed one, M-PAT). */
  private localSsrc(): number {
    return this.sdes?.ssrc ?? this.transceiver?.sender.ssrc ?? 0;
  }

  /** SRTP-protect one RTP packet with the relay's SDES key and send it to the business's SDP address. */
  private sendSdes(header: RtpHeader, payload: Buffer): void {
    const leg = this.sdes;
    if (!leg?.srtp || !leg.remote) return;
    const packet = leg.srtp.encrypt(payload, header);
    leg.socket.send(packet, leg.remote.port, leg.remote.address, (err) => {
      if (err) this.log?.debug({ err }, 'SDES send failed');
    });
  }

  // ---------------------------------------------------------------- misc

  private setState(s: RelayConnectionState): void {
    if (this.state === s || this.state === 'closed') return;
    this.state = s;
    this.log?.debug({ state: s }, 'relay connection state');
    for (const cb of [...this.stateListeners]) {
      try {
        cb(s);
      } catch (err) {
        this.log?.warn({ err }, 'connection state listener threw');
      }
    }
  }

  private assertOpen(): void {
    if (this.closing) throw new RelayPeerError('closed', 'RelayPeer is closed');
  }

  private wrap(err: unknown, message: string): RelayPeerError {
    if (err instanceof RelayPeerError) return err;
    const text = err instanceof Error ? err.message : String(err);
    return new RelayPeerError('webrtc', `${message}: ${text}`, { cause: err });
  }
}
