/**
 * Fake legs for the media bridge's logic tests: they satisfy the bridge's seams (ports.ts), record
 * what the bridge sends with the time it was sent on a ManualClock, and let a test deliver
 * packets as the real legs would.
 */
import type { Clock } from '#core/clock.ts';
import type { RtpSource, SipMedia, WhatsAppMedia, WhatsAppTelephoneEvent } from '#worker/media/ports.ts';
import { buildTelephoneEvent, type RtpView, type TelephoneEvent } from '#worker/media/rtp.ts';

/** A frame the bridge handed to the WhatsApp leg. */
export interface SentAudio {
  at: number;
  /** The leg's outgoing RTP timestamp for it. */
  ts: number;
  /** The `timestampDelta` the bridge asked for (undefined: default). */
  delta: number | undefined;
  marker: boolean;
  payload: Buffer;
}

/**
 * The WhatsApp leg's outgoing timeline, modelled as the real leg (outbound-stream.ts) keeps it: a
 * frame's timestamp advances by its delta, so a talkspurt keeps its source's timing (its wall time
 * may lag the clock); the first frame after silence, and a talkspurt start (marker) behind real
 * time, jump to the real-time position (at least one frame on). `audioLeadMs` is how far ahead a
 * frame would run. The leg's silence is modelled by its timeline only: after `resumeSilence`
 * the silence stands at real time.
 */
export class FakeWhatsApp implements WhatsAppMedia {
  connectionState: WhatsAppMedia['connectionState'] = 'connected';
  readonly audio: SentAudio[] = [];
  readonly events: { at: number; ev: TelephoneEvent; isStart: boolean }[] = [];
  /** Times the bridge handed the stream over to the leg's silence. */
  readonly silenceResumed: number[] = [];
  silenceStarted = 0;
  readonly #clock: Clock;
  readonly #audioListeners = new Set<(rtp: RtpView) => void>();
  readonly #eventListeners = new Set<(ev: WhatsAppTelephoneEvent) => void>();
  #sentAny = false;
  #silence = false;
  #ts = 1000;
  #tsWallAt = 0;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Listeners the bridge holds (0 after close). */
  get listeners(): number {
    return this.#audioListeners.size + this.#eventListeners.size;
  }

  onAudio(cb: (rtp: RtpView) => void): () => void {
    this.#audioListeners.add(cb);
    return () => this.#audioListeners.delete(cb);
  }

  onTelephoneEvent(cb: (ev: WhatsAppTelephoneEvent) => void): () => void {
    this.#eventListeners.add(cb);
    return () => this.#eventListeners.delete(cb);
  }

  sendAudio(payload: Uint8Array, options?: { timestampDelta?: number; marker?: boolean }): void {
    const now = this.#clock.now();
    const marker = this.#silence || options?.marker === true;
    let delta = options?.timestampDelta ?? 960;
    if (this.#silence) delta = this.#realTimeDelta(960, now);
    else if (marker) delta = this.#realTimeDelta(delta, now);
    if (this.#sentAny) {
      this.#ts += delta;
      this.#tsWallAt += delta / 48;
    } else {
      this.#tsWallAt = now;
    }
    this.#sentAny = true;
    this.#silence = false;
    this.audio.push({
      at: now,
      ts: this.#ts,
      delta: options?.timestampDelta,
      marker,
      payload: Buffer.from(payload),
    });
  }

  sendTelephoneEvent(ev: TelephoneEvent, isStart = false): void {
    this.events.push({ at: this.#clock.now(), ev: { ...ev }, isStart });
  }

  startSilence(): void {
    this.silenceStarted++;
  }

  /**
   * Like the real leg: silence takes over once the timeline has fallen behind real time (a
   * burst's lead is spent first), stamped at real time; the next audio continues from there.
   */
  resumeSilence(): void {
    const now = this.#clock.now();
    this.silenceResumed.push(now);
    if (this.#sentAny) this.#tsWallAt = Math.max(this.#tsWallAt, now);
    this.#silence = true;
  }

  audioLeadMs(timestampDelta: number, now: number): number {
    if (!this.#sentAny) return 0;
    return this.#tsWallAt + (this.#silence ? this.#realTimeDelta(960, now) : timestampDelta) / 48 - now;
  }

  #realTimeDelta(minTicks: number, now: number): number {
    return Math.max(minTicks, Math.round((now - this.#tsWallAt) * 48));
  }

  /** Meta sends one Opus packet. */
  deliverAudio(seq: number, ts: number, payload: Uint8Array, marker = false): void {
    const view: RtpView = { payloadType: 111, marker, sequenceNumber: seq, timestamp: ts, ssrc: 0x1234, payload };
    for (const cb of this.#audioListeners) cb(view);
  }

  /** Meta sends one telephone-event packet (as the leg reports it; sequence number 0 unless given). */
  deliverEvent(ev: Omit<WhatsAppTelephoneEvent, 'sequenceNumber'> & { sequenceNumber?: number }): void {
    for (const cb of this.#eventListeners) cb({ sequenceNumber: 0, ...ev });
  }
}

/** A packet the bridge sent to the PBX. */
export interface SentRtp {
  at: number;
  pt: number;
  ts: number;
  marker: boolean;
  payload: Buffer;
}

/** The SIP leg's RTP session: records sends, delivers the PBX's packets. */
export class FakeSip implements SipMedia {
  readonly sent: SentRtp[] = [];
  remote: RtpSource | undefined;
  clockRate = 8000;
  jitterMs = 0;
  readonly #clock: Clock;
  readonly #listeners = new Set<(p: RtpView, s: RtpSource) => void>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  get listeners(): number {
    return this.#listeners.size;
  }

  onPacket(cb: (p: RtpView, s: RtpSource) => void): () => void {
    this.#listeners.add(cb);
    return () => this.#listeners.delete(cb);
  }

  send(payloadType: number, timestamp: number, payload: Uint8Array, marker = false): void {
    this.sent.push({
      at: this.#clock.now(),
      pt: payloadType,
      ts: timestamp >>> 0,
      marker,
      payload: Buffer.from(payload),
    });
  }

  setRemote(address: string, port: number): void {
    this.remote = { address, port };
  }

  setClockRate(hz: number): void {
    this.clockRate = hz;
  }

  stats(): { rtcp: { jitterMs: number } } {
    return { rtcp: { jitterMs: this.jitterMs } };
  }

  /** The PBX sends one packet. */
  deliver(pt: number, seq: number, ts: number, payload: Uint8Array, marker = false): void {
    const view: RtpView = {
      payloadType: pt,
      marker,
      sequenceNumber: seq & 0xffff,
      timestamp: ts >>> 0,
      ssrc: 0xabc,
      payload,
    };
    for (const cb of this.#listeners) cb(view, { address: '192.0.2.10', port: 40000 });
  }

  /** The PBX sends one RFC 4733 packet. */
  deliverEvent(pt: number, seq: number, ts: number, ev: TelephoneEvent, marker = false): void {
    this.deliver(pt, seq, ts, buildTelephoneEvent(ev), marker);
  }
}
