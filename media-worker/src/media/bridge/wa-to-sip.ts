/**
 * WhatsApp→SIP: Meta's Opus stream to the PBX, either passed through (the PBX answered Opus;
 * only the RTP header changes: PT, SSRC, sequence number, timestamp) or decoded by libopus at
 * 8 kHz (it resamples internally) and encoded to G.711 (RFC 3551 PT 0/8).
 *
 * The SIP-side timestamp is our own clock: it moves on by Meta's timestamp step converted to the
 * PBX's clock rate (÷6 for 8 kHz), so Meta's losses and pauses stay gaps, and it stays continuous
 * across early media → answer, codec changes and hold → resume. Sequence numbers are the RTP
 * session's.
 *
 * @module
 */
import { Decoder } from '@evan/opus';
import type { Logger } from 'pino';
import { type Clock, realClock } from '#core/clock.ts';
import { g711Encode } from '../g711.ts';
import type { SipMedia } from '../ports.ts';
import { type RtpView, seqDiff, tsDiff } from '../rtp.ts';
import type { SipMediaDescription } from '../sip-sdp.ts';
import { FRAME_MS, OPUS_TICKS_PER_FRAME } from './sip-to-wa.ts';
import { SourceLoss } from './source-loss.ts';

/** The WhatsApp→SIP counters (see `MediaBridgeStats`). */
export interface WaToSipCounters {
  packetsIn: number;
  packetsOut: number;
  /** RFC 3550 A.3 over Meta's sequence space: its telephone-event packets count as received. */
  readonly lost: number;
  dtmfDigits: number;
}

/** Carries Meta's audio to the PBX and keeps the SIP-side timestamp clock. */
export class WaToSip {
  readonly #loss = new SourceLoss();
  readonly counters: WaToSipCounters = (() => {
    const loss = this.#loss;
    return {
      packetsIn: 0,
      packetsOut: 0,
      get lost() {
        return loss.lost;
      },
      dtmfDigits: 0,
    };
  })();
  readonly #rtp: SipMedia;
  readonly #clock: Clock;
  readonly #log: Logger | undefined;
  #sip: SipMediaDescription;
  #decoder: Decoder | undefined;
  readonly #g711 = new Uint8Array(960 * 6);
  #lastSeq = -1;
  #lastTs = 0;
  /** The SIP stream's timestamp (random start, RFC 3550 §5.1). */
  #ts = Math.floor(Math.random() * 0x1_0000_0000) >>> 0;
  #sentAny = false;
  #lastSentAt = 0;
  #held = false;
  /** Set by resume(): the next packet to the PBX starts a talkspurt (marker). */
  #resumed = false;

  constructor(rtp: SipMedia, sip: SipMediaDescription, clock: Clock = realClock, log?: Logger) {
    this.#rtp = rtp;
    this.#clock = clock;
    this.#log = log;
    this.#sip = sip;
    this.setSip(sip);
  }

  /** Follow a new SIP description: a new codec swaps passthrough and decoding. */
  setSip(sip: SipMediaDescription): void {
    this.#sip = sip;
    if (sip.codec.name === 'opus') this.#decoder = undefined;
    else this.#decoder ??= new Decoder({ channels: 1, sample_rate: 8000 });
  }

  /** While held nothing is sent to the PBX (SIP hold, RFC 3264 §8.4). */
  get held(): boolean {
    return this.#held;
  }

  hold(): void {
    this.#held = true;
  }

  resume(): void {
    if (this.#held) this.#resumed = true;
    this.#held = false;
  }

  /**
   * The SIP-stream timestamp of "now", for a telephone event that starts now
   * (RFC 4733 §2.5.1.2): the last audio timestamp plus the frames that have passed since.
   */
  timestampNow(): number {
    const elapsed = this.#sentAny ? this.#clock.now() - this.#lastSentAt : 0;
    const frames = Math.max(this.#sentAny ? 1 : 0, Math.round(elapsed / FRAME_MS));
    return (this.#ts + frames * ((this.#sip.codec.clockRate * FRAME_MS) / 1000)) >>> 0;
  }

  /** One Opus packet from Meta; `rtp` and its payload are valid only during this call. */
  onAudio(rtp: RtpView): void {
    this.counters.packetsIn++;
    this.#loss.packet(rtp.sequenceNumber);
    if (this.#lastSeq >= 0) {
      const gap = seqDiff(rtp.sequenceNumber, this.#lastSeq);
      if (gap <= 0) return; // late or duplicate: the PBX's jitter buffer has moved on
      this.#advance(tsDiff(rtp.timestamp, this.#lastTs));
    } else if (this.#sentAny) {
      this.#advance(OPUS_TICKS_PER_FRAME);
    }
    this.#lastSeq = rtp.sequenceNumber;
    this.#lastTs = rtp.timestamp;
    if (this.#held) return;
    const sip = this.#sip;
    if (!this.#decoder) {
      this.#send(sip.codec.payloadType, rtp.payload, rtp.marker);
      return;
    }
    let pcm: Int16Array;
    try {
      const u8 = this.#decoder.decode(rtp.payload);
      // @evan/opus returns a fresh, 0-offset copy: view it without copying.
      pcm = new Int16Array(u8.buffer, u8.byteOffset, u8.byteLength >> 1);
    } catch (err) {
      this.#log?.debug({ err }, 'undecodable Opus from WhatsApp');
      return;
    }
    const n = g711Encode(sip.codec.name as 'PCMU' | 'PCMA', pcm, this.#g711);
    this.#send(sip.codec.payloadType, this.#g711.subarray(0, n), rtp.marker);
  }

  /** A telephone-event packet from Meta (retransmissions too): it takes a sequence number of the same space. */
  onEventPacket(seq: number): void {
    this.#loss.packet(seq);
  }

  close(): void {
    this.#decoder = undefined;
  }

  /**
   * Move the SIP timestamp on by `waTicks` of the 48 kHz WhatsApp clock. Unusual jumps
   * (reordering, a restarted stream, more than 5 s) advance by one frame instead.
   */
  #advance(waTicks: number): void {
    const ticks = waTicks <= 0 || waTicks > 48_000 * 5 ? OPUS_TICKS_PER_FRAME : waTicks;
    this.#ts = (this.#ts + Math.round((ticks * this.#sip.codec.clockRate) / 48_000)) >>> 0;
  }

  #send(pt: number, payload: Uint8Array, marker: boolean): void {
    this.#rtp.send(pt, this.#ts, payload, marker || !this.#sentAny || this.#resumed);
    this.#sentAny = true;
    this.#resumed = false;
    this.#lastSentAt = this.#clock.now();
    this.counters.packetsOut++;
  }
}
