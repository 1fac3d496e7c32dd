/**
 * A small fixed-capacity de-jitter buffer keyed by RTP sequence number
 * (RFC 3550 §5.1), for the SIP→WhatsApp transcoding path.
 *
 * The bridge plays it out on a 20 ms clock: `pop()` returns the next packet
 * in sequence, reports a hole when the next one is missing but later ones
 * have arrived (the caller conceals it), or says the buffer is empty. Late
 * and duplicate packets are dropped; a sequence jump larger than the
 * capacity (stream restart, new SSRC) resets the buffer. Payloads are copied
 * into preallocated slots: no allocation per packet.
 *
 * @module
 */
import { seqDiff } from './rtp.ts';

/** Result of {@link JitterBuffer.pop}. */
export type JitterPop = 'packet' | 'missing' | 'empty';

/** Counters of a {@link JitterBuffer}. */
export interface JitterBufferStats {
  /** Packets accepted. */
  pushed: number;
  /** Packets played out. */
  played: number;
  /** Holes reported by `pop()` (lost or too late). */
  missing: number;
  /** Packets dropped because their turn had passed, or duplicates. */
  late: number;
  /** Packets dropped to bound the delay. */
  overflowDropped: number;
  /** Resets after a sequence jump. */
  resets: number;
  /** Packets dropped to bring the depth back to its target ({@link JitterBuffer.settle}, {@link JitterBuffer.skip}). */
  trimmed: number;
}

/** Fixed-capacity sequence-ordered packet buffer. */
export class JitterBuffer {
  private readonly capacity: number;
  private readonly slots: Uint8Array[];
  private readonly lengths: Int32Array;
  private readonly seqs: Int32Array;
  private readonly timestamps: Float64Array;
  private readonly arrivals: Float64Array;
  private nextSeq = -1;
  private count = 0;
  /** After `pop()` returned `'packet'`: its payload (a view into a slot, valid until the next `push`). */
  payload: Uint8Array = new Uint8Array(0);
  /** After `pop()` returned `'packet'`: its RTP timestamp. */
  timestamp = 0;
  /** After `pop()` returned `'packet'`: when it arrived (as given to {@link push}). */
  arrivalMs = 0;
  private readonly counters: JitterBufferStats = {
    pushed: 0,
    played: 0,
    missing: 0,
    late: 0,
    overflowDropped: 0,
    resets: 0,
    trimmed: 0,
  };
  /** Smallest depth seen by {@link settle} in the current window. */
  private windowMin = Number.POSITIVE_INFINITY;
  private windowTicks = 0;

  /**
   * @param capacity - slots (packets); also the largest sequence jump tolerated. @default 32
   * @param maxPayload - largest payload in bytes; larger ones are dropped. @default 1500
   */
  constructor(capacity = 32, maxPayload = 1500) {
    // Slots are indexed by seq % capacity, which must stay consistent across
    // the 16-bit wrap: capacity has to divide 65536.
    if (!(capacity >= 2 && capacity <= 4096 && (capacity & (capacity - 1)) === 0)) {
      throw new RangeError(`JitterBuffer capacity must be a power of two in 2..4096, got ${capacity}`);
    }
    this.capacity = capacity;
    this.slots = Array.from({ length: capacity }, () => new Uint8Array(maxPayload));
    this.lengths = new Int32Array(capacity).fill(-1);
    this.seqs = new Int32Array(capacity).fill(-1);
    this.timestamps = new Float64Array(capacity);
    this.arrivals = new Float64Array(capacity);
  }

  /** Packets currently buffered. */
  get depth(): number {
    return this.count;
  }

  /** Counter snapshot. */
  stats(): JitterBufferStats {
    return { ...this.counters };
  }

  /** Insert a packet (payload is copied). Returns false if dropped. `arrivalMs`: any monotonic clock. */
  push(seq: number, timestamp: number, payload: Uint8Array, arrivalMs = 0): boolean {
    const maxPayload = this.slots[0]?.length ?? 0;
    if (payload.length > maxPayload) return false;
    if (this.nextSeq < 0) this.nextSeq = seq;
    const ahead = seqDiff(seq, this.nextSeq);
    if (ahead < 0) {
      this.counters.late++;
      return false;
    }
    if (ahead >= this.capacity) {
      this.reset();
      this.counters.resets++;
      this.nextSeq = seq;
    }
    const i = seq % this.capacity;
    if (this.seqs[i] === seq && (this.lengths[i] as number) >= 0) {
      this.counters.late++; // duplicate
      return false;
    }
    if ((this.lengths[i] as number) < 0) this.count++;
    (this.slots[i] as Uint8Array).set(payload);
    this.lengths[i] = payload.length;
    this.seqs[i] = seq;
    this.timestamps[i] = timestamp;
    this.arrivals[i] = arrivalMs;
    this.counters.pushed++;
    return true;
  }

  /**
   * Take the next packet in sequence. `'packet'`: see {@link payload} and
   * {@link timestamp}. `'missing'`: the next packet is absent while later
   * ones are buffered (the caller conceals one frame). `'empty'`: nothing buffered.
   */
  pop(): JitterPop {
    if (this.count === 0) return 'empty';
    const i = this.nextSeq % this.capacity;
    const seq = this.nextSeq;
    this.nextSeq = (this.nextSeq + 1) & 0xffff;
    if (this.seqs[i] === seq && (this.lengths[i] as number) >= 0) {
      this.payload = (this.slots[i] as Uint8Array).subarray(0, this.lengths[i]);
      this.timestamp = this.timestamps[i] as number;
      this.arrivalMs = this.arrivals[i] as number;
      this.lengths[i] = -1;
      this.count--;
      this.counters.played++;
      return 'packet';
    }
    this.counters.missing++;
    return 'missing';
  }

  /** Drop the oldest buffered packet (to bound delay after a burst). */
  dropOldest(): void {
    this.counters.overflowDropped += this.dropHead(1);
  }

  /**
   * Call once per playout tick, before {@link pop}: bring a buffer that
   * stayed deeper than `target` packets back down. It tracks the smallest
   * depth over a window of `windowTicks` ticks; if the buffer never went
   * below `target + 1` in that window, the extra packets only add delay
   * (a burst, a stall the clock caught up with, a PBX clock running fast),
   * so half the excess (at least one packet) is dropped from the head.
   * A jittery stream, whose depth dips to the target, is left alone; ticks
   * that find the buffer empty are ignored (see above).
   * Converges from any depth within ~log2(excess) + 1 windows.
   *
   * @returns packets dropped
   */
  settle(target: number, windowTicks = 20): number {
    // Empty ticks (underruns) do not count: the late packet is played a frame
    // late, and the extra depth that leaves behind is trimmed like any other.
    if (this.count > 0 && this.count < this.windowMin) this.windowMin = this.count;
    if (++this.windowTicks < windowTicks) return 0;
    const excess = this.windowMin - target;
    this.windowMin = Number.POSITIVE_INFINITY;
    this.windowTicks = 0;
    if (!(excess > 0 && excess < Number.POSITIVE_INFINITY)) return 0;
    return this.trim(Math.ceil(excess / 2));
  }

  /**
   * The playout clock skipped `ticks` frames (the event loop stalled): drop
   * what those ticks would have played, but keep at least `target` packets.
   *
   * @returns packets dropped
   */
  skip(ticks: number, target: number): number {
    return this.trim(Math.min(ticks, this.count - target));
  }

  /** Drop `n` packets from the head, with any holes before them (frames the ticks would have concealed). */
  private trim(n: number): number {
    const dropped = this.dropHead(n);
    this.counters.trimmed += dropped;
    return dropped;
  }

  /** Drop up to `n` packets from the head, skipping the holes before them; returns how many. */
  private dropHead(n: number): number {
    let dropped = 0;
    while (dropped < n && this.count > 0) {
      const i = this.nextSeq % this.capacity;
      const hit = this.seqs[i] === this.nextSeq && (this.lengths[i] as number) >= 0;
      this.nextSeq = (this.nextSeq + 1) & 0xffff;
      if (hit) {
        this.lengths[i] = -1;
        this.count--;
        dropped++;
      }
    }
    return dropped;
  }

  /** Forget everything (keeps counters). */
  reset(): void {
    this.lengths.fill(-1);
    this.count = 0;
    this.nextSeq = -1;
    this.windowMin = Number.POSITIVE_INFINITY;
    this.windowTicks = 0;
  }
}
