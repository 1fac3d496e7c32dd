/**
 * Packet loss of one RTP source as RFC 3550 A.3 defines it: expected (extended highest sequence
 * number − first + 1) minus received, over every packet of the source's sequence space. Its
 * RFC 4733 telephone-event packets (start, updates, the end sent three times) take sequence
 * numbers of the same space, so they count as received: a digit is not a loss.
 *
 * @module
 */

/** A jump this large (either way) is a restarted stream (RFC 3550 A.1 MAX_DROPOUT, scaled to 20 ms packets). */
const MAX_DROPOUT = 3000;

/** Counts expected and received packets of one source's sequence space. */
export class SourceLoss {
  #base = -1;
  #maxExt = -1;
  #received = 0;
  /** Loss counted before a restart of the sequence space. */
  #lostBefore = 0;

  /** One packet of the source (any payload type), duplicates and late ones included. */
  packet(seq: number): void {
    if (this.#maxExt < 0) {
      this.#base = this.#maxExt = seq;
      this.#received = 1;
      return;
    }
    let d = (seq - (this.#maxExt & 0xffff)) & 0xffff;
    if (d >= 0x8000) d -= 0x10000;
    if (d > MAX_DROPOUT || d < -MAX_DROPOUT) {
      // A restarted stream: keep what was lost, count afresh.
      this.#lostBefore = this.lost;
      this.#base = this.#maxExt = seq;
      this.#received = 1;
      return;
    }
    this.#received++;
    if (d > 0) this.#maxExt += d;
  }

  /** Packets missing (RFC 3550 A.3 cumulative number lost, never negative here). */
  get lost(): number {
    if (this.#maxExt < 0) return this.#lostBefore;
    return this.#lostBefore + Math.max(0, this.#maxExt - this.#base + 1 - this.#received);
  }
}
