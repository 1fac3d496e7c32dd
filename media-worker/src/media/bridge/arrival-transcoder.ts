/**
 * SIP→WhatsApp when the PBX answered G.711 (PCMU/PCMA): decode each packet onto what is pending
 * and encode every whole 20 ms frame at once with an 8 kHz libopus encoder (its 20 ms frames
 * advance the 48 kHz RTP clock by 960), through the {@link Pacer} (so a flushed backlog is still
 * held to the delay bound). There is no de-jitter buffer: the WhatsApp client's adaptive jitter
 * buffer does the de-jittering, as with passthrough and as B2BUAs do by default.
 *
 * Each frame's timestamp step is the PBX's own (8 kHz ticks × 6), so a lost packet or a silence
 * gap reaches Meta as a timestamp gap its decoder conceals. A packet that does not continue the
 * pending samples (loss, gap, reordering with ptime ≠ 20 ms) drops the incomplete remainder
 * rather than splicing across the gap; a packet of any ptime is re-framed into 20 ms frames.
 *
 * @module
 */
import { Encoder } from '@evan/opus';
import type { Logger } from 'pino';
import { g711Decode } from '../g711.ts';
import { type RtpView, tsDiff } from '../rtp.ts';
import type { Pacer } from './pacer.ts';
import { plausibleStep, SipSequence, type SipToWaCounters, type SipToWaStrategy } from './sip-to-wa.ts';

/** 20 ms at 8 kHz. */
const FRAME_SAMPLES = 160;

/** Options of the Opus encoder for transcoded audio (see `MediaBridgeOptions`). */
export interface OpusEncoderOptions {
  /** bit/s. @default 16000 */
  opusBitrate?: number;
  /** 0–10. @default 1 */
  opusComplexity?: number;
}

/** The transcoding encoder: 8 kHz mono VoIP, in-band FEC tuned for 5 % loss. */
export function createOpusEncoder(options: OpusEncoderOptions): Encoder {
  // libopus decodes any Opus packet at 8 kHz and an 8 kHz encoder emits packets valid on the
  // 48 kHz RTP clock (dependency-notes §2).
  const encoder = new Encoder({ channels: 1, sample_rate: 8000, application: 'voip' });
  encoder.bitrate = options.opusBitrate ?? 16_000;
  encoder.complexity = (options.opusComplexity ?? 1) as Encoder['complexity'];
  encoder.inband_fec = true;
  encoder.packet_loss = 5;
  return encoder;
}

/** Options of an {@link ArrivalTranscoder}. */
export interface ArrivalTranscoderOptions extends OpusEncoderOptions {
  pacer: Pacer;
  counters: SipToWaCounters;
  law: 'PCMU' | 'PCMA';
  /** The PBX's RTP clock rate (8000 for G.711). */
  clockRate: number;
  log?: Logger | undefined;
}

/** Transcodes G.711 to Opus frame by frame as the packets arrive. */
export class ArrivalTranscoder implements SipToWaStrategy {
  readonly #pacer: Pacer;
  readonly #seq: SipSequence;
  readonly #law: 'PCMU' | 'PCMA';
  readonly #ticksTo48k: number;
  readonly #log: Logger | undefined;
  readonly #encoder: Encoder;
  readonly #pcm = new Int16Array(4096);
  #pcmLength = 0;
  /** SIP timestamp of pcm[0]. */
  #pcmStartTs = 0;
  /** SIP timestamp of the last frame sent; -1 before the first. */
  #lastFrameTs = -1;
  /** Samples of the last SIP packet (to see where the next should start). */
  #lastSamples = 0;
  readonly #frame = new Int16Array(FRAME_SAMPLES);

  constructor(options: ArrivalTranscoderOptions) {
    this.#pacer = options.pacer;
    this.#seq = new SipSequence(options.counters);
    this.#law = options.law;
    this.#ticksTo48k = 48_000 / options.clockRate;
    this.#log = options.log;
    this.#encoder = createOpusEncoder(options);
  }

  onPacket(p: RtpView, arrivedAt: number): void {
    let marker = p.marker;
    if (!this.#seq.first) {
      const gap = this.#seq.gap(p);
      if (gap === undefined) return; // late or duplicate
      const continues = gap === 1 && tsDiff(p.timestamp, this.#seq.lastTs) === this.#lastSamples;
      if (!continues) {
        this.#pcmLength = 0;
        marker = true;
      }
    } else {
      marker = true;
    }
    this.#seq.accept(p);
    if (p.payload.length + this.#pcmLength > this.#pcm.length) return; // absurd packet: drop
    if (this.#pcmLength === 0) this.#pcmStartTs = p.timestamp;
    const samples = g711Decode(this.#law, p.payload, this.#pcm, this.#pcmLength);
    this.#lastSamples = samples;
    this.#pcmLength += samples;
    // On hold too: the PBX's music on hold, if it sends any, reaches WhatsApp.
    while (this.#pcmLength >= FRAME_SAMPLES) {
      const ts = this.#pcmStartTs;
      this.#pcmStartTs = (this.#pcmStartTs + FRAME_SAMPLES) >>> 0;
      const delta =
        this.#lastFrameTs >= 0 ? plausibleStep(tsDiff(ts, this.#lastFrameTs) * this.#ticksTo48k) : undefined;
      this.#lastFrameTs = ts;
      const opus = this.#encodeNextFrame();
      if (!opus) return;
      this.#pacer.forward(opus, delta, marker, arrivedAt);
      marker = false;
    }
  }

  close(): void {
    this.#pacer.close();
    this.#pcmLength = 0;
  }

  /** Encode the first 20 ms of the pending PCM (which must hold them); undefined if libopus fails (logged). */
  #encodeNextFrame(): Buffer | undefined {
    this.#frame.set(this.#pcm.subarray(0, FRAME_SAMPLES));
    this.#pcm.copyWithin(0, FRAME_SAMPLES, this.#pcmLength);
    this.#pcmLength -= FRAME_SAMPLES;
    try {
      const opus = this.#encoder.encode(this.#frame);
      // A fresh buffer per call: hand it over as a Buffer view, not a copy.
      return Buffer.from(opus.buffer, opus.byteOffset, opus.byteLength);
    } catch (err) {
      this.#log?.warn({ err }, 'Opus encoding failed');
      return undefined;
    }
  }
}
