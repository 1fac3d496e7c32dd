/**
 * The last stage of SIP→WhatsApp, for passthrough and for transcoding on arrival: frames go to
 * the WhatsApp leg as they come, unless that would run the WhatsApp timeline more than
 * `maxJitterMs` ahead of real time (a PBX flushing a backlog after a stall, a timestamp jump).
 * Then they wait in a small queue drained at 20 ms a frame, and the oldest are dropped beyond
 * the bound. When the PBX stops sending, the stream is handed over to the leg's silence after
 * {@link IDLE_MS} (plus how late packets have recently been), so Meta sees a short hole rather
 * than the leg's own `silenceResumeMs`.
 *
 * @module
 */
import { type Clock, type ClockTimer, realClock } from '#core/clock.ts';
import type { DelayHistogram } from '../delay-histogram.ts';
import type { WhatsAppMedia } from '../ports.ts';
import { FRAME_MS, OPUS_TICKS_PER_FRAME, OPUS_TICKS_PER_MS, type SipToWaCounters } from './sip-to-wa.ts';

/**
 * After this long without a frame to forward, hand the WhatsApp stream over to the leg's
 * silence. Two and a half frames, so one lost packet (a 40 ms gap) stays a timestamp gap that
 * Meta's decoder conceals rather than becoming a silence frame; plus how late SIP packets have
 * recently been (a peak that decays by 3 % per packet, half-life ~0.5 s), up to
 * {@link IDLE_MAX_MS}: on a jittery PBX link a late packet is not mistaken for the end of audio
 * (which would put a silence frame in its slot and delay the audio by a frame).
 */
export const IDLE_MS = 50;
/** Upper bound of the idle hand-over delay. */
export const IDLE_MAX_MS = 100;
/** Arrival gaps longer than this are pauses (talkspurt ends, stalls), not lateness. */
const LATENESS_MAX_GAP_MS = 200;
const LATENESS_DECAY = 0.97;

/** A frame waiting in the pacing queue. */
interface PacedFrame {
  /** Own copy of the Opus payload. */
  payload: Buffer;
  /** 48 kHz ticks since the previous frame; undefined for the stream's first. */
  delta: number | undefined;
  marker: boolean;
  /** When its SIP packet arrived (bridge clock). */
  arrivedAt: number;
}

/** Options of a {@link Pacer}. */
export interface PacerOptions {
  leg: WhatsAppMedia;
  counters: SipToWaCounters;
  /** Records arrival → hand-over to the leg for every frame sent. */
  hold: DelayHistogram;
  /** The bound on how far the WhatsApp timeline may run ahead of real time. */
  maxJitterMs: number;
  clock?: Clock;
}

/** Paces Opus frames to the WhatsApp leg within a delay bound (see the module doc). */
export class Pacer {
  readonly #leg: WhatsAppMedia;
  readonly #counters: SipToWaCounters;
  readonly #hold: DelayHistogram;
  readonly #bound: number;
  readonly #clock: Clock;
  readonly #queue: PacedFrame[] = [];
  #drainTimer: ClockTimer | undefined;
  #idleTimer: ClockTimer | undefined;
  /** When the hand-over to silence is due (bridge clock). */
  #idleAt = 0;
  /** When the idle timer fires (it may fire before {@link #idleAt} and re-arm, never after). */
  #idleTimerAt = 0;
  /** Arrival of the previous frame's packet. */
  #lastArrival: number | undefined;
  /** Decaying peak of how late SIP packets arrived against their timestamps (ms). */
  #latenessMs = 0;

  constructor(options: PacerOptions) {
    this.#leg = options.leg;
    this.#counters = options.counters;
    this.#hold = options.hold;
    this.#bound = options.maxJitterMs;
    this.#clock = options.clock ?? realClock;
  }

  /** Frames waiting for their turn. */
  get queued(): number {
    return this.#queue.length;
  }

  /**
   * Forward one frame. The normal case (nothing queued and the frame keeps the WhatsApp stream
   * within the bound) goes straight to the leg: no queue, no timer, no added delay. The leg
   * stamps seq/timestamp/SSRC, so both stay continuous.
   *
   * @param delta - 48 kHz ticks since the previous frame (undefined: the stream's first)
   */
  forward(payload: Uint8Array, delta: number | undefined, marker: boolean, arrivedAt: number): void {
    const bound = this.#bound;
    const now = this.#clock.now();
    const gap = this.#lastArrival === undefined ? Number.POSITIVE_INFINITY : arrivedAt - this.#lastArrival;
    if (gap < LATENESS_MAX_GAP_MS) {
      const late = gap - (delta ?? OPUS_TICKS_PER_FRAME) / OPUS_TICKS_PER_MS;
      this.#latenessMs = Math.max(late, this.#latenessMs * LATENESS_DECAY);
    }
    this.#lastArrival = arrivedAt;
    const q = this.#queue;
    if (q.length === 0) {
      const d = this.#limitJump(delta, this.#leg.audioLeadMs(delta ?? OPUS_TICKS_PER_FRAME, now));
      if (this.#leg.audioLeadMs(d ?? OPUS_TICKS_PER_FRAME, now) <= bound) {
        this.#send(payload, d, marker, arrivedAt);
        return;
      }
      q.push({ payload: Buffer.from(payload), delta: d, marker, arrivedAt });
    } else {
      const tail = this.#tailLead(now);
      const d = this.#limitJump(delta, tail + (delta ?? OPUS_TICKS_PER_FRAME) / OPUS_TICKS_PER_MS);
      q.push({ payload: Buffer.from(payload), delta: d, marker, arrivedAt });
    }
    this.#counters.paced++;
    // Bound the delay: keep at most one frame beyond the bound queued.
    while (q.length > 1 && this.#tailLead(now) > bound + FRAME_MS) {
      const dropped = q.shift() as PacedFrame;
      const next = q[0] as PacedFrame;
      next.marker ||= dropped.marker;
      this.#counters.overflowDropped++;
    }
    this.#drain();
  }

  /** Drop what is queued and stop the timers. */
  close(): void {
    this.#clock.clearTimeout(this.#drainTimer);
    this.#clock.clearTimeout(this.#idleTimer);
    this.#drainTimer = undefined;
    this.#idleTimer = undefined;
    this.#queue.length = 0;
  }

  /**
   * A timestamp jump (48 kHz ticks beyond one frame) that would put the stream more than the
   * bound ahead did not take real time (a PBX clock step, a restarted stream): keep only the
   * part that real time covers.
   */
  #limitJump(delta: number | undefined, leadWithDelta: number): number | undefined {
    if (delta === undefined || delta <= OPUS_TICKS_PER_FRAME || leadWithDelta <= this.#bound) return delta;
    return Math.max(OPUS_TICKS_PER_FRAME, delta - Math.round(leadWithDelta * OPUS_TICKS_PER_MS));
  }

  /** How far ahead of real time the last queued frame would put the WhatsApp stream if sent now. */
  #tailLead(now: number): number {
    const q = this.#queue;
    let lead = this.#leg.audioLeadMs((q[0] as PacedFrame).delta ?? OPUS_TICKS_PER_FRAME, now);
    for (let i = 1; i < q.length; i++) lead += ((q[i] as PacedFrame).delta ?? OPUS_TICKS_PER_FRAME) / OPUS_TICKS_PER_MS;
    return lead;
  }

  /** Send the queued frames whose turn has come; wake up again for the next one. */
  #drain(): void {
    this.#clock.clearTimeout(this.#drainTimer);
    this.#drainTimer = undefined;
    const q = this.#queue;
    while (q.length > 0) {
      const head = q[0] as PacedFrame;
      const lead = this.#leg.audioLeadMs(head.delta ?? OPUS_TICKS_PER_FRAME, this.#clock.now());
      if (lead > this.#bound) {
        this.#drainTimer = this.#clock.setTimeout(() => this.#drain(), Math.max(1, Math.ceil(lead - this.#bound)));
        return;
      }
      q.shift();
      this.#send(head.payload, head.delta, head.marker, head.arrivedAt);
    }
  }

  #send(payload: Uint8Array, delta: number | undefined, marker: boolean, arrivedAt: number): void {
    this.#leg.sendAudio(payload, delta === undefined ? { marker } : { timestampDelta: delta, marker });
    this.#hold.record(this.#clock.now() - arrivedAt);
    if (this.#leg.connectionState === 'connected') this.#counters.packetsOut++;
    else this.#counters.droppedBeforeConnect++;
    // When the PBX stops sending, hand over to the leg's silence soon rather than after its
    // own silenceResumeMs. One timer per idle period, not one per frame: a frame only moves
    // the deadline, and the timer re-arms itself for what remains of it.
    const now = this.#clock.now();
    this.#idleAt = now + Math.round(Math.min(IDLE_MAX_MS, IDLE_MS + this.#latenessMs));
    this.#armIdle(now);
  }

  #armIdle(now: number): void {
    if (this.#idleTimer && this.#idleTimerAt <= this.#idleAt) return;
    this.#clock.clearTimeout(this.#idleTimer);
    this.#idleTimerAt = this.#idleAt;
    this.#idleTimer = this.#clock.setTimeout(() => this.#onIdle(), this.#idleAt - now);
  }

  #onIdle(): void {
    this.#idleTimer = undefined;
    const now = this.#clock.now();
    if (now < this.#idleAt) {
      this.#armIdle(now);
      return;
    }
    if (this.#queue.length === 0) this.#leg.resumeSilence();
  }
}
