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
}

/** Fixed-capacity sequence-ordered packet buffer. */
export class JitterBuffer {
  private readonly capacity: number;
  private readonly slots: Uint8Array[];
  private readonly lengths: Int32Array;
  private readonly seqs: Int32Array;
  private readonly timestamps: Float64Array;
  private nextSeq = -1;
  private count = 0;
  /** After `pop()` returned `'packet'`: its payload (a view into a slot, valid until the next `push`). */
  payload: Uint8Array = new Uint8Array(0);
  /** After `pop()` returned `'packet'`: its RTP timestamp. */
  timestamp = 0;
  private readonly counters: JitterBufferStats = {
    pushed: 0,
    played: 0,
    missing: 0,
    late: 0,
    overflowDropped: 0,
    resets: 0,
  };

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
  }

  /** Packets currently buffered. */
  get depth(): number {
    return this.count;
  }

  /** Counter snapshot. */
  stats(): JitterBufferStats {
    return { ...this.counters };
  }

  /** Insert a packet (payload is copied). Returns false if dropped. */
  push(seq: number, timestamp: number, payload: Uint8Array): boolean {
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
    if (this.count === 0) return;
    while (this.count > 0) {
      const i = this.nextSeq % this.capacity;
      const hit = this.seqs[i] === this.nextSeq && (this.lengths[i] as number) >= 0;
      this.nextSeq = (this.nextSeq + 1) & 0xffff;
      if (hit) {
        this.lengths[i] = -1;
        this.count--;
        this.counters.overflowDropped++;
        return;
      }
    }
  }

  /** Forget everything (keeps counters). */
  reset(): void {
    this.lengths.fill(-1);
    this.count = 0;
    this.nextSeq = -1;
  }
}
