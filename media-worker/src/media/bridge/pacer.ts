/**
 * The last stage of SIP→WhatsApp, for passthrough and for transcoding on arrival. Stall- and
 * burst-proof (issue 13): every frame goes to the WhatsApp leg the moment it is ready, with its
 * source's timestamp step, so a late packet or a burst after a stall (of the PBX, the network or
 * our own event loop) reaches Meta as jitter its adaptive buffer absorbs, as from any B2BUA.
 * Nothing is queued and no frame is dropped for arriving late or in a clump.
 *
 * - A lead (the WhatsApp timeline ahead of real time, only possible after silence was inserted
 *   and a burst followed) drains at the source's next pause: the timestamp jump of a talkspurt
 *   start (marker) or of a pause longer than {@link PAUSE_TICKS} is shortened by the lead, never
 *   below one frame. A lost packet's gap is kept (Meta's decoder conceals it).
 * - A source that runs faster than real time for long (a broken PBX clock) meets a safety bound
 *   (`maxJitterMs`, 1 s by default): frames beyond it are dropped and counted as
 *   `overflowDropped`, which a stall or a burst never reaches.
 * - When the PBX stops sending, the stream is handed over to the leg's silence after
 *   {@link IDLE_MS} (longer after late packets). A stall-sized hole is left to the receiver's
 *   loss concealment; the leg inserts silence only once the timeline has fallen behind real time,
 *   and the first audio after it jumps to the real-time position with the marker bit.
 * - The idle timer, when it fires more than a frame late (our loop was blocked), waits one more
 *   turn so the packets that queued during the block are read first.
 *
 * @module
 */
import { type Clock, type ClockTimer, realClock } from '#core/clock.ts';
import type { DelayHistogram } from '../delay-histogram.ts';
import type { WhatsAppMedia } from '../ports.ts';
import { FRAME_MS, OPUS_TICKS_PER_FRAME, OPUS_TICKS_PER_MS, type SipToWaCounters } from './sip-to-wa.ts';

/**
 * After this long without a frame to forward, hand the WhatsApp stream over to the leg's
 * silence. Longer than the stalls the bridge must ride out (100–200 ms of a PBX, the network or
 * our own loop): a hole that short is concealed by the receiver's PLC, and is what Meta sees from
 * any B2BUA (rtpengine injects no silence), whereas silence in the hole would put the delayed
 * packets behind it. Real pauses (PBX DTX, hold) are longer, and Meta's relay only needs a
 * packet every few seconds (its 20 s watchdog). Plus how late SIP packets have recently been (a
 * peak that decays by 3 % per packet, half-life ~0.5 s), up to {@link IDLE_MAX_MS}.
 */
export const IDLE_MS = 250;
/** Upper bound of the idle hand-over delay (below the leg's own `silenceResumeMs`, 400). */
export const IDLE_MAX_MS = 390;
/** A timestamp step longer than this (100 ms) is a pause in the source, where a lead drains. */
export const PAUSE_TICKS = 5 * OPUS_TICKS_PER_FRAME;
/** Default safety bound on the lead (`maxJitterMs`). */
export const MAX_LEAD_MS = 1000;
/** Arrival gaps longer than this are pauses (talkspurt ends), not lateness. */
const LATENESS_MAX_GAP_MS = IDLE_MAX_MS;
const LATENESS_DECAY = 0.97;
/** A timer this late was held up by a blocked event loop (see outbound-stream.ts). */
const LOOP_STALL_MS = FRAME_MS;
/** One turn of the event loop: timers set while timers run wait for the next, after the socket reads. */
const NEXT_TURN_MS = 1;

/** Options of a {@link Pacer}. */
export interface PacerOptions {
  leg: WhatsAppMedia;
  counters: SipToWaCounters;
  /** Records arrival → hand-over to the leg for every frame sent. */
  hold: DelayHistogram;
  /** The safety bound on how far the WhatsApp timeline may run ahead of real time. */
  maxJitterMs: number;
  clock?: Clock;
}

/** Forwards Opus frames to the WhatsApp leg as they come (see the module doc). */
export class Pacer {
  readonly #leg: WhatsAppMedia;
  readonly #counters: SipToWaCounters;
  readonly #hold: DelayHistogram;
  readonly #bound: number;
  readonly #clock: Clock;
  #idleTimer: ClockTimer | undefined;
  /** When the hand-over to silence is due (bridge clock). */
  #idleAt = 0;
  /** When the idle timer fires (it may fire before {@link #idleAt} and re-arm, never after). */
  #idleTimerAt = 0;
  /** The idle timer fired late and waits one turn. */
  #idleDeferred = false;
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

  /**
   * Forward one frame now. The leg stamps seq/timestamp/SSRC, so both stay continuous.
   *
   * @param delta - 48 kHz ticks since the previous frame (undefined: the stream's first)
   */
  forward(payload: Uint8Array, delta: number | undefined, marker: boolean, arrivedAt: number): void {
    const now = this.#clock.now();
    const gap = this.#lastArrival === undefined ? Number.POSITIVE_INFINITY : arrivedAt - this.#lastArrival;
    if (gap < LATENESS_MAX_GAP_MS) {
      const late = gap - (delta ?? OPUS_TICKS_PER_FRAME) / OPUS_TICKS_PER_MS;
      this.#latenessMs = Math.max(late, this.#latenessMs * LATENESS_DECAY);
    }
    this.#lastArrival = arrivedAt;
    let d = delta;
    if (d !== undefined && d > OPUS_TICKS_PER_FRAME && (marker || d > PAUSE_TICKS)) {
      // A pause (or a clock step) in the source: it drains whatever lead a burst left.
      const lead = this.#leg.audioLeadMs(d, now);
      if (lead > 0) d = Math.max(OPUS_TICKS_PER_FRAME, d - Math.round(lead * OPUS_TICKS_PER_MS));
    }
    const lead = this.#leg.audioLeadMs(d ?? OPUS_TICKS_PER_FRAME, now);
    if (lead > this.#bound) {
      this.#counters.overflowDropped++;
      return;
    }
    if (lead > FRAME_MS) this.#counters.paced++;
    this.#send(payload, d, marker, arrivedAt, now);
  }

  /** Stop the idle timer. */
  close(): void {
    this.#clock.clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  #send(payload: Uint8Array, delta: number | undefined, marker: boolean, arrivedAt: number, now: number): void {
    this.#leg.sendAudio(payload, delta === undefined ? { marker } : { timestampDelta: delta, marker });
    this.#hold.record(now - arrivedAt);
    if (this.#leg.connectionState === 'connected') this.#counters.packetsOut++;
    else this.#counters.droppedBeforeConnect++;
    // When the PBX stops sending, hand over to the leg's silence. One timer per idle period, not
    // one per frame: a frame only moves the deadline, and the timer re-arms for what remains.
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
      this.#idleDeferred = false;
      this.#armIdle(now);
      return;
    }
    if (!this.#idleDeferred && now - this.#idleTimerAt > LOOP_STALL_MS) {
      // Our loop was blocked: the packets that queued meanwhile are read before the next turn.
      this.#idleDeferred = true;
      this.#idleTimerAt = now + NEXT_TURN_MS;
      this.#idleTimer = this.#clock.setTimeout(() => this.#onIdle(), NEXT_TURN_MS);
      return;
    }
    this.#idleDeferred = false;
    this.#leg.resumeSilence();
  }
}
