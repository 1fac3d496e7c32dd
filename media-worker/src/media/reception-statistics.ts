/**
 * RFC 3550 receive statistics of one RTP source: packets expected and lost
 * (A.3), the fraction lost between reports, and interarrival jitter (A.8).
 * Used for the SIP leg's receiver reports and, on the WhatsApp leg, in place
 * of werift's own table (hence its snake_case names).
 *
 * @module
 */

/**
 * RFC 3550 receive statistics of one SSRC (A.3 expected/lost, A.8 jitter),
 * exposing the names werift's receiver-report loop and `getStats()` read, so
 * it can stand in its `remoteStreams` table.
 */
export class ReceptionStatistics {
  /* werift's field names (snake_case) are kept on purpose. */
  packets_received = 0;
  bytesReceived = 0;
  headerBytesReceived = 0;
  lastPacketReceivedTimestamp: number | undefined;
  readonly clockRate: number;
  private baseExt = -1;
  private maxExt = -1;
  private jitterTs = 0;
  private lastTransit: number | undefined;
  private expectedPrior = 0;
  private receivedPrior = 0;

  constructor(clockRate: number) {
    this.clockRate = clockRate;
  }

  /** Count one authenticated packet: `arrivalMs` on a monotonic clock. */
  add(seq: number, timestamp: number, payloadBytes: number, headerBytes: number, arrivalMs: number): void {
    this.packets_received++;
    this.bytesReceived += payloadBytes;
    this.headerBytesReceived += headerBytes;
    this.lastPacketReceivedTimestamp = arrivalMs;
    if (this.maxExt < 0) {
      this.baseExt = this.maxExt = seq;
    } else {
      let d = (seq - (this.maxExt & 0xffff)) & 0xffff;
      if (d >= 0x8000) d -= 0x10000;
      if (d > 0) this.maxExt += d;
    }
    // A.8: J += (|D| − J) / 16 with D the change in relative transit time.
    const transit = (arrivalMs * this.clockRate) / 1000 - timestamp;
    if (this.lastTransit !== undefined) {
      let d = transit - this.lastTransit;
      // Timestamps are 32-bit: fold a wrap back into range.
      if (d > 2 ** 31) d -= 2 ** 32;
      else if (d < -(2 ** 31)) d += 2 ** 32;
      this.jitterTs += (Math.abs(d) - this.jitterTs) / 16;
    }
    this.lastTransit = transit;
  }

  /** Extended highest sequence number received (RFC 3550 §6.4.1). */
  get max_seq(): number {
    return Math.max(0, this.maxExt) >>> 0;
  }
  get packets_expected(): number {
    return this.maxExt < 0 ? 0 : this.maxExt - this.baseExt + 1;
  }
  get packets_lost(): number {
    return Math.max(0, this.packets_expected - this.packets_received);
  }
  /** Interarrival jitter in RTP timestamp units. */
  get jitter(): number {
    return Math.round(this.jitterTs);
  }
  /** Fraction lost since the previous call, in 1/256 (A.3); each receiver report reads it once. */
  get fraction_lost(): number {
    const expected = this.packets_expected - this.expectedPrior;
    const received = this.packets_received - this.receivedPrior;
    this.expectedPrior = this.packets_expected;
    this.receivedPrior = this.packets_received;
    const lost = expected - received;
    return expected === 0 || lost <= 0 ? 0 : Math.floor((lost * 256) / expected);
  }
}
