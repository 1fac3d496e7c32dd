/**
 * Bridges the WhatsApp WebRTC leg and the SIP RTP leg of one call: a façade over one part per
 * direction and strategy (media/bridge/):
 * - {@link WaToSip}: Meta's Opus to the PBX, passed through or decoded to G.711;
 * - SIP→WhatsApp, chosen by the codec the PBX answered (sip-sdp.ts):
 *   **passthrough** (Opus, {@link PassthroughSipToWa}) or **transcode** (PCMU/PCMA,
 *   {@link ArrivalTranscoder}: each 20 ms encoded as soon as it has arrived); both end in a
 *   {@link Pacer} that forwards every frame at once with its source's timing (a stall or a burst
 *   is jitter for Meta's buffer, never a drop) and hands over to the leg's silence when the PBX
 *   goes quiet for longer than a stall;
 * - {@link DtmfRelay}: RFC 4733 events both ways.
 *
 * The bridge depends on the two seams of ports.ts, not on the concrete legs, and reads time only
 * from its {@link Clock}. Sequence numbers and timestamps stay continuous across early media →
 * answer ({@link MediaBridge.updateSip}), silence → audio and hold → resume: the WhatsApp leg and
 * the RTP session each own one SSRC and sequence space, and the bridge only advances timestamps.
 *
 * @module
 */
import type { Logger } from 'pino';
import { type Clock, realClock } from '#core/clock.ts';
import { ArrivalTranscoder } from './bridge/arrival-transcoder.ts';
import { type BridgedDigit, DtmfRelay } from './bridge/dtmf-relay.ts';
import { MAX_LEAD_MS, Pacer } from './bridge/pacer.ts';
import { PassthroughSipToWa } from './bridge/passthrough.ts';
import { FRAME_MS, type SipToWaStrategy, sipToWaCounters } from './bridge/sip-to-wa.ts';
import { SourceLoss } from './bridge/source-loss.ts';
import { WaToSip } from './bridge/wa-to-sip.ts';
import { DelayHistogram } from './delay-histogram.ts';
import { MediaError } from './errors.ts';
import type { SipMedia, WhatsAppMedia } from './ports.ts';
import type { RtpView } from './rtp.ts';
import { type BridgeMode, bridgeModeOf, type SipMediaDescription } from './sip-sdp.ts';

export type { BridgedDigit } from './bridge/dtmf-relay.ts';

export type { BridgeMode } from './sip-sdp.ts';

/** Options for {@link MediaBridge}. */
export interface MediaBridgeOptions {
  /** The WhatsApp leg (a `WhatsAppLeg`, answered/connected or connecting). Not owned: the caller closes it. */
  whatsapp: WhatsAppMedia;
  /** The SIP leg's RTP session (an `RtpSession`). Not owned: the caller closes it. */
  rtp: SipMedia;
  /** What the PBX's SDP negotiated (from `parseSipAnswer`/`answerSipOffer`). */
  sip: SipMediaDescription;
  /**
   * Transcoding always encodes each 20 ms as soon as it has arrived and leaves de-jittering to
   * the WhatsApp client, like passthrough. Only 0 (or below one frame) is accepted: the opt-in
   * de-jitter playout (20 ms or more) was removed.
   * @throws {@link MediaError} `invalid-argument` from the constructor for 20 or more
   * @default 0
   */
  jitterMs?: number;
  /**
   * The safety bound SIP→WhatsApp: a frame that would put the WhatsApp timeline more than this
   * ahead of real time is dropped (`overflowDropped`). Only a source running faster than real time
   * for long reaches it: stalls and bursts are forwarded at once, and a burst's lead drains at the
   * source's next pause. @default 1000
   */
  maxJitterMs?: number;
  /** Opus encoder bitrate for transcoded audio (bit/s). @default 16000 */
  opusBitrate?: number;
  /**
   * libopus encoder complexity (0–10) for transcoded audio. At 8 kHz (SILK), 1 costs ~16 µs per
   * 20 ms frame against ~33 µs at 3 and ~45 µs at 5 (bench/opus-complexity.ts), with no worse a
   * tone SNR; the encoder is most of a transcoded call's CPU. @default 1
   */
  opusComplexity?: number;
  /** Call id for logs and errors. */
  callId?: string;
  /** Logger; a `component: 'media-bridge'` child is used. */
  logger?: Logger;
  /** Time source of pacing, silence hand-over and DTMF timestamps. @default realClock */
  clock?: Clock;
}

/** Per-direction counters. */
export interface BridgeDirectionStats {
  /** Audio packets received on the source leg. */
  packetsIn: number;
  /** Audio packets sent on the destination leg. */
  packetsOut: number;
  /**
   * Packets missing from the source stream: RFC 3550 A.3 over its whole sequence space, so the
   * source's telephone-event packets count as received (a DTMF digit is not a loss).
   */
  lost: number;
  /**
   * Inter-arrival jitter of the source stream in ms: SIP side only, the RTP session's RFC 3550
   * A.8 estimate (`RtpSession.stats().rtcp.jitterMs`); WhatsApp side see `WhatsAppLeg.stats()`.
   */
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
    /** Packets dropped as late or duplicate. */
    late: number;
    /** Frames dropped by the safety bound `maxJitterMs` (a source faster than real time for long). */
    overflowDropped: number;
    /** Frames that went out more than a frame ahead of real time (a burst after silence). */
    paced: number;
    /** Frames that reached the WhatsApp leg before it was connected and were lost (clipping, §5.2). */
    droppedBeforeConnect: number;
  };
}

/**
 * One call's media bridge. Construct, then {@link start}; {@link close} when the call ends (the
 * legs themselves are closed by their owner).
 */
export class MediaBridge {
  /**
   * How long each SIP packet waited in the bridge, from the RTP callback that received it to its
   * frame going to the WhatsApp leg (decode, encode, the pacing queue): the delay the bridge adds.
   */
  readonly sipToWhatsappHold = new DelayHistogram();
  readonly #opts: MediaBridgeOptions;
  readonly #leg: WhatsAppMedia;
  readonly #rtp: SipMedia;
  readonly #clock: Clock;
  readonly #log: Logger | undefined;
  readonly #waToSip: WaToSip;
  readonly #sipToWa = sipToWaCounters();
  /** The PBX's sequence space, audio and telephone-events alike (RFC 3550 A.3). */
  readonly #sipLoss = new SourceLoss();
  readonly #dtmf: DtmfRelay;
  readonly #unsubscribers: (() => void)[] = [];
  #sip: SipMediaDescription;
  #strategy: SipToWaStrategy;
  #started = false;
  #closed = false;

  /**
   * @param options - see {@link MediaBridgeOptions}
   * @throws {@link MediaError} `invalid-argument` for `jitterMs` of 20 or more
   */
  constructor(options: MediaBridgeOptions) {
    this.#opts = options;
    if ((options.jitterMs ?? 0) >= FRAME_MS) {
      throw this.#error(
        'invalid-argument',
        `jitterMs ${options.jitterMs}: the de-jitter playout was removed; transcoding encodes on arrival (use 0)`,
      );
    }
    this.#leg = options.whatsapp;
    this.#rtp = options.rtp;
    this.#sip = options.sip;
    this.#clock = options.clock ?? realClock;
    this.#log = options.logger?.child({ component: 'media-bridge', callId: options.callId });
    this.#waToSip = new WaToSip(this.#rtp, this.#sip, this.#clock, this.#log);
    this.#dtmf = new DtmfRelay(this.#leg, this.#rtp, this.#waToSip, this.#sipToWa, this.#log);
    this.#rtp.setClockRate(this.#sip.codec.clockRate);
    this.#strategy = this.#createStrategy();
  }

  /** `passthrough` when the SIP side negotiated Opus, else `transcode`. */
  get mode(): BridgeMode {
    return bridgeModeOf(this.#sip);
  }

  /** True while on hold ({@link hold} or a hold SDP in {@link updateSip}). */
  get onHold(): boolean {
    return this.#waToSip.held;
  }

  /**
   * Start bridging: subscribe to both legs and point the RTP session at the PBX. The WhatsApp
   * leg's silence keeps Meta fed until SIP audio flows.
   */
  start(): void {
    if (this.#closed) throw this.#error('closed', 'the bridge is closed');
    if (this.#started) return;
    this.#started = true;
    this.#rtp.setRemote(this.#sip.address, this.#sip.port);
    this.#leg.startSilence();
    this.#unsubscribers.push(
      this.#leg.onAudio((rtp) => this.#waToSip.onAudio(rtp)),
      this.#leg.onTelephoneEvent((ev) => {
        this.#waToSip.onEventPacket(ev.sequenceNumber);
        if (ev.phase !== 'repeat') this.#dtmf.fromWhatsApp(ev, this.#sip);
      }),
      this.#rtp.onPacket((p) => this.#onSipPacket(p)),
    );
    if (this.#sip.onHold) this.hold();
  }

  /**
   * Apply a new SIP description (200 OK after early media, or a re-INVITE): new address, codec
   * or hold state. Streams stay continuous; a new codec starts a new SIP→WhatsApp strategy.
   */
  updateSip(sip: SipMediaDescription): void {
    if (this.#closed) return;
    const codecChanged =
      sip.codec.name !== this.#sip.codec.name || sip.codec.payloadType !== this.#sip.codec.payloadType;
    this.#sip = sip;
    this.#rtp.setRemote(sip.address, sip.port);
    this.#waToSip.setSip(sip);
    if (codecChanged) {
      this.#rtp.setClockRate(sip.codec.clockRate);
      this.#strategy.close();
      this.#strategy = this.#createStrategy();
    }
    if (sip.onHold && !this.onHold) this.hold();
    else if (!sip.onHold && this.onHold) this.resume();
  }

  /**
   * SIP hold (re-INVITE with sendonly/inactive): stop sending to the PBX; the WhatsApp side keeps
   * receiving packets (the PBX's music on hold if it sends any, silence otherwise) so Meta's media
   * watchdog never fires.
   */
  hold(): void {
    this.#waToSip.hold();
    this.#leg.startSilence();
  }

  /** Leave hold: audio to the PBX flows again (its first packet marked), timestamps continue. */
  resume(): void {
    this.#waToSip.resume();
  }

  /** Subscribe to relayed DTMF digits (both directions). */
  onDtmf(cb: (d: BridgedDigit) => void): () => void {
    return this.#dtmf.digits.on(cb);
  }

  /** Counter snapshot. */
  stats(): MediaBridgeStats {
    return {
      mode: this.mode,
      onHold: this.onHold,
      whatsappToSip: { ...this.#waToSip.counters, jitterMs: 0 },
      sipToWhatsapp: { ...this.#sipToWa, lost: this.#sipLoss.lost, jitterMs: this.#rtp.stats().rtcp.jitterMs },
    };
  }

  /** Stop bridging and release codecs and timers. Idempotent; the legs stay open. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    for (const off of this.#unsubscribers.splice(0)) off();
    this.#strategy.close();
    this.#waToSip.close();
    this.#dtmf.close();
    return Promise.resolve();
  }

  #onSipPacket(p: RtpView): void {
    const arrivedAt = this.#clock.now();
    this.#sipLoss.packet(p.sequenceNumber);
    if (p.payloadType === this.#sip.dtmfPayloadType) {
      this.#dtmf.fromSip(p);
      return;
    }
    if (p.payloadType !== this.#sip.codec.payloadType) return; // CN, other formats: not bridged
    this.#sipToWa.packetsIn++;
    this.#strategy.onPacket(p, arrivedAt);
  }

  #createStrategy(): SipToWaStrategy {
    const pacer = new Pacer({
      leg: this.#leg,
      counters: this.#sipToWa,
      hold: this.sipToWhatsappHold,
      maxJitterMs: this.#opts.maxJitterMs ?? MAX_LEAD_MS,
      clock: this.#clock,
    });
    const codec = this.#sip.codec;
    if (codec.name === 'opus') return new PassthroughSipToWa(pacer, this.#sipToWa);
    return new ArrivalTranscoder({
      pacer,
      counters: this.#sipToWa,
      law: codec.name,
      clockRate: codec.clockRate,
      log: this.#log,
      ...(this.#opts.opusBitrate === undefined ? {} : { opusBitrate: this.#opts.opusBitrate }),
      ...(this.#opts.opusComplexity === undefined ? {} : { opusComplexity: this.#opts.opusComplexity }),
    });
  }

  #error(code: 'closed' | 'invalid-argument', message: string): MediaError {
    return new MediaError(code, message, { callId: this.#opts.callId, component: 'media-bridge' });
  }
}
