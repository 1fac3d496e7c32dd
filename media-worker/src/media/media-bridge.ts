/**
 * Bridges the WhatsApp WebRTC leg and the SIP RTP leg of one call.
 *
 * Two modes, chosen by the codec the PBX answered (sip-sdp.ts):
 * - **passthrough** (SIP side Opus): Opus frames are not decoded; only the
 *   RTP header is rewritten (PT, SSRC, sequence number, timestamp). Both
 *   sides run the 48 kHz Opus clock (RFC 7587 §4.1), so timestamps map by a
 *   running offset. SIP→WhatsApp packets are forwarded as they arrive unless
 *   that would run the WhatsApp timeline more than `maxJitterMs` ahead of
 *   real time (a PBX flushing a backlog after a stall): then they wait in a
 *   small queue paced at 20 ms, and the oldest are dropped beyond the bound.
 * - **transcode** (SIP side PCMU/PCMA): Opus → libopus decoder at 8 kHz
 *   (libopus resamples internally, so no separate resampler) → G.711 →
 *   RTP at 8 kHz (PT 0/8, RFC 3551); and G.711 → libopus encoder at 8 kHz →
 *   WhatsApp, each 20 ms frame encoded and sent as soon as its samples have
 *   arrived (the default; the WhatsApp client's adaptive jitter buffer does
 *   the de-jittering, as with passthrough, and the same pacing bound applies),
 *   or, with `jitterMs` ≥ 20, through a de-jitter buffer and a 20 ms playout
 *   clock. An 8 kHz encoder still produces 20 ms frames, which advance the
 *   48 kHz RTP clock by 960.
 *
 * DTMF goes both ways as RFC 4733 events: WhatsApp PT 126 → the SIP
 * telephone-event PT the PBX answered (e.g. 101) with timestamps on the SIP
 * stream, and back. Durations are in 8 kHz units on both sides (Meta §5.1).
 *
 * Sequence numbers and timestamps stay continuous across early media →
 * answer ({@link MediaBridge.updateSip}), silence → audio and hold → resume:
 * the WhatsApp leg and the RTP session each own one SSRC and sequence space,
 * and the bridge only ever advances timestamps.
 *
 * @module
 */
import { Decoder, Encoder } from '@evan/opus';
import type { Logger } from 'pino';
import { OPUS_TICKS_PER_FRAME, type ReceivedTelephoneEvent, type WhatsAppLeg } from '../webrtc/whatsapp-leg.ts';
import { DelayHistogram } from './delay-histogram.ts';
import { MediaError } from './errors.ts';
import { FrameClock } from './frame-clock.ts';
import { g711Decode, g711Encode } from './g711.ts';
import { JitterBuffer } from './jitter-buffer.ts';
import {
  buildTelephoneEvent,
  DTMF_EVENTS,
  parseTelephoneEvent,
  type RtpView,
  seqDiff,
  TelephoneEventReceiver,
  tsDiff,
} from './rtp.ts';
import type { RtpSession, RtpSource } from './rtp-session.ts';
import type { SipMediaDescription } from './sip-sdp.ts';

/** How audio crosses the bridge. */
export type BridgeMode = 'passthrough' | 'transcode';

/** Options for {@link MediaBridge}. */
export interface MediaBridgeOptions {
  /** The WhatsApp leg (answered/connected or connecting). Not owned: the caller closes it. */
  whatsapp: WhatsAppLeg;
  /** The SIP leg's RTP session. Not owned: the caller closes it. */
  rtp: RtpSession;
  /** What the PBX's SDP negotiated (from `parseSipAnswer`/`answerSipOffer`). */
  sip: SipMediaDescription;
  /**
   * Transcoding only: 0 (the default) encodes each 20 ms as soon as it has
   * arrived and leaves de-jittering to the WhatsApp client, like passthrough
   * and like the usual B2BUA default (the pacing bound `maxJitterMs` still
   * applies). 20 or more puts a de-jitter buffer in front of the encoder,
   * for PBX links whose jitter should not reach WhatsApp. The buffer holds
   * `max(1, round(jitterMs / 20))` packets at each playout tick and is
   * brought back to that depth when it stays deeper (after a burst or a
   * stall). Playout starts `jitterMs - 10` ms after the first packet, so
   * the ticks fall half a frame after the packets' nominal arrival: each
   * packet waits about `jitterMs - 10` ms, and arrivals up to 10 ms late
   * (more with a deeper buffer) or early cost nothing. A packet later than
   * that is not held for the next tick: the tick that found the buffer
   * empty sends nothing and the packet is encoded and sent as it arrives
   * (Meta's own jitter buffer absorbs the shift; a second empty tick in a
   * row sends silence). As the PBX's clock drifts against ours, the ticks
   * are moved back to `jitterMs - 15` ms (at least 5) behind the latest
   * arrivals once a second. @default 0
   */
  jitterMs?: number;
  /**
   * The delay bound SIP→WhatsApp. Transcoding: older packets in the
   * de-jitter buffer are dropped beyond it. Passthrough: the WhatsApp
   * timeline never runs more than this ahead of real time; faster input is
   * paced at 20 ms and the oldest packets are dropped beyond it. @default 160
   */
  maxJitterMs?: number;
  /** Opus encoder bitrate for transcoded audio (bit/s). @default 16000 */
  opusBitrate?: number;
  /**
   * libopus encoder complexity (0–10) for transcoded audio. At 8 kHz (SILK),
   * 1 costs ~16 µs per 20 ms frame against ~33 µs at 3 and ~45 µs at 5
   * (bench/opus-complexity.ts), with no worse a tone SNR; the encoder is
   * most of a transcoded call's CPU. @default 1
   */
  opusComplexity?: number;
  /** Call id for logs and errors. */
  callId?: string;
  /** Logger; a `component: 'media-bridge'` child is used. */
  logger?: Logger;
}

/** Per-direction counters. */
export interface BridgeDirectionStats {
  /** Audio packets received on the source leg. */
  packetsIn: number;
  /** Audio packets sent on the destination leg. */
  packetsOut: number;
  /** Packets missing from the source stream (sequence gaps). */
  lost: number;
  /** Inter-arrival jitter of the source stream in ms (RFC 3550 A.8); SIP side only, WhatsApp side see `WhatsAppLeg.stats()`. */
  jitterMs: number;
  /** DTMF digits relayed. */
  dtmfDigits: number;
}

/** Snapshot returned by {@link MediaBridge.stats}. */
export interface MediaBridgeStats {
  mode: BridgeMode;
  onHold: boolean;
  whatsappToSip: BridgeDirectionStats;
  sipToWhatsapp: BridgeDirectionStats & {
    /** Transcoding: frames concealed because a packet was missing. */
    concealed: number;
    /**
     * Transcoding: frames with no packet to play (silence or nothing sent).
     * A tick that waits for a late packet which then arrives is not one.
     */
    underruns: number;
    /**
     * Transcoding: frames played the moment their packet arrived, because
     * the tick before found the buffer empty (see `MediaBridgeOptions.jitterMs`).
     */
    playedOnArrival: number;
    /** Transcoding: times the playout ticks were moved closer behind the arrivals. */
    rephased: number;
    /** Packets dropped as late or duplicate. */
    late: number;
    /**
     * Packets dropped to keep the delay within `maxJitterMs`: de-jitter
     * buffer overflow (transcoding), pacing queue overflow (passthrough).
     */
    overflowDropped: number;
    /**
     * Transcoding: packets dropped to bring the de-jitter buffer back to its
     * target depth after it stayed deeper (burst, stall) for a while.
     */
    trimmed: number;
    /** Transcoding: packets in the de-jitter buffer now. */
    bufferedPackets: number;
    /** Passthrough: packets held back by the pacing queue (input faster than real time). */
    paced: number;
    /**
     * Frames that reached the WhatsApp leg before it was connected and were
     * lost (clipping, §5.2): start SIP media after the leg connects.
     */
    droppedBeforeConnect: number;
  };
}

/** A digit relayed by the bridge, for logs and SIP INFO fallbacks. */
export interface BridgedDigit {
  digit: string;
  direction: 'whatsapp-to-sip' | 'sip-to-whatsapp';
}

const FRAME_MS = 20;
const SIP_FRAME_8K = 160;
/** 48 kHz RTP clock ticks per millisecond. */
const OPUS_TICKS_PER_MS = 48;
/** Ticks during which packets for frames the playout clock skipped are dropped as they arrive. */
const SKIP_DEBT_TICKS = 5;
/**
 * Transcoding: every this many ticks the playout phase is checked against
 * how long the packets played in that window waited (see `rephasePlayout`).
 */
const REPHASE_WINDOW_TICKS = 50;
/** …and moved only if the shortest wait exceeds its target by more than this. */
const REPHASE_HYSTERESIS_MS = 5;
/** Stop the transcoding playout clock after this long without SIP packets; the leg's silence takes over. */
const IDLE_STOP_MS = 500;
/**
 * Passthrough and transcoding on arrival: after this long without a SIP
 * packet to forward, hand the WhatsApp stream over to the leg's silence (so
 * Meta sees a short hole, not the leg's `silenceResumeMs`). It is two and a
 * half frames, so one lost packet (a 40 ms gap) stays a timestamp gap that
 * Meta's decoder conceals rather than becoming a silence frame, plus how
 * late SIP packets have recently been (a peak that decays by 3 % per packet,
 * half-life ~0.5 s), up to {@link PASSTHROUGH_IDLE_MAX_MS}: on a jittery PBX
 * link a late packet is not mistaken for the end of audio (which would put a
 * silence frame in its slot and delay the audio by a frame).
 */
const PASSTHROUGH_IDLE_MS = 50;
const PASSTHROUGH_IDLE_MAX_MS = 100;
/** Arrival gaps longer than this are pauses (talkspurt ends, stalls), not lateness. */
const LATENESS_MAX_GAP_MS = 200;
const LATENESS_DECAY = 0.97;

/**
 * A timestamp step towards WhatsApp (48 kHz ticks) from the PBX's: a step
 * that is not forward or is longer than 5 s (a restarted stream, a PBX clock
 * jump) counts as one frame.
 */
function plausibleStep(ticks: number): number {
  return ticks > 0 && ticks <= 48_000 * 5 ? ticks : OPUS_TICKS_PER_FRAME;
}

/** A passthrough packet waiting in the pacing queue. */
interface PacedPacket {
  /** Own copy of the Opus payload. */
  payload: Buffer;
  /** 48 kHz ticks since the previous packet; undefined for the stream's first packet. */
  delta: number | undefined;
  marker: boolean;
  /** When its SIP packet arrived (`performance.now()`). */
  arrivedAt: number;
}

/**
 * One call's media bridge. Construct, then {@link start}; {@link close} when
 * the call ends (the legs themselves are closed by their owner).
 */
export class MediaBridge {
  private readonly leg: WhatsAppLeg;
  private readonly rtp: RtpSession;
  private sip: SipMediaDescription;
  private readonly opts: MediaBridgeOptions;
  private readonly log: Logger | undefined;
  private readonly unsubscribers: (() => void)[] = [];
  private readonly digitListeners = new Set<(d: BridgedDigit) => void>();
  private started = false;
  private closed = false;
  private held = false;
  /** Set by resume(): the next packet to the PBX starts a talkspurt (marker). */
  private resumed = false;

  // Codecs (transcode mode only).
  private decoder: Decoder | undefined;
  private encoder: Encoder | undefined;

  // WhatsApp → SIP.
  private waLastSeq = -1;
  private waLastTs = 0;
  private sipTs = Math.floor(Math.random() * 0x1_0000_0000) >>> 0;
  private sipSentAny = false;
  private sipLastSentAt = 0;
  private readonly g711Out = new Uint8Array(960 * 6);
  private waEventSipTs: number | undefined;

  // SIP → WhatsApp.
  private sipLastSeq = -1;
  private sipLastTs = 0;
  private sipJitterPrevArrival = 0;
  private sipJitterPrevTs = 0;
  private sipJitterTicks = 0;
  private readonly jitter = new JitterBuffer(32, 1500);
  private readonly playout: FrameClock;
  private playoutTimer: NodeJS.Timeout | undefined;
  private lastSipPacketAt = 0;
  /** Frames the playout clock skipped (event-loop stall) whose packets are still to be dropped. */
  private skipDebt = 0;
  private skipDebtTicks = 0;
  private readonly pcm = new Int16Array(4096);
  /** Transcoding on arrival: SIP (8 kHz) timestamp of pcm[0], and of the last frame sent. */
  private pcmStartTs = 0;
  private lastFrameTs = -1;
  /** Transcoding on arrival: samples of the last SIP packet (to see where the next should start). */
  private sipLastSamples = 0;
  private pcmLength = 0;
  private readonly frame = new Int16Array(SIP_FRAME_8K);
  private readonly sipEvents = new TelephoneEventReceiver();
  // Passthrough pacing (SIP→WhatsApp must not run ahead of real time).
  private readonly paceQueue: PacedPacket[] = [];
  private paceTimer: NodeJS.Timeout | undefined;
  private passthroughIdleTimer: NodeJS.Timeout | undefined;
  private passthroughIdleMs = 0;
  private sipArrivalAt = 0;
  /** Decaying peak of how late SIP packets arrived against their timestamps (ms). */
  private sipLatenessMs = 0;

  private readonly waToSip = { packetsIn: 0, packetsOut: 0, lost: 0, jitterMs: 0, dtmfDigits: 0 };
  /**
   * How long each SIP packet waited in the bridge, from the RTP callback that
   * received it to its frame going to the WhatsApp leg (decode, encode, the
   * pacing queue or the de-jitter stage): the delay the bridge adds.
   */
  readonly sipToWhatsappHold = new DelayHistogram();
  /** Transcoding: the last tick found the buffer empty and sent nothing; the next packet plays on arrival. */
  private awaitingLatePacket = false;
  /** Transcoding: shortest arrival → playout wait in the current rephase window, and the window's ticks. */
  private minWaitMs = Number.POSITIVE_INFINITY;
  private rephaseTicks = 0;
  private readonly sipToWa = {
    packetsIn: 0,
    packetsOut: 0,
    lost: 0,
    jitterMs: 0,
    dtmfDigits: 0,
    concealed: 0,
    underruns: 0,
    playedOnArrival: 0,
    rephased: 0,
    late: 0,
    overflowDropped: 0,
    paced: 0,
    droppedBeforeConnect: 0,
  };

  /** @param options - see {@link MediaBridgeOptions} */
  constructor(options: MediaBridgeOptions) {
    this.opts = options;
    this.leg = options.whatsapp;
    this.rtp = options.rtp;
    this.sip = options.sip;
    this.log = options.logger?.child({ component: 'media-bridge', callId: options.callId });
    this.playout = new FrameClock((skipped) => this.playoutFrame(skipped));
    this.configureCodecs();
  }

  /** `passthrough` when the SIP side negotiated Opus, else `transcode`. */
  get mode(): BridgeMode {
    return this.sip.codec.name === 'opus' ? 'passthrough' : 'transcode';
  }

  /** True while on hold ({@link hold} or a hold SDP in {@link updateSip}). */
  get onHold(): boolean {
    return this.held;
  }

  /**
   * Start bridging: subscribe to both legs and point the RTP session at the
   * PBX. The WhatsApp leg's silence keeps Meta fed until SIP audio flows.
   */
  start(): void {
    if (this.closed) throw this.error('closed', 'the bridge is closed');
    if (this.started) return;
    this.started = true;
    this.rtp.setRemote(this.sip.address, this.sip.port);
    this.leg.startSilence();
    this.unsubscribers.push(
      this.leg.onAudio((rtp) => this.onWhatsAppAudio(rtp)),
      this.leg.onTelephoneEvent((ev) => this.onWhatsAppEvent(ev)),
      this.rtp.onPacket((p, src) => this.onSipPacket(p, src)),
    );
    if (this.sip.onHold) this.hold();
  }

  /**
   * Apply a new SIP description (200 OK after early media, or a re-INVITE):
   * new address, codec or hold state. Streams stay continuous.
   */
  updateSip(sip: SipMediaDescription): void {
    if (this.closed) return;
    const codecChanged = sip.codec.name !== this.sip.codec.name || sip.codec.payloadType !== this.sip.codec.payloadType;
    this.sip = sip;
    this.rtp.setRemote(sip.address, sip.port);
    if (codecChanged) {
      this.configureCodecs();
      this.stopPlayout();
      this.stopPassthrough();
      this.sipArrivalAt = 0;
      this.sipLatenessMs = 0;
      this.jitter.reset();
      this.pcmLength = 0;
      this.sipLastSeq = -1;
      this.lastFrameTs = -1;
    }
    if (sip.onHold && !this.held) this.hold();
    else if (!sip.onHold && this.held) this.resume();
  }

  /**
   * SIP hold (re-INVITE with sendonly/inactive): stop sending to the PBX;
   * the WhatsApp side keeps receiving packets (the PBX's music on hold if it
   * sends any, silence otherwise) so Meta's media watchdog never fires.
   */
  hold(): void {
    this.held = true;
    this.leg.startSilence();
  }

  /** Leave hold: audio to the PBX flows again, timestamps continue. */
  resume(): void {
    if (this.held) this.resumed = true;
    this.held = false;
  }

  /** Subscribe to relayed DTMF digits (both directions). */
  onDtmf(cb: (d: BridgedDigit) => void): () => void {
    this.digitListeners.add(cb);
    return () => this.digitListeners.delete(cb);
  }

  /** Counter snapshot. */
  stats(): MediaBridgeStats {
    const jb = this.jitter.stats();
    return {
      mode: this.mode,
      onHold: this.held,
      whatsappToSip: { ...this.waToSip },
      sipToWhatsapp: {
        ...this.sipToWa,
        jitterMs: (this.sipJitterTicks / this.sip.codec.clockRate) * 1000,
        lost: this.sipToWa.lost + jb.missing,
        late: this.sipToWa.late + jb.late,
        overflowDropped: this.sipToWa.overflowDropped + jb.overflowDropped,
        trimmed: jb.trimmed,
        bufferedPackets: this.jitter.depth,
      },
    };
  }

  /** Stop bridging and release codecs and timers. Idempotent; the legs stay open. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    for (const off of this.unsubscribers.splice(0)) off();
    this.stopPlayout();
    this.stopPassthrough();
    this.decoder = undefined;
    this.encoder = undefined;
    this.digitListeners.clear();
    return Promise.resolve();
  }

  // ------------------------------------------------------------ WhatsApp → SIP

  /** `rtp` and its payload are only valid during this call (the leg reuses them). */
  private onWhatsAppAudio(rtp: RtpView): void {
    const h = rtp;
    this.waToSip.packetsIn++;
    if (this.waLastSeq >= 0) {
      const gap = seqDiff(h.sequenceNumber, this.waLastSeq);
      if (gap <= 0) return; // late or duplicate: the PBX's jitter buffer has moved on
      // Telephone-events share Meta's sequence space, so a gap can be an event.
      if (gap > 1 && gap < 100) this.waToSip.lost += gap - 1;
      this.advanceSipClock(tsDiff(h.timestamp, this.waLastTs));
    } else if (this.sipSentAny) {
      this.advanceSipClock(OPUS_TICKS_PER_FRAME);
    }
    this.waLastSeq = h.sequenceNumber;
    this.waLastTs = h.timestamp;
    if (this.held) return;

    if (this.mode === 'passthrough') {
      this.sendSip(this.sip.codec.payloadType, rtp.payload, h.marker);
      return;
    }
    const decoder = this.decoder;
    if (!decoder) return;
    let pcm: Int16Array;
    try {
      const u8 = decoder.decode(rtp.payload);
      // @evan/opus returns a fresh, 0-offset copy: view it without copying.
      pcm = new Int16Array(u8.buffer, u8.byteOffset, u8.byteLength >> 1);
    } catch (err) {
      this.log?.debug({ err }, 'undecodable Opus from WhatsApp');
      return;
    }
    const n = g711Encode(this.sip.codec.name as 'PCMU' | 'PCMA', pcm, this.g711Out);
    this.sendSip(this.sip.codec.payloadType, this.g711Out.subarray(0, n), h.marker);
  }

  /**
   * Move the SIP-side timestamp on by `waTicks` of the 48 kHz WhatsApp
   * clock (÷6 for 8 kHz G.711). Unusual jumps (reordering, a restarted
   * stream) advance by one frame instead.
   */
  private advanceSipClock(waTicks: number): void {
    let ticks = waTicks;
    if (ticks <= 0 || ticks > 48_000 * 5) ticks = OPUS_TICKS_PER_FRAME;
    this.sipTs = (this.sipTs + Math.round((ticks * this.sip.codec.clockRate) / 48_000)) >>> 0;
  }

  private sendSip(pt: number, payload: Uint8Array, marker: boolean): void {
    this.rtp.send(pt, this.sipTs, payload, marker || !this.sipSentAny || this.resumed);
    this.sipSentAny = true;
    this.resumed = false;
    this.sipLastSentAt = performance.now();
    this.waToSip.packetsOut++;
  }

  private onWhatsAppEvent(ev: ReceivedTelephoneEvent): void {
    const pt = this.sip.dtmfPayloadType;
    if (ev.phase === 'end' && ev.event < DTMF_EVENTS.length) {
      this.waToSip.dtmfDigits++;
      this.emitDigit(DTMF_EVENTS[ev.event] as string, 'whatsapp-to-sip');
    }
    if (pt === undefined || this.held) return;
    let marker = false;
    if (this.waEventSipTs === undefined || ev.phase === 'start') {
      // RFC 4733 §2.5.1.2: the event's timestamp is "now" on the SIP stream.
      const elapsed = this.sipSentAny ? performance.now() - this.sipLastSentAt : 0;
      const frames = Math.max(this.sipSentAny ? 1 : 0, Math.round(elapsed / FRAME_MS));
      this.waEventSipTs = (this.sipTs + frames * ((this.sip.codec.clockRate * FRAME_MS) / 1000)) >>> 0;
      marker = true;
    }
    const payload = buildTelephoneEvent(ev);
    // RFC 4733 §2.5.1.4: the end packet goes out three times.
    const repeats = ev.end ? 3 : 1;
    for (let i = 0; i < repeats; i++) this.rtp.send(pt, this.waEventSipTs, payload, marker && i === 0);
    if (ev.end) this.waEventSipTs = undefined;
  }

  // ------------------------------------------------------------ SIP → WhatsApp

  private onSipPacket(p: RtpView, _source: RtpSource): void {
    const arrivedAt = performance.now();
    const pt = p.payloadType;
    if (pt === this.sip.dtmfPayloadType) {
      this.onSipEvent(p);
      return;
    }
    if (pt !== this.sip.codec.payloadType) return; // CN, other formats: not bridged
    this.sipToWa.packetsIn++;
    this.trackSipJitter(p);
    if (this.mode === 'transcode' && this.transcodeOnArrival) {
      this.encodeOnArrival(p, arrivedAt);
      return;
    }
    if (this.mode === 'passthrough') {
      let delta: number | undefined;
      let marker = true;
      if (this.sipLastSeq >= 0) {
        if (this.sipSequenceGap(p) === undefined) return;
        delta = plausibleStep(tsDiff(p.timestamp, this.sipLastTs));
        marker = p.marker;
      }
      this.sipLastSeq = p.sequenceNumber;
      this.sipLastTs = p.timestamp;
      this.forwardPassthrough(p.payload, delta, marker, arrivedAt);
      return;
    }
    this.lastSipPacketAt = performance.now();
    this.jitter.push(p.sequenceNumber, p.timestamp, p.payload, this.lastSipPacketAt);
    if (this.awaitingLatePacket && this.playout.running) {
      this.awaitingLatePacket = false;
      this.sipToWa.playedOnArrival++;
      this.playFrame(false);
      return;
    }
    this.startPlayout();
  }

  /**
   * Sequence step from the previous SIP packet; undefined (counted as late)
   * for a late or duplicate packet. Losses of fewer than 100 are counted.
   */
  private sipSequenceGap(p: RtpView): number | undefined {
    const gap = seqDiff(p.sequenceNumber, this.sipLastSeq);
    if (gap <= 0) {
      this.sipToWa.late++;
      return undefined;
    }
    if (gap > 1 && gap < 100) this.sipToWa.lost += gap - 1;
    return gap;
  }

  /** Transcoding without a de-jitter buffer (`jitterMs` below one frame). */
  private get transcodeOnArrival(): boolean {
    return (this.opts.jitterMs ?? 0) < FRAME_MS;
  }

  /**
   * Transcoding SIP→WhatsApp without a de-jitter buffer: decode the G.711
   * packet onto what is pending, and encode and send every whole 20 ms frame
   * at once through the passthrough pacing path (so a flushed backlog is
   * still held to `maxJitterMs`). Each frame's timestamp step is the PBX's
   * own (8 kHz ticks × 6), so a lost packet or a silence gap reaches Meta as
   * a timestamp gap its decoder conceals. A packet that does not continue
   * the pending samples (loss, gap, reordering with ptime ≠ 20 ms) drops
   * the incomplete remainder rather than splicing across the gap.
   */
  private encodeOnArrival(p: RtpView, arrivedAt: number): void {
    const encoder = this.encoder;
    if (!encoder) return;
    let marker = p.marker;
    if (this.sipLastSeq >= 0) {
      const gap = this.sipSequenceGap(p);
      if (gap === undefined) return;
      const continues = gap === 1 && tsDiff(p.timestamp, this.sipLastTs) === this.sipLastSamples;
      if (!continues) {
        this.pcmLength = 0;
        marker = true;
      }
    } else {
      marker = true;
    }
    this.sipLastSeq = p.sequenceNumber;
    this.sipLastTs = p.timestamp;
    const law = this.sip.codec.name as 'PCMU' | 'PCMA';
    if (p.payload.length + this.pcmLength > this.pcm.length) return; // absurd packet: drop
    if (this.pcmLength === 0) this.pcmStartTs = p.timestamp;
    const samples = g711Decode(law, p.payload, this.pcm, this.pcmLength);
    this.sipLastSamples = samples;
    this.pcmLength += samples;
    // On hold too: the PBX's music on hold, if it sends any, reaches WhatsApp.
    while (this.pcmLength >= SIP_FRAME_8K) {
      const ts = this.pcmStartTs;
      this.pcmStartTs = (this.pcmStartTs + SIP_FRAME_8K) >>> 0;
      let delta: number | undefined;
      if (this.lastFrameTs >= 0)
        delta = plausibleStep(tsDiff(ts, this.lastFrameTs) * (48_000 / this.sip.codec.clockRate));
      this.lastFrameTs = ts;
      const opus = this.encodeNextFrame(encoder);
      if (!opus) return;
      this.forwardPassthrough(opus, delta, marker, arrivedAt);
      marker = false;
    }
  }

  private get maxJitterMs(): number {
    return this.opts.maxJitterMs ?? 160;
  }

  /**
   * Passthrough SIP→WhatsApp. The normal case (the queue is empty and the
   * packet keeps the WhatsApp stream within `maxJitterMs` of real time) goes
   * straight to the leg: no queue, no timer, no added delay. Packets arriving
   * faster than real time (a backlog flushed after a stall) wait in a queue
   * drained at the pace the bound allows (20 ms per frame); when the queue
   * would hold more than the bound plus one frame, the oldest are dropped.
   * The leg stamps seq/timestamp/SSRC, so both stay continuous.
   */
  private forwardPassthrough(payload: Uint8Array, delta: number | undefined, marker: boolean, arrivedAt: number): void {
    const bound = this.maxJitterMs;
    const now = performance.now();
    const gap = arrivedAt - this.sipArrivalAt;
    if (this.sipArrivalAt > 0 && gap < LATENESS_MAX_GAP_MS) {
      const late = gap - (delta ?? OPUS_TICKS_PER_FRAME) / OPUS_TICKS_PER_MS;
      this.sipLatenessMs = Math.max(late, this.sipLatenessMs * LATENESS_DECAY);
    }
    this.sipArrivalAt = arrivedAt;
    if (this.paceQueue.length === 0) {
      const d = this.limitJump(delta, this.leg.audioLeadMs(delta, now));
      if (this.leg.audioLeadMs(d, now) <= bound) {
        this.sendPassthrough(payload, d, marker, arrivedAt);
        return;
      }
      this.paceQueue.push({ payload: Buffer.from(payload), delta: d, marker, arrivedAt });
    } else {
      const tail = this.queueTailLead(now);
      const d = this.limitJump(delta, tail + (delta ?? OPUS_TICKS_PER_FRAME) / OPUS_TICKS_PER_MS);
      this.paceQueue.push({ payload: Buffer.from(payload), delta: d, marker, arrivedAt });
    }
    this.sipToWa.paced++;
    // Bound the delay: keep at most one frame beyond the bound queued.
    while (this.paceQueue.length > 1 && this.queueTailLead(now) > bound + FRAME_MS) {
      const dropped = this.paceQueue.shift() as PacedPacket;
      const next = this.paceQueue[0] as PacedPacket;
      next.marker ||= dropped.marker;
      this.sipToWa.overflowDropped++;
    }
    this.drainPassthrough();
  }

  /**
   * A timestamp jump (48 kHz ticks beyond one frame) that would put the
   * stream more than the bound ahead did not take real time (a PBX clock
   * step, a restarted stream): keep only the part that real time covers.
   */
  private limitJump(delta: number | undefined, leadWithDelta: number): number | undefined {
    if (delta === undefined || delta <= OPUS_TICKS_PER_FRAME || leadWithDelta <= this.maxJitterMs) return delta;
    return Math.max(OPUS_TICKS_PER_FRAME, delta - Math.round(leadWithDelta * OPUS_TICKS_PER_MS));
  }

  /** How far ahead of real time the last queued packet would put the WhatsApp stream if sent now. */
  private queueTailLead(now: number): number {
    const q = this.paceQueue;
    let lead = this.leg.audioLeadMs((q[0] as PacedPacket).delta, now);
    for (let i = 1; i < q.length; i++)
      lead += ((q[i] as PacedPacket).delta ?? OPUS_TICKS_PER_FRAME) / OPUS_TICKS_PER_MS;
    return lead;
  }

  /** Send the queued packets whose turn has come; wake up again for the next one. */
  private drainPassthrough(): void {
    if (this.paceTimer) clearTimeout(this.paceTimer);
    this.paceTimer = undefined;
    const bound = this.maxJitterMs;
    while (this.paceQueue.length > 0) {
      const head = this.paceQueue[0] as PacedPacket;
      const lead = this.leg.audioLeadMs(head.delta);
      if (lead > bound) {
        this.paceTimer = setTimeout(() => this.drainPassthrough(), Math.max(1, Math.ceil(lead - bound)));
        return;
      }
      this.paceQueue.shift();
      this.sendPassthrough(head.payload, head.delta, head.marker, head.arrivedAt);
    }
  }

  private sendPassthrough(payload: Uint8Array, delta: number | undefined, marker: boolean, arrivedAt: number): void {
    this.leg.sendAudio(payload, delta === undefined ? { marker } : { timestampDelta: delta, marker });
    this.sipToWhatsappHold.record(performance.now() - arrivedAt);
    this.countOut();
    // When the PBX stops sending, hand over to the leg's silence soon rather
    // than after its own silenceResumeMs.
    const idleMs = Math.round(Math.min(PASSTHROUGH_IDLE_MAX_MS, PASSTHROUGH_IDLE_MS + this.sipLatenessMs));
    if (this.passthroughIdleTimer && idleMs === this.passthroughIdleMs) {
      this.passthroughIdleTimer.refresh();
      return;
    }
    if (this.passthroughIdleTimer) clearTimeout(this.passthroughIdleTimer);
    this.passthroughIdleMs = idleMs;
    this.passthroughIdleTimer = setTimeout(() => this.onPassthroughIdle(), idleMs);
  }

  private onPassthroughIdle(): void {
    this.passthroughIdleTimer = undefined;
    // Passthrough, and transcoding on arrival: both send through this path.
    if (this.paceQueue.length === 0 && !this.closed) this.leg.resumeSilence();
  }

  private stopPassthrough(): void {
    if (this.paceTimer) clearTimeout(this.paceTimer);
    if (this.passthroughIdleTimer) clearTimeout(this.passthroughIdleTimer);
    this.paceTimer = undefined;
    this.passthroughIdleTimer = undefined;
    this.paceQueue.length = 0;
  }

  /**
   * RFC 3550 A.8 interarrival jitter, in RTP clock ticks:
   * D = (R_j − R_i) − (S_j − S_i), J += (|D| − J) / 16. The timestamp
   * difference is taken modulo 2^32 so a wrap does not look like jitter.
   */
  private trackSipJitter(p: RtpView): void {
    const now = performance.now();
    if (this.sipJitterPrevArrival > 0 && now - this.sipJitterPrevArrival < 1000) {
      const arrivalTicks = ((now - this.sipJitterPrevArrival) * this.sip.codec.clockRate) / 1000;
      const d = arrivalTicks - tsDiff(p.timestamp, this.sipJitterPrevTs);
      this.sipJitterTicks += (Math.abs(d) - this.sipJitterTicks) / 16;
    }
    this.sipJitterPrevArrival = now;
    this.sipJitterPrevTs = p.timestamp;
  }

  private startPlayout(): void {
    if (this.playout.running || this.playoutTimer || this.closed) return;
    // Let the buffer fill before the first frame plays. Half a frame less
    // than jitterMs puts the ticks mid-way between packet arrivals, not on
    // them (where every arrival would race the tick, and lose half the time).
    this.playoutTimer = setTimeout(
      () => {
        this.playoutTimer = undefined;
        if (!this.closed) this.playout.start();
      },
      Math.max(0, (this.opts.jitterMs ?? FRAME_MS) - FRAME_MS / 2),
    );
  }

  private stopPlayout(): void {
    if (this.playoutTimer) clearTimeout(this.playoutTimer);
    this.playoutTimer = undefined;
    this.playout.stop();
    this.awaitingLatePacket = false;
    this.minWaitMs = Number.POSITIVE_INFINITY;
    this.rephaseTicks = 0;
  }

  /**
   * One 20 ms playout tick of the transcoding path: 160 samples → Opus → WhatsApp.
   * `skipped`: ticks the clock dropped just before this one (event-loop stall).
   */
  private playoutFrame(skipped = 0): void {
    if (!this.encoder || this.mode !== 'transcode') return;
    // Bound the delay: a burst (or a PBX clock running fast) is trimmed.
    const maxPackets = Math.max(2, Math.round((this.opts.maxJitterMs ?? 160) / FRAME_MS));
    while (this.jitter.depth > maxPackets) this.jitter.dropOldest();
    // Converge back to the target depth: what skipped ticks would have
    // played goes now, and a buffer that stayed deeper than the target for a
    // whole window (a burst, a stall caught up) is trimmed from the head.
    const target = Math.max(1, Math.round((this.opts.jitterMs ?? FRAME_MS) / FRAME_MS));
    if (skipped > 0) {
      // The packets due in the skipped ticks may still be queued in the socket
      // (timers run before I/O in a turn of the event loop): keep the debt for
      // a few ticks and pay it as they arrive.
      this.skipDebt = Math.min(this.skipDebt + skipped, 32);
      this.skipDebtTicks = SKIP_DEBT_TICKS;
    }
    if (this.skipDebt > 0) {
      this.skipDebt -= this.jitter.skip(this.skipDebt, target);
      if (--this.skipDebtTicks <= 0) this.skipDebt = 0;
    }
    this.jitter.settle(target);
    this.rephasePlayout();
    // A tick that finds nothing while the previous one already waited sends silence.
    const mayWait = !this.awaitingLatePacket;
    if (this.awaitingLatePacket) this.sipToWa.underruns++; // the slot it waited for stayed empty
    this.awaitingLatePacket = false;
    this.playFrame(mayWait);
  }

  /**
   * Keep the ticks close behind the arrivals. The PBX's packet clock and ours
   * drift apart, so the phase set at start-up does not last: when even the
   * packet that waited least in the last second waited more than
   * `jitterMs - 15` ms (5 ms by default), the ticks move that much earlier.
   * Drift the other way ends in ticks just before arrivals, which the
   * play-on-arrival path (`playFrame`) absorbs without waiting a frame.
   */
  private rephasePlayout(): void {
    if (++this.rephaseTicks < REPHASE_WINDOW_TICKS) return;
    const excess = this.minWaitMs - Math.max(5, (this.opts.jitterMs ?? FRAME_MS) - 15);
    this.rephaseTicks = 0;
    this.minWaitMs = Number.POSITIVE_INFINITY;
    if (excess > REPHASE_HYSTERESIS_MS && excess < Number.POSITIVE_INFINITY) {
      this.playout.advance(excess);
      this.sipToWa.rephased++;
    }
  }

  /**
   * Pop (or conceal) 20 ms, encode and send it. `mayWait`: if the buffer is
   * empty, send nothing and let the next packet play on arrival.
   */
  private playFrame(mayWait: boolean): void {
    const encoder = this.encoder;
    if (!encoder) return;
    const law = this.sip.codec.name as 'PCMU' | 'PCMA';
    let underrun = false;
    while (this.pcmLength < SIP_FRAME_8K) {
      const r = this.jitter.pop();
      if (r === 'packet') {
        this.pcmLength += g711Decode(law, this.jitter.payload, this.pcm, this.pcmLength);
        const waited = performance.now() - this.jitter.arrivalMs;
        if (waited < this.minWaitMs) this.minWaitMs = waited;
        this.sipToWhatsappHold.record(waited);
      } else if (r === 'missing') {
        // Conceal one frame: repeat the last frame at half level (a simple
        // PLC; Opus then smooths the edges).
        this.sipToWa.concealed++;
        const start = this.pcmLength;
        for (let i = 0; i < SIP_FRAME_8K; i++) this.pcm[start + i] = (this.frame[i] as number) >> 1;
        this.pcmLength += SIP_FRAME_8K;
      } else {
        underrun = true;
        break;
      }
    }
    if (underrun) {
      const idle = performance.now() - this.lastSipPacketAt > IDLE_STOP_MS;
      if (mayWait && !idle && this.pcmLength === 0) {
        this.awaitingLatePacket = true;
        return;
      }
      this.sipToWa.underruns++;
      this.pcm.fill(0, this.pcmLength, SIP_FRAME_8K);
      this.pcmLength = SIP_FRAME_8K;
      if (idle) {
        // The PBX stopped sending (hold, DTX): hand over to the leg's silence,
        // at once (this tick would have carried a frame), so Meta sees no hole.
        this.stopPlayout();
        this.pcmLength = 0;
        this.leg.resumeSilence();
        return;
      }
    }
    const opus = this.encodeNextFrame(encoder);
    if (!opus) return;
    this.leg.sendAudio(opus);
    this.countOut();
  }

  /**
   * Take the first 20 ms of the pending PCM (which must hold them) as the
   * frame to encode, and encode it; undefined if libopus fails (logged).
   */
  private encodeNextFrame(encoder: Encoder): Buffer | undefined {
    this.frame.set(this.pcm.subarray(0, SIP_FRAME_8K));
    this.pcm.copyWithin(0, SIP_FRAME_8K, this.pcmLength);
    this.pcmLength -= SIP_FRAME_8K;
    try {
      const opus = encoder.encode(this.frame);
      // A fresh buffer per call: hand it over as a Buffer view, not a copy.
      return Buffer.from(opus.buffer, opus.byteOffset, opus.byteLength);
    } catch (err) {
      this.log?.warn({ err }, 'Opus encoding failed');
      return undefined;
    }
  }

  private countOut(): void {
    if (this.leg.connectionState === 'connected') this.sipToWa.packetsOut++;
    else this.sipToWa.droppedBeforeConnect++;
  }

  private onSipEvent(p: RtpView): void {
    const ev = parseTelephoneEvent(p.payload);
    if (!ev) return;
    const phase = this.sipEvents.push(p.timestamp, ev);
    if (phase === 'duplicate') return;
    // Our SDP offers telephone-event/8000 only, so durations are already in
    // the 8 kHz units Meta expects.
    this.leg.sendTelephoneEvent(ev, phase === 'start');
    if (phase === 'end' && ev.event < DTMF_EVENTS.length) {
      this.sipToWa.dtmfDigits++;
      this.emitDigit(DTMF_EVENTS[ev.event] as string, 'sip-to-whatsapp');
    }
  }

  // ------------------------------------------------------------ misc

  private configureCodecs(): void {
    this.rtp.setClockRate(this.sip.codec.clockRate);
    if (this.mode === 'passthrough') {
      this.decoder = undefined;
      this.encoder = undefined;
      return;
    }
    // libopus decodes any Opus packet at 8 kHz and an 8 kHz encoder emits
    // packets valid on the 48 kHz RTP clock (dependency-notes §2).
    this.decoder = new Decoder({ channels: 1, sample_rate: 8000 });
    const encoder = new Encoder({ channels: 1, sample_rate: 8000, application: 'voip' });
    encoder.bitrate = this.opts.opusBitrate ?? 16_000;
    encoder.complexity = (this.opts.opusComplexity ?? 1) as Encoder['complexity'];
    encoder.inband_fec = true;
    encoder.packet_loss = 5;
    this.encoder = encoder;
  }

  private emitDigit(digit: string, direction: BridgedDigit['direction']): void {
    for (const cb of this.digitListeners) {
      try {
        cb({ digit, direction });
      } catch (err) {
        this.log?.warn({ err }, 'a DTMF listener threw');
      }
    }
  }

  private error(code: 'closed' | 'invalid-state', message: string): MediaError {
    return new MediaError(code, message, { callId: this.opts.callId, component: 'media-bridge' });
  }
}
