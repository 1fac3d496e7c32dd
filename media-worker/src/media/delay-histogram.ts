/**
 * A fixed 1 ms-bucket histogram of short delays (0–254 ms, the last bucket
 * holding everything longer): cheap enough to record every packet of every
 * call, and mergeable across calls for percentiles.
 *
 * @module
 */

const BUCKETS = 256;

/** Delay histogram with 1 ms resolution. */
export class DelayHistogram {
  /** Count per whole millisecond; index 255 counts every delay ≥ 255 ms. */
  readonly counts = new Uint32Array(BUCKETS);
  private n = 0;

  /** Record one delay in ms (negative counts as 0). */
  record(ms: number): void {
    const i = ms < 0 ? 0 : ms >= BUCKETS - 1 ? BUCKETS - 1 : Math.floor(ms);
    this.counts[i] = (this.counts[i] as number) + 1;
    this.n++;
  }

  /** Samples recorded. */
  get count(): number {
    return this.n;
  }

  /** Add another histogram's counts to this one. */
  merge(other: DelayHistogram): void {
    for (let i = 0; i < BUCKETS; i++) this.counts[i] = (this.counts[i] as number) + (other.counts[i] as number);
    this.n += other.n;
  }

  /**
   * The delay below which a fraction `q` (0–1) of the samples fall, as the
   * upper edge of its bucket (so 0.4 ms reads as 1 ms); undefined when empty.
   */
  percentile(q: number): number | undefined {
    if (this.n === 0) return undefined;
    const rank = Math.max(1, Math.ceil(q * this.n));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i] as number;
      if (seen >= rank) return i + 1;
    }
    return BUCKETS;
  }
}
