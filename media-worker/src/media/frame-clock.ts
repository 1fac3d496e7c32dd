/**
 * A drift-free 20 ms frame clock for pacing media.
 *
 * `setInterval(…, 20)` drifts and bunches under load; this clock schedules
 * each wake-up against an absolute timeline (`performance.now()`), runs every
 * frame that is due, and skips ahead instead of bursting after a long stall,
 * so a receiver's jitter buffer sees at most a gap, never a flood.
 *
 * @module
 */

/** Options for {@link FrameClock}. */
export interface FrameClockOptions {
  /** Frame period in ms. @default 20 */
  periodMs?: number;
  /** Frames to catch up at most after a stall; older ones are skipped. @default 5 */
  maxCatchUp?: number;
}

/**
 * Calls `onFrame(skipped)` once per period; `skipped` is the number of frames
 * dropped just before this one because the event loop stalled.
 */
export class FrameClock {
  private readonly periodMs: number;
  private readonly maxCatchUp: number;
  private readonly onFrame: (skipped: number) => void;
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private framesDone = 0;

  /**
   * @param onFrame - called for every due frame; must not throw
   * @param options - see {@link FrameClockOptions}
   */
  constructor(onFrame: (skipped: number) => void, options: FrameClockOptions = {}) {
    this.onFrame = onFrame;
    this.periodMs = options.periodMs ?? 20;
    this.maxCatchUp = options.maxCatchUp ?? 5;
  }

  /** True while started. */
  get running(): boolean {
    return this.timer !== undefined;
  }

  /** Start; the first frame runs immediately. No-op when running. */
  start(): void {
    if (this.timer) return;
    this.startedAt = performance.now();
    this.framesDone = 0;
    this.timer = setTimeout(() => this.tick(), 0);
  }

  /** Stop; no frame runs after this returns. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    const due = Math.floor((performance.now() - this.startedAt) / this.periodMs) + 1;
    let behind = due - this.framesDone;
    let skipped = 0;
    if (behind > this.maxCatchUp) {
      skipped = behind - 1;
      this.framesDone += skipped;
      behind = 1;
    }
    for (let i = 0; i < behind && this.timer; i++) {
      this.framesDone++;
      this.onFrame(i === 0 ? skipped : 0);
    }
    if (!this.timer) return;
    const next = this.startedAt + this.framesDone * this.periodMs;
    this.timer = setTimeout(() => this.tick(), Math.max(0, next - performance.now()));
  }
}
