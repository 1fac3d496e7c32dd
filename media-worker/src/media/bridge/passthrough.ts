/**
 * SIP→WhatsApp when the PBX answered Opus: the frames are not decoded. Both sides run the 48 kHz
 * Opus clock (RFC 7587 §4.1), so the PBX's timestamp step becomes the WhatsApp leg's
 * `timestampDelta`; the leg stamps its own sequence number, timestamp and SSRC. The {@link Pacer}
 * holds the stream within the delay bound.
 *
 * @module
 */
import { type RtpView, tsDiff } from '../rtp.ts';
import type { Pacer } from './pacer.ts';
import { plausibleStep, SipSequence, type SipToWaCounters, type SipToWaStrategy } from './sip-to-wa.ts';

/** Forwards the PBX's Opus frames to WhatsApp as they arrive, through the pacer. */
export class PassthroughSipToWa implements SipToWaStrategy {
  readonly #pacer: Pacer;
  readonly #seq: SipSequence;

  constructor(pacer: Pacer, counters: SipToWaCounters) {
    this.#pacer = pacer;
    this.#seq = new SipSequence(counters);
  }

  onPacket(p: RtpView, arrivedAt: number): void {
    let delta: number | undefined;
    let marker = true; // the stream's first packet starts a talkspurt
    if (!this.#seq.first) {
      if (this.#seq.gap(p) === undefined) return; // late or duplicate
      delta = plausibleStep(tsDiff(p.timestamp, this.#seq.lastTs));
      marker = p.marker;
    }
    this.#seq.accept(p);
    this.#pacer.forward(p.payload, delta, marker, arrivedAt);
  }

  close(): void {
    this.#pacer.close();
  }
}
