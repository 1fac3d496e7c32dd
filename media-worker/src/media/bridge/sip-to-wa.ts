/**
 * What the SIP→WhatsApp strategies share: the direction's counters, the contract of a strategy,
 * and the sequence tracking of the PBX's stream.
 *
 * @module
 */
import { type RtpView, seqDiff } from '../rtp.ts';

/** 48 kHz RTP ticks of one 20 ms Opus frame (RFC 7587 §4.1). */
export const OPUS_TICKS_PER_FRAME = 960;
/** 48 kHz RTP clock ticks per millisecond. */
export const OPUS_TICKS_PER_MS = 48;
/** The frame length both legs use. */
export const FRAME_MS = 20;

/** The SIP→WhatsApp counters every strategy updates (see `MediaBridgeStats`). */
export interface SipToWaCounters {
  packetsIn: number;
  packetsOut: number;
  lost: number;
  late: number;
  overflowDropped: number;
  paced: number;
  droppedBeforeConnect: number;
  dtmfDigits: number;
}

/** Fresh zeroed counters. */
export function sipToWaCounters(): SipToWaCounters {
  return {
    packetsIn: 0,
    packetsOut: 0,
    lost: 0,
    late: 0,
    overflowDropped: 0,
    paced: 0,
    droppedBeforeConnect: 0,
    dtmfDigits: 0,
  };
}

/**
 * One way of carrying the PBX's audio to WhatsApp, chosen by the negotiated codec: passthrough
 * (Opus) or transcoding on arrival (G.711). The façade swaps strategies when the codec changes.
 */
export interface SipToWaStrategy {
  /** An audio packet of the negotiated payload type; `arrivedAt` on the bridge's clock. */
  onPacket(p: RtpView, arrivedAt: number): void;
  /** Drop pending packets and timers. */
  close(): void;
}

/**
 * A timestamp step towards WhatsApp (48 kHz ticks) from the PBX's: a step that is not forward
 * or is longer than 5 s (a restarted stream, a PBX clock jump) counts as one frame.
 */
export function plausibleStep(ticks: number): number {
  return ticks > 0 && ticks <= 48_000 * 5 ? ticks : OPUS_TICKS_PER_FRAME;
}

/** The PBX's sequence numbers and timestamps as seen by one strategy. */
export class SipSequence {
  /** Sequence number of the last accepted packet; -1 before the first. */
  lastSeq = -1;
  /** Timestamp of the last accepted packet. */
  lastTs = 0;
  readonly #counters: SipToWaCounters;

  constructor(counters: SipToWaCounters) {
    this.#counters = counters;
  }

  /** True before the first packet. */
  get first(): boolean {
    return this.lastSeq < 0;
  }

  /**
   * Sequence step from the previous audio packet; undefined (counted as late) for a late or
   * duplicate packet. A step above 1 may be loss or the PBX's telephone-events (same sequence
   * space): loss is counted over the whole source by the bridge (`SourceLoss`, RFC 3550 A.3).
   */
  gap(p: RtpView): number | undefined {
    const gap = seqDiff(p.sequenceNumber, this.lastSeq);
    if (gap <= 0) {
      this.#counters.late++;
      return undefined;
    }
    return gap;
  }

  /** Remember `p` as the last accepted packet. */
  accept(p: RtpView): void {
    this.lastSeq = p.sequenceNumber;
    this.lastTs = p.timestamp;
  }
}
