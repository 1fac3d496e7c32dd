/**
 * DTMF both ways as RFC 4733 events: WhatsApp PT 126 → the telephone-event PT the PBX answered
 * (e.g. 101), with timestamps on the SIP stream; and back. Durations are in 8 kHz units on both
 * sides (Meta §5.1; our SDP offers telephone-event/8000 only), so they pass unchanged.
 *
 * @module
 */
import type { Logger } from 'pino';
import { Emitter } from '../../emitter.ts';
import type { SipMedia, WhatsAppMedia, WhatsAppTelephoneEvent } from '../ports.ts';
import {
  buildTelephoneEvent,
  DTMF_EVENTS,
  parseTelephoneEvent,
  type RtpView,
  TelephoneEventReceiver,
  tsDiff,
} from '../rtp.ts';
import type { SipMediaDescription } from '../sip-sdp.ts';
import type { SipToWaCounters } from './sip-to-wa.ts';
import type { WaToSip } from './wa-to-sip.ts';

/** A digit relayed by the bridge, for logs and SIP INFO fallbacks. */
export interface BridgedDigit {
  digit: string;
  direction: 'whatsapp-to-sip' | 'sip-to-whatsapp';
}

/** Relays telephone events between the legs and reports each completed digit. */
export class DtmfRelay {
  /** Every relayed digit, both directions. */
  readonly digits: Emitter<BridgedDigit>;
  readonly #leg: WhatsAppMedia;
  readonly #rtp: SipMedia;
  readonly #waToSip: WaToSip;
  readonly #sipToWa: SipToWaCounters;
  readonly #fromSip = new TelephoneEventReceiver();
  /** SIP timestamp of the event being relayed to the PBX. */
  #eventTs: number | undefined;
  /** The earliest SIP timestamp the next event may take: after the last one ended. */
  #nextEventTs: number | undefined;

  constructor(leg: WhatsAppMedia, rtp: SipMedia, waToSip: WaToSip, sipToWa: SipToWaCounters, log?: Logger) {
    this.#leg = leg;
    this.#rtp = rtp;
    this.#waToSip = waToSip;
    this.#sipToWa = sipToWa;
    this.digits = new Emitter<BridgedDigit>(log, 'dtmf');
  }

  /** A telephone-event packet from Meta, relayed on the PBX's negotiated PT (none: only reported). */
  fromWhatsApp(ev: WhatsAppTelephoneEvent, sip: SipMediaDescription): void {
    if (ev.phase === 'end' && ev.event < DTMF_EVENTS.length) {
      this.#waToSip.counters.dtmfDigits++;
      this.digits.emit({ digit: DTMF_EVENTS[ev.event] as string, direction: 'whatsapp-to-sip' });
    }
    const pt = sip.dtmfPayloadType;
    if (pt === undefined || this.#waToSip.held) return;
    let marker = false;
    if (this.#eventTs === undefined || ev.phase === 'start') {
      // RFC 4733 §2.5.1.2: the event's timestamp is "now" on the SIP stream — but never inside the
      // previous event: when a stalled loop hands us one digit's end and the next digit's start in
      // one instant, "now" has not moved, and a receiver takes a repeated timestamp for the same
      // (already ended) event, so the second digit would be lost.
      let ts = this.#waToSip.timestampNow();
      if (this.#nextEventTs !== undefined && tsDiff(ts, this.#nextEventTs) < 0) ts = this.#nextEventTs;
      this.#eventTs = ts;
      marker = true;
    }
    const payload = buildTelephoneEvent(ev);
    // RFC 4733 §2.5.1.4: the end packet goes out three times.
    const repeats = ev.end ? 3 : 1;
    for (let i = 0; i < repeats; i++) this.#rtp.send(pt, this.#eventTs, payload, marker && i === 0);
    if (ev.end) {
      // Durations are in 8 kHz units (Meta §5.1); the SIP stream may run another clock (Opus 48 kHz).
      const ticks = Math.ceil((ev.duration * sip.codec.clockRate) / 8000) + (sip.codec.clockRate * 20) / 1000;
      this.#nextEventTs = (this.#eventTs + ticks) >>> 0;
      this.#eventTs = undefined;
    }
  }

  /** A telephone-event packet from the PBX, relayed to Meta once per new state (retransmissions dropped). */
  fromSip(p: RtpView): void {
    const ev = parseTelephoneEvent(p.payload);
    if (!ev) return;
    const phase = this.#fromSip.push(p.timestamp, ev);
    if (phase === 'duplicate') return;
    this.#leg.sendTelephoneEvent(ev, phase === 'start');
    if (phase === 'end' && ev.event < DTMF_EVENTS.length) {
      this.#sipToWa.dtmfDigits++;
      this.digits.emit({ digit: DTMF_EVENTS[ev.event] as string, direction: 'sip-to-whatsapp' });
    }
  }

  close(): void {
    this.digits.clear();
  }
}
