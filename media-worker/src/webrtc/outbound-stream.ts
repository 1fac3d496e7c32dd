/**
 * The business's one RTP stream towards Meta: sequence numbers, 48 kHz
 * timestamps, Opus silence, the real-time accounting the media bridge paces
 * by ({@link OutboundStream.audioLeadMs}), the RFC 4733 telephone-event
 * sender, and the one {@link OutboundStream.send} that puts a packet on the
 * SRTP fast path or on werift's.
 *
 * Meta rewrites the business SSRC to a fixed value, so silence, audio and
 * DTMF must share one SSRC, one sequence space and one timestamp timeline
 * ("DTMF packets share the audio stream's timestamp and sequence bases",
 * docs/meta-calling-api.md §5.1); a second stream corrupts audio. Meta's
 * relay sends nothing until the business's first ("maiden") packet and ends
 * the call after ~20 s without media, hence the silence.
 *
 * A user-initiated call must send Meta nothing before its `accept` has returned: WhatsApp clients
 * treat the first media packet as the answer (M-FAQ, meta-calling-api.md Corrections 1). A stream
 * {@link OutboundStream.withhold | withheld} sends nothing (no silence, no DTMF) and holds the
 * audio it is given, bounded; {@link OutboundStream.release} then sends the held audio at once
 * (the agent's first words, spoken during the accept round trip) or, with none, the first silence
 * frame: the maiden packet.
 *
 * The timeline (issue 13: stall- and burst-proof): within a talkspurt audio
 * keeps the caller's timing (each frame's `timestampDelta`), so a late or
 * bursty source reaches Meta as jitter its adaptive buffer absorbs, never as a
 * lasting lead. Silence is stamped at real time, and only once the audio's
 * timeline has fallen behind real time (a burst's lead is spent first). The
 * first audio after silence, and any talkspurt start (marker) behind real
 * time, jumps to the real-time position, as a B2BUA's timestamps do after a
 * pause. A silence tick that fires more than a frame late (our own event loop
 * was blocked) waits one more turn before handing audio over to silence, so
 * the packets that queued during the block are read first.
 *
 * Time comes from an injected {@link Clock} (the real monotonic clock by
 * default), so every rule here is tested on a `ManualClock` with exact
 * timestamps.
 *
 * @module
 */
import { Encoder } from '@evan/opus';
import type { Logger } from 'pino';
import { RtpHeader, RtpPacket } from 'werift';
import { type Clock, type ClockTimer, realClock } from '#core/clock.ts';
import { MediaError, type MediaErrorContext } from '../media/errors.ts';
import { buildTelephoneEvent, dtmfEventCode, RTP_HEADER_BYTES, type TelephoneEvent, writeRtp } from '../media/rtp.ts';

/** Opus payload type Meta uses (§5.1). */
export const WHATSAPP_OPUS_PT = 111;
/** telephone-event/8000 payload type Meta uses (§5.1). */
export const WHATSAPP_TELEPHONE_EVENT_PT = 126;
/** RTP clock ticks per 20 ms Opus frame (RFC 7587 §4.1: the clock is always 48 kHz). */
export const OPUS_TICKS_PER_FRAME = 960;
/** telephone-event duration units per 20 ms: Meta's events run on an 8 kHz clock (§5.1, RFC 4733 §2.5.1.3). */
export const TELEPHONE_EVENT_TICKS_PER_FRAME = 160;

const FRAME_MS = 20;
/** 48 kHz RTP clock ticks per millisecond. */
const TICKS_PER_MS = 48;
/** After a stall, silence frames caught up at most; older ones are skipped (a gap, not a burst). */
const MAX_CATCH_UP = 5;
/**
 * A silence frame counts as due this much early: Node's timers fire on a
 * whole-millisecond loop clock, up to ~1 ms before a fractional due time.
 */
const EARLY_MS = 1;
/**
 * A timer that fires this much after it was due was held up by a blocked event loop (GC, another
 * call's DTLS handshake): the packets that queued meanwhile have not been read yet.
 */
export const LOOP_STALL_MS = FRAME_MS;
/**
 * The "next turn" of the event loop. Node runs the timers that expired before it polls sockets;
 * a timer set while timers run is never run in the same phase (Node's 0 ms is 1 ms anyway), so
 * the socket reads come first.
 */
export const NEXT_TURN_MS = 1;
/** Default of {@link OutboundStreamOptions.silenceResumeMs}. */
export const SILENCE_RESUME_MS = 400;

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

/** Options for {@link OutboundStream.sendAudio}. */
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

/** Options for {@link OutboundStream.sendDtmf}. */
export interface SendDtmfOptions {
  /** Tone length per digit. @default 100 */
  durationMs?: number;
  /** Pause between digits. @default 60 */
  gapMs?: number;
  /** Volume in -dBm0 (RFC 4733 §2.3). @default 10 */
  volume?: number;
}

/** The SRTP fast path as the stream sees it ({@link SrtpMediaPath.send}). */
export interface FastPathSender {
  /** Protect and send one plain RTP packet; `payloadBytes` feeds the RTCP sender report. */
  send(rtp: Uint8Array, payloadBytes: number): void;
}

/** The parts of werift's `RTCRtpTransceiver` the stream sends through. */
export interface WeriftSendSide {
  sender: {
    /** The stream's one SSRC (Meta rewrites it to a fixed value). */
    readonly ssrc: number;
    /** werift's audio path: keeps its RTCP sender report, but forces the main codec's PT. */
    sendRtp(rtp: RtpPacket): Promise<void>;
  };
  /** werift's raw SRTP path, which keeps any PT (how telephone-events go before the fast path). */
  dtlsTransport: { sendRtp(payload: Buffer, header: RtpHeader): Promise<number> };
}

/** Where the stream's packets go; the WhatsApp leg provides it. */
export interface OutboundLink {
  /** werift's transceiver once negotiated; nothing is stamped or sent before. */
  readonly transceiver: WeriftSendSide | undefined;
  /** True while DTLS-SRTP is up (`connected`): packets before that are dropped, their time still counted. */
  readonly connected: boolean;
  /** The SRTP fast path, once attached; werift's path is used until then. */
  readonly fastPath: FastPathSender | undefined;
}

/** Audio held while withheld, at most (oldest dropped beyond): a second of 20 ms frames. */
export const MAX_HELD_FRAMES = 50;

/** Options for {@link OutboundStream}. */
export interface OutboundStreamOptions {
  /** Time source for the silence frames, the DTMF pacing and {@link OutboundStream.audioLeadMs}. @default realClock */
  clock?: Clock;
  /**
   * While silence is armed, how long without {@link OutboundStream.sendAudio}
   * before silence resumes by itself. Longer than the media bridge's own hand-over (which calls
   * {@link OutboundStream.resumeSilence}): a stall-sized hole is the receiver's to conceal.
   * @default 400
   */
  silenceResumeMs?: number;
  /** First sequence number. @default random (RFC 3550 §5.1) */
  initialSequenceNumber?: number;
  /** First timestamp. @default random (RFC 3550 §5.1) */
  initialTimestamp?: number;
  /** Context of the {@link MediaError}s raised here. */
  errorContext?: MediaErrorContext;
  /** Logger for failed werift sends (debug). */
  logger?: Logger;
}

/** Counters of {@link OutboundStream}. */
export interface OutboundStreamCounters {
  /** RTP packets sent (audio, silence and telephone-event). */
  packetsSent: number;
  /** Of which generated silence frames. */
  silenceFramesSent: number;
  /** DTMF events ended (digits sent). */
  dtmfSent: number;
  /** Audio frames held while withheld and dropped to keep the hold within {@link MAX_HELD_FRAMES}. */
  heldDropped: number;
}

/** An audio frame held while the stream is withheld. */
interface HeldFrame {
  payload: Buffer;
  delta: number;
  marker: boolean;
}

interface DtmfJob {
  codes: number[];
  ticks: number;
  gapMs: number;
  volume: number;
  done: () => void;
}

/** The leg's outbound RTP stream; see the module comment. */
export class OutboundStream {
  /** Payload type of telephone-events: Meta's (126) unless its SDP said otherwise. */
  telephoneEventPt = WHATSAPP_TELEPHONE_EVENT_PT;

  readonly #link: OutboundLink;
  readonly #clock: Clock;
  readonly #silenceResumeMs: number;
  readonly #errorContext: MediaErrorContext;
  readonly #log: Logger | undefined;
  #closed = false;

  #seq: number;
  #ts: number;
  #sentAny = false;
  /**
   * Clock time the last stamped timestamp stands for: advanced by each
   * packet's timestamp delta (a talkspurt keeps its source's timing, late or
   * early), set to real time by silence and by a talkspurt that starts behind
   * it. Its excess over "now" is how far the stream runs ahead of real time
   * ({@link audioLeadMs}); below "now" it runs behind.
   */
  #tsWallAt = 0;
  #lastWasSilence = false;
  #lastAudioAt = Number.NEGATIVE_INFINITY;
  #firstPacketSentAt: number | undefined;
  readonly #counters: OutboundStreamCounters = { packetsSent: 0, silenceFramesSent: 0, dtmfSent: 0, heldDropped: 0 };
  /** Nothing goes to Meta while true (see {@link withhold}); audio waits in {@link #held}. */
  #withheld = false;
  readonly #held: HeldFrame[] = [];
  /** Plain RTP is built here before the fast path protects it into a new buffer. */
  readonly #txScratch = Buffer.alloc(RTP_HEADER_BYTES + 1500);

  // Silence: armed by the caller, running while connected; frames every 20 ms from its start.
  #silenceArmed = false;
  #silenceRunning = false;
  #silenceTimer: ClockTimer | undefined;
  #silenceStartedAt = 0;
  #silenceFrames = 0;
  /** The silence tick was deferred by one turn after a blocked loop (see {@link LOOP_STALL_MS}). */
  #silenceDeferred = false;

  // RFC 4733 sender: the event in progress and its start timestamp.
  #teEvent: TelephoneEvent | undefined;
  #teEventTs: number | undefined;
  readonly #dtmfQueue: DtmfJob[] = [];
  #dtmfTimer: ClockTimer | undefined;
  #dtmfDigit = 0;
  #dtmfTick = 1;

  /**
   * @param link - where packets go (see {@link OutboundLink})
   * @param options - see {@link OutboundStreamOptions}
   */
  constructor(link: OutboundLink, options: OutboundStreamOptions = {}) {
    this.#link = link;
    this.#clock = options.clock ?? realClock;
    this.#silenceResumeMs = options.silenceResumeMs ?? SILENCE_RESUME_MS;
    this.#errorContext = options.errorContext ?? {};
    this.#log = options.logger;
    this.#seq = (options.initialSequenceNumber ?? Math.floor(Math.random() * 0x10000)) & 0xffff;
    this.#ts = (options.initialTimestamp ?? Math.floor(Math.random() * 0x1_0000_0000)) >>> 0;
  }

  /** Packets, silence frames and digits sent so far (a copy). */
  get counters(): OutboundStreamCounters {
    return { ...this.#counters };
  }

  /** Clock time of the first packet sent (the maiden packet Meta waits for). */
  get firstPacketSentAt(): number | undefined {
    return this.#firstPacketSentAt;
  }

  // ------------------------------------------------------------ withhold / release

  /** True while the stream is {@link withhold | withheld}. */
  get withheld(): boolean {
    return this.#withheld;
  }

  /**
   * Send nothing to Meta until {@link release}: no silence, no audio, no telephone-event.
   * Audio given meanwhile is held (its last {@link MAX_HELD_FRAMES} frames); digits are
   * dropped. For user-initiated calls before `accept` has returned: WhatsApp clients treat the
   * first media packet as the answer (M-FAQ). No-op once anything was sent.
   */
  withhold(): void {
    if (this.#sentAny || this.#closed) return;
    this.#withheld = true;
  }

  /**
   * Sending may start: the held audio goes out at once (as soon as the link is up), else the
   * first silence frame if silence is armed — the maiden packet Meta's relay waits for. The held
   * burst counts as past audio: the stream's timeline ends at "now" after it, so what follows is
   * paced from real time and not pushed behind the burst.
   */
  release(): void {
    if (!this.#withheld || this.#closed) return;
    this.#withheld = false;
    this.#flushHeld();
    if (this.#silenceArmed && this.#link.connected) this.#startSilenceTimer();
  }

  // ------------------------------------------------------------ link state

  /** DTLS-SRTP is up: held audio goes out if released, armed silence starts now. */
  linkUp(): void {
    if (this.#closed) return;
    this.#flushHeld();
    if (this.#silenceArmed) this.#startSilenceTimer();
  }

  /** The connection failed or closed: no more silence frames. */
  linkDown(): void {
    this.#stopSilenceTimer();
  }

  // ------------------------------------------------------------ silence

  /**
   * Send Opus silence every 20 ms from the moment the link is up (the first
   * frame at once if it already is) whenever no audio was sent for
   * `silenceResumeMs`: the maiden packet and Meta's 20 s watchdog (§5.1/§5.2).
   */
  startSilence(): void {
    if (this.#closed) return;
    this.#silenceArmed = true;
    if (this.#link.connected) this.#startSilenceTimer();
  }

  /**
   * The caller's audio has stopped: if silence is armed, resume it with the
   * next frame, now, instead of after `silenceResumeMs`, so Meta's stream
   * has no hole; later frames follow every 20 ms from here. No-op when
   * silence is not armed or already running.
   */
  resumeSilence(): void {
    if (this.#closed || !this.#silenceArmed || this.#lastWasSilence) return;
    this.#lastAudioAt = Number.NEGATIVE_INFINITY;
    if (!this.#link.connected) return;
    this.#stopSilenceTimer();
    this.#startSilenceTimer();
  }

  /** Stop generating silence (audio sent with {@link sendAudio} is unaffected). */
  stopSilence(): void {
    this.#silenceArmed = false;
    this.#stopSilenceTimer();
  }

  /**
   * How far ahead of real time (ms) an audio frame sent now with
   * `timestampDelta` would put the stream: its timestamp, on the stream's
   * timeline, minus the clock. Positive when packets came in faster than real
   * time (a burst after silence); negative when the frame is late against its
   * talkspurt's start (a stalled or bursty source: jitter for Meta's buffer).
   * After silence the next frame goes at the real-time position (at least one
   * frame on): its lead is at most a frame. 0 before the first packet.
   *
   * @param timestampDelta - as for {@link sendAudio} (48 kHz ticks). @default 960
   * @param now - clock time to evaluate at. @default the clock's now
   */
  audioLeadMs(timestampDelta: number = OPUS_TICKS_PER_FRAME, now: number = this.#clock.now()): number {
    if (!this.#sentAny) return 0;
    const delta = this.#lastWasSilence ? this.#realTimeDelta(OPUS_TICKS_PER_FRAME, now) : timestampDelta;
    return this.#tsWallAt + delta / TICKS_PER_MS - now;
  }

  // ------------------------------------------------------------ audio

  /**
   * Send one Opus frame: the stream stamps sequence number, timestamp and
   * SSRC. Dropped (its time still counted) while a telephone-event is being
   * sent (RFC 4733 §2.5.1.1) and while the link is down.
   */
  sendAudio(payload: Uint8Array, options?: SendAudioOptions): void {
    if (this.#closed) return;
    const now = this.#clock.now();
    this.#lastAudioAt = now;
    if (this.#withheld || this.#held.length > 0) {
      this.#hold(payload, options);
      this.#flushHeld();
      return;
    }
    const afterSilence = this.#lastWasSilence;
    const marker = afterSilence || options?.marker === true;
    let delta = options?.timestampDelta ?? OPUS_TICKS_PER_FRAME;
    // After silence, or a talkspurt that starts behind real time: jump to the real-time position.
    if (afterSilence) delta = this.#realTimeDelta(OPUS_TICKS_PER_FRAME, now);
    else if (marker) delta = this.#realTimeDelta(delta, now);
    this.#sendOpus(payload, delta, marker, false, now);
  }

  // ------------------------------------------------------------ RFC 4733 sender

  /**
   * Send one RFC 4733 telephone-event packet (durations in 8 kHz units,
   * §5.1): `end: false` for the start and updates, then `end: true`, sent
   * three times (RFC 4733 §2.5.1.4). A new event is stamped with the audio
   * timestamp of "now" (§2.5.1.2) and carries the marker; every packet takes
   * the next sequence number of the one stream.
   *
   * @param isStart - force a new event even if the previous one of the same
   *   code never ended (its end packets were lost)
   */
  sendTelephoneEvent(ev: TelephoneEvent, isStart = false): void {
    if (this.#closed || !this.#link.transceiver) return;
    let marker = false;
    if (isStart || this.#teEvent === undefined || this.#teEvent.event !== ev.event) {
      this.#teEventTs = this.#startEvent(this.#clock.now());
      marker = true;
    }
    this.#teEvent = ev;
    const repeats = ev.end ? 3 : 1;
    const payload = buildTelephoneEvent(ev);
    for (let i = 0; i < repeats; i++) this.#sendTelephoneEventPacket(payload, marker && i === 0);
    if (ev.end) {
      this.#teEvent = undefined;
      this.#counters.dtmfSent++;
    }
  }

  /**
   * Send DTMF digits as RFC 4733 events paced on the clock: a packet every
   * 20 ms (start, updates, three end packets), then `gapMs` after the next
   * frame. Resolves when the last digit's pause ended, or at once when the
   * stream closes; calls queue behind each other.
   *
   * @throws {@link MediaError} `invalid-argument` for characters outside 0-9*#A-D; `closed` after {@link close}
   */
  sendDtmf(digits: string, options: SendDtmfOptions = {}): Promise<void> {
    if (this.#closed) return Promise.reject(new MediaError('closed', 'the WhatsApp leg is closed', this.#errorContext));
    const codes = [...digits].map(dtmfEventCode);
    if (codes.some((c) => c < 0)) {
      return Promise.reject(new MediaError('invalid-argument', `invalid DTMF digits "${digits}"`, this.#errorContext));
    }
    const ticks = Math.max(1, Math.round((options.durationMs ?? 100) / FRAME_MS));
    const gapMs = Math.max(0, options.gapMs ?? 60);
    const volume = options.volume ?? 10;
    return new Promise<void>((done) => {
      this.#dtmfQueue.push({ codes, ticks, gapMs, volume, done });
      if (this.#dtmfQueue.length === 1) this.#dtmfStep();
    });
  }

  /** Stop silence and DTMF, settle pending {@link sendDtmf} calls; nothing is sent afterwards. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.stopSilence();
    this.#clock.clearTimeout(this.#dtmfTimer);
    this.#dtmfTimer = undefined;
    for (const job of this.#dtmfQueue.splice(0)) job.done();
  }

  // ------------------------------------------------------------ send

  /**
   * Put one packet of the stream on the wire with the next sequence number:
   * on the SRTP fast path once attached (plain RTP built in a scratch buffer,
   * protected into a new one), else on werift's. werift's sender forces the
   * main codec's PT, so only Opus goes through it (which keeps its RTCP
   * sender report); other payload types go straight to its DTLS transport.
   */
  send(pt: number, marker: boolean, ts: number, payload: Uint8Array): void {
    const transceiver = this.#link.transceiver;
    if (!transceiver) return;
    const ssrc = transceiver.sender.ssrc;
    const seq = this.#seq;
    this.#seq = (seq + 1) & 0xffff;
    const fast = this.#link.fastPath;
    if (fast) {
      const n = writeRtp(this.#txScratch, pt, marker, seq, ts, ssrc, payload);
      fast.send(this.#txScratch.subarray(0, n), payload.length);
      return;
    }
    const header = new RtpHeader({ payloadType: pt, sequenceNumber: seq, timestamp: ts, ssrc, marker });
    const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
    // werift rewrites SSRC and PT and keeps its sender report bookkeeping;
    // seq/timestamp pass through unchanged (its offsets stay 0).
    const sent =
      pt === WHATSAPP_OPUS_PT
        ? transceiver.sender.sendRtp(new RtpPacket(header, body))
        : transceiver.dtlsTransport.sendRtp(body, header);
    sent.catch((err: unknown) => this.#log?.debug({ err, pt }, 'werift send failed'));
  }

  // ------------------------------------------------------------ internals

  /**
   * A timestamp step of at least `minTicks` that puts the next packet no earlier than the
   * real-time position: the step across a gap (after silence, at a talkspurt start).
   */
  #realTimeDelta(minTicks: number, now: number): number {
    return Math.max(minTicks, Math.round((now - this.#tsWallAt) * TICKS_PER_MS));
  }

  #sendOpus(payload: Uint8Array, delta: number, marker: boolean, silence: boolean, now: number): void {
    if (!this.#link.transceiver) return;
    if (this.#sentAny) {
      this.#ts = (this.#ts + delta) >>> 0;
      this.#tsWallAt += delta / TICKS_PER_MS;
    } else {
      this.#tsWallAt = now;
    }
    this.#sentAny = true;
    this.#lastWasSilence = silence;
    // RFC 4733 §2.5.1.1: no audio while an event is being sent; the
    // timestamp above still advanced so audio resumes in the right place.
    if (this.#teEvent !== undefined || !this.#link.connected) return;
    this.#counters.packetsSent++;
    if (silence) this.#counters.silenceFramesSent++;
    this.#firstPacketSentAt ??= now;
    this.send(WHATSAPP_OPUS_PT, marker, this.#ts, payload);
  }

  #sendTelephoneEventPacket(payload: Buffer, marker: boolean): void {
    if (this.#withheld || !this.#link.connected || this.#teEventTs === undefined) return;
    this.#counters.packetsSent++;
    this.#firstPacketSentAt ??= this.#clock.now();
    this.send(this.telephoneEventPt, marker, this.#teEventTs, payload);
  }

  /** Keeps one audio frame while withheld (or until the link is up); the oldest go beyond the bound. */
  #hold(payload: Uint8Array, options: SendAudioOptions | undefined): void {
    const held = this.#held;
    held.push({
      payload: Buffer.from(payload),
      delta: options?.timestampDelta ?? OPUS_TICKS_PER_FRAME,
      marker: options?.marker === true,
    });
    while (held.length > MAX_HELD_FRAMES) {
      held.shift();
      this.#counters.heldDropped++;
    }
  }

  /**
   * Sends the held audio as one burst once released and connected. It stands for the time it was
   * held: the timeline ends at "now" after it (see {@link release}).
   */
  #flushHeld(): void {
    const held = this.#held;
    if (this.#withheld || held.length === 0 || !this.#link.connected || !this.#link.transceiver) return;
    const now = this.#clock.now();
    const frames = held.splice(0);
    frames.forEach((f, i) => {
      const first = i === 0;
      const delta = first && (this.#lastWasSilence || !this.#sentAny) ? OPUS_TICKS_PER_FRAME : f.delta;
      this.#sendOpus(f.payload, delta, first || f.marker, false, now);
    });
    this.#tsWallAt = now;
    this.#lastAudioAt = now;
  }

  /**
   * Timestamp of "now" for a new telephone-event (RFC 4733 §2.5.1.2): whole frames on from the
   * last packet's place on the timeline, at least one, so an event never shares a timestamp with
   * the silence or audio already sent (however far the timeline leads or lags after a stall). The
   * timeline moves to the event, so what follows it is stamped after it.
   */
  #startEvent(now: number): number {
    if (!this.#sentAny) return this.#ts;
    const frames = Math.max(1, Math.round((now - this.#tsWallAt) / FRAME_MS));
    this.#ts = (this.#ts + frames * OPUS_TICKS_PER_FRAME) >>> 0;
    this.#tsWallAt += frames * FRAME_MS;
    return this.#ts;
  }

  /** One silence frame for its slot on the 20 ms grid (`slotAt` ≤ now). */
  #onSilenceFrame(slotAt: number): void {
    const now = this.#clock.now();
    if (now - this.#lastAudioAt < this.#silenceResumeMs) return;
    const handOver = this.#sentAny && !this.#lastWasSilence;
    // Audio that ran ahead of real time (a burst) plays out first: silence never makes the
    // timeline lead, and a burst's lead is spent before any silence is inserted.
    if (handOver && this.#tsWallAt + FRAME_MS > now + EARLY_MS) return;
    // Stamped at its slot's real time in whole frames (never ahead of it): after a gap Meta's
    // jitter buffer sees a gap, not a time warp.
    const frames = Math.max(1, Math.floor((slotAt + EARLY_MS - this.#tsWallAt) / FRAME_MS));
    const delta = this.#sentAny ? frames * OPUS_TICKS_PER_FRAME : OPUS_TICKS_PER_FRAME;
    this.#sendOpus(opusSilenceFrame(), delta, !this.#lastWasSilence, true, now);
  }

  /** Frames are due every 20 ms from the start, the first at once (next turn); drift-free. */
  #startSilenceTimer(): void {
    if (this.#silenceRunning || this.#withheld) return;
    this.#silenceRunning = true;
    this.#silenceStartedAt = this.#clock.now();
    this.#silenceFrames = 0;
    this.#silenceTimer = this.#clock.setTimeout(this.#silenceTick, 0);
  }

  #stopSilenceTimer(): void {
    this.#silenceRunning = false;
    this.#clock.clearTimeout(this.#silenceTimer);
    this.#silenceTimer = undefined;
  }

  readonly #silenceTick = (): void => {
    this.#silenceTimer = undefined;
    if (!this.#silenceRunning) return;
    const now = this.#clock.now();
    const dueAt = this.#silenceStartedAt + this.#silenceFrames * FRAME_MS;
    if (
      !this.#silenceDeferred &&
      now - dueAt > LOOP_STALL_MS &&
      !this.#lastWasSilence &&
      now - this.#lastAudioAt >= this.#silenceResumeMs
    ) {
      // A hand-over from audio, late: the loop was blocked. Read the packets that queued meanwhile
      // first (they belong in these slots), then decide.
      this.#silenceDeferred = true;
      this.#silenceTimer = this.#clock.setTimeout(this.#silenceTick, NEXT_TURN_MS);
      return;
    }
    this.#silenceDeferred = false;
    const due = Math.floor((now + EARLY_MS - this.#silenceStartedAt) / FRAME_MS) + 1;
    let behind = due - this.#silenceFrames;
    if (behind > MAX_CATCH_UP) {
      // A stalled event loop: one frame now and the grid kept, not a burst of late frames.
      this.#silenceFrames += behind - 1;
      behind = 1;
    }
    for (let i = 0; i < behind && this.#silenceRunning; i++) {
      this.#onSilenceFrame(this.#silenceStartedAt + this.#silenceFrames * FRAME_MS);
      this.#silenceFrames++;
    }
    if (this.#silenceRunning && this.#silenceTimer === undefined) {
      const nextAt = this.#silenceStartedAt + this.#silenceFrames * FRAME_MS;
      this.#silenceTimer = this.#clock.setTimeout(this.#silenceTick, nextAt - this.#clock.now());
    }
  };

  /** One packet of the DTMF sender; re-arms itself on the clock until the queue is empty. */
  readonly #dtmfStep = (): void => {
    this.#dtmfTimer = undefined;
    const job = this.#dtmfQueue[0];
    if (!job || this.#closed) return;
    const event = job.codes[this.#dtmfDigit];
    if (event === undefined) {
      // This call's digits and their trailing pause are done: the next call starts now.
      this.#dtmfQueue.shift();
      this.#dtmfDigit = 0;
      this.#dtmfTick = 1;
      job.done();
      this.#dtmfStep();
      return;
    }
    const t = this.#dtmfTick;
    const end = t === job.ticks;
    this.sendTelephoneEvent({ event, end, volume: job.volume, duration: t * TELEPHONE_EVENT_TICKS_PER_FRAME }, t === 1);
    if (end) {
      this.#dtmfDigit++;
      this.#dtmfTick = 1;
    } else {
      this.#dtmfTick++;
    }
    this.#dtmfTimer = this.#clock.setTimeout(this.#dtmfStep, end ? FRAME_MS + job.gapMs : FRAME_MS);
  };
}
