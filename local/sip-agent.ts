/**
 * A SIP endpoint standing in for the business's agent phone in local mode, the demo and tests: it
 * answers INVITEs (or refuses them, as configured), plays a tone, echoes or stays silent, records
 * what it hears, and sends and detects RFC 4733 DTMF. It runs on the worker's own SIP port
 * implementation (UAS role) but on its own address, like a separate phone on the LAN.
 */
import { Decoder, Encoder } from '@evan/opus';
import type { Logger } from 'pino';
import pino from 'pino';
import { ToneGenerator } from '#simulator/media/audio.ts';
import { g711Decode, g711Encode } from '#worker/media/g711.ts';
import { buildTelephoneEvent, DTMF_EVENTS, dtmfEventCode, parseTelephoneEvent } from '#worker/media/rtp.ts';
import { RtpSession } from '#worker/media/rtp-session.ts';
import {
  answerSipOffer,
  createSipOffer,
  parseSipAnswer,
  type SipCodecName,
  type SipMediaDescription,
} from '#worker/media/sip-sdp.ts';
import { createSipPort } from '#worker/sip/sip-adapter.ts';
import type { InboundSipCall, SipPort } from '#worker/sip/sip-port.ts';

/** How the agent treats INVITEs. */
export interface SipAgentOptions {
  /** Bind address; use 127.0.0.2 or .3 so it differs from the bridge's SIP address. @default '127.0.0.2' */
  readonly address?: string;
  /** @default 5080 */
  readonly port?: number;
  /** Codecs the agent accepts, in its order of preference. @default ['PCMU', 'PCMA', 'opus'] */
  readonly codecs?: SipCodecName[];
  /** `answer` (default), `busy` (486) or `no-answer` (rings until cancelled). */
  readonly behaviour?: 'answer' | 'busy' | 'no-answer';
  /** Ring this long before answering. @default 0 */
  readonly answerDelayMs?: number;
  /** Send 183 with SDP (early media) before the 200. @default false */
  readonly earlyMedia?: boolean;
  /** What the agent sends: a tone, an echo of what it hears, or silence. @default 'tone' */
  readonly audio?: 'tone' | 'echo' | 'silence';
  /** @default 1000 */
  readonly toneHz?: number;
  /** @default -12 */
  readonly toneDbfs?: number;
  /**
   * Play the tone only this long from the moment it starts, then silence: the agent's first words, to check
   * that none of them is clipped. 0: the whole call. @default 0
   */
  readonly greetingMs?: number;
  readonly logger?: Logger;
}

/** One call the agent took. */
export class AgentCall {
  /** Audio heard, decoded to PCM at {@link sampleRate}. */
  readonly #recorded: Int16Array[] = [];
  readonly sampleRate: number;
  /** DTMF digits heard (RFC 4733). */
  receivedDigits = '';
  /** When the call was answered (ms since the epoch). */
  answeredAt = 0;
  readonly #decoder: Decoder | undefined;
  #ended = false;
  readonly #done: Promise<void>;
  #resolveDone!: () => void;

  constructor(
    readonly sip: { readonly callId: string; hangUp(): Promise<void> },
    readonly media: SipMediaDescription,
    readonly rtp: RtpSession,
  ) {
    this.sampleRate = media.codec.clockRate === 48000 ? 48000 : 8000;
    this.#decoder = media.codec.name === 'opus' ? new Decoder({ channels: 1, sample_rate: 48000 }) : undefined;
    this.#done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
  }

  /** Everything heard so far. */
  recording(): Int16Array {
    const total = this.#recorded.reduce((n, f) => n + f.length, 0);
    const out = new Int16Array(total);
    let at = 0;
    for (const f of this.#recorded) {
      out.set(f, at);
      at += f.length;
    }
    return out;
  }

  /** Resolves when the call is over. */
  get ended(): Promise<void> {
    return this.#done;
  }

  get isEnded(): boolean {
    return this.#ended;
  }

  /** Hangs up (BYE). */
  async hangUp(): Promise<void> {
    await this.sip.hangUp();
    this.markEnded();
  }

  /** @internal */
  hear(payloadType: number, payload: Uint8Array, timestamp: number, seen: Set<number>): void {
    if (payloadType === this.media.dtmfPayloadType) {
      const ev = parseTelephoneEvent(payload);
      if (ev?.end && !seen.has(timestamp)) {
        seen.add(timestamp);
        this.receivedDigits += DTMF_EVENTS[ev.event] ?? '?';
      }
      return;
    }
    if (payloadType !== this.media.codec.payloadType) return;
    if (this.#decoder) {
      const bytes = this.#decoder.decode(payload);
      this.#recorded.push(new Int16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)));
    } else {
      const pcm = new Int16Array(payload.length);
      g711Decode(this.media.codec.name as 'PCMU' | 'PCMA', payload, pcm);
      this.#recorded.push(pcm);
    }
  }

  /** The Reason header (RFC 3326) of the BYE or CANCEL that ended the call, if it had one. */
  endReason: string | undefined;

  /** @internal Marks the call over (`reason`: the far end's Reason header) and releases its RTP sockets. */
  markEnded(reason?: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.endReason = reason;
    void this.rtp.close().finally(() => this.#resolveDone());
  }
}

type AgentSettings = Required<Omit<SipAgentOptions, 'logger'>> & { logger: Logger };

/** The agent endpoint. */
export class SipAgent {
  readonly calls: AgentCall[] = [];
  readonly #port: SipPort;
  #o: AgentSettings;
  readonly #listeners = new Set<(call: AgentCall) => void>();
  readonly #timers = new Set<NodeJS.Timeout>();
  /** DTMF to send on each new call once answered. */
  #dtmfQueue = new Map<AgentCall, Promise<void>>();

  private constructor(port: SipPort, options: AgentSettings) {
    this.#port = port;
    this.#o = options;
    port.onInvite((call) => this.#onInvite(call));
  }

  /** Starts the agent on its own address. */
  static async start(options: SipAgentOptions = {}): Promise<SipAgent> {
    const o: AgentSettings = {
      address: options.address ?? '127.0.0.2',
      port: options.port ?? 5080,
      codecs: options.codecs ?? (['PCMU', 'PCMA', 'opus'] as SipCodecName[]),
      behaviour: options.behaviour ?? 'answer',
      answerDelayMs: options.answerDelayMs ?? 0,
      earlyMedia: options.earlyMedia ?? false,
      audio: options.audio ?? 'tone',
      toneHz: options.toneHz ?? 1000,
      toneDbfs: options.toneDbfs ?? -12,
      greetingMs: options.greetingMs ?? 0,
      logger: options.logger ?? pino({ level: 'silent' }),
    };
    const port = await createSipPort({
      address: o.address,
      port: o.port,
      transports: ['udp', 'tcp'],
      contactUser: 'agent',
      userAgent: 'wa-sip-bridge-agent',
      logger: o.logger,
    });
    return new SipAgent(port, o);
  }

  /** Changes how the agent treats the next calls (behaviour, codecs, audio…). */
  configure(options: Omit<SipAgentOptions, 'address' | 'port' | 'logger'>): void {
    this.#o = { ...this.#o, ...options };
  }

  /** The URI to call the agent at. */
  get uri(): string {
    return `sip:agent@${this.#o.address}:${this.#o.port}`;
  }

  /** Called for every call the agent answers. */
  onCall(listener: (call: AgentCall) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Waits for the next answered call. */
  nextCall(timeoutMs = 10_000): Promise<AgentCall> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`no call reached the SIP agent within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.onCall((call) => {
        clearTimeout(timer);
        off();
        resolve(call);
      });
    });
  }

  /** Sends RFC 4733 DTMF on a call (telephone-event/8000, 100 ms per digit, 3 end packets). */
  sendDtmf(call: AgentCall, digits: string): Promise<void> {
    const previous = this.#dtmfQueue.get(call) ?? Promise.resolve();
    const next = previous.then(() => this.#sendDigits(call, digits));
    this.#dtmfQueue.set(call, next);
    return next;
  }

  /** Stops the agent: hangs up calls, closes sockets. */
  async stop(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    await this.#port.close();
    await Promise.allSettled(this.calls.map((c) => c.rtp.close()));
  }

  /**
   * Dials out, like a PBX phone calling a WhatsApp user through the bridge
   * (`sip:+<number>@<bridge>`). Resolves with the call once answered; rejects with the SIP status
   * when refused.
   */
  async dial(
    uri: string,
    options: { from?: string; auth?: { username: string; password: string } } = {},
  ): Promise<AgentCall> {
    const rtp = await RtpSession.open({ bindAddress: this.#o.address, portRange: [40000, 50000] });
    const offer = createSipOffer({ address: this.#o.address, port: rtp.port, codecs: this.#o.codecs });
    const sip = this.#port.placeCall({
      targets: [{ uri, ...(options.auth ? { auth: options.auth } : {}) }],
      from: { user: options.from ?? 'agent' },
      sdpOffer: offer,
      answerTimeoutMs: 60_000,
    });
    let call: AgentCall | undefined;
    const seen = new Set<number>();
    try {
      const answerSdp = await new Promise<string>((resolve, reject) => {
        const off = sip.on((e) => {
          if (e.type === 'answered') {
            off();
            resolve(e.sdp);
          } else if (e.type === 'failed') {
            off();
            reject(Object.assign(new Error(`SIP ${e.status} ${e.reason}`), { status: e.status, reason: e.reason }));
          }
        });
      });
      const media = parseSipAnswer(answerSdp, this.#o.codecs);
      call = new AgentCall(sip, media, rtp);
      call.answeredAt = Date.now();
      const c = call;
      rtp.setRemote(media.address, media.port);
      rtp.onPacket((p) => c.hear(p.payloadType, p.payload, p.timestamp, seen));
      sip.on((e) => {
        if (e.type === 'remote-hangup') c.markEnded(e.reason);
      });
      this.calls.push(call);
      this.#play(call);
      return call;
    } catch (error) {
      if (!call) await rtp.close();
      throw error;
    }
  }

  async #onInvite(sip: InboundSipCall): Promise<void> {
    const log = this.#o.logger.child({ sipCallId: sip.callId });
    if (this.#o.behaviour === 'busy') {
      sip.reject(486, 'Busy Here');
      return;
    }
    if (!sip.sdpOffer) {
      sip.reject(488, 'Not Acceptable Here');
      return;
    }
    const rtp = await RtpSession.open({ bindAddress: this.#o.address, portRange: [40000, 50000] });
    let answer: ReturnType<typeof answerSipOffer>;
    try {
      answer = answerSipOffer(sip.sdpOffer, { address: this.#o.address, port: rtp.port, codecs: this.#o.codecs });
    } catch {
      await rtp.close();
      sip.reject(488, 'Not Acceptable Here');
      return;
    }
    const call = new AgentCall(sip, answer.negotiated, rtp);
    rtp.setRemote(answer.negotiated.address, answer.negotiated.port);
    const seen = new Set<number>();
    rtp.onPacket((p) => {
      call.hear(p.payloadType, p.payload, p.timestamp, seen);
      if (this.#o.audio === 'echo' && p.payloadType === answer.negotiated.codec.payloadType) {
        rtp.send(p.payloadType, p.timestamp, Buffer.from(p.payload), p.marker);
      }
    });
    sip.on((e) => {
      if (e.type === 'remote-hangup' || e.type === 'cancelled') call.markEnded(e.reason);
      else if (e.type === 'failed') call.markEnded();
    });
    this.calls.push(call);
    if (this.#o.earlyMedia) sip.ringing(answer.sdp);
    else sip.ringing();
    if (this.#o.earlyMedia) this.#play(call);
    if (this.#o.behaviour === 'no-answer') return;
    await sleep(this.#o.answerDelayMs);
    if (call.isEnded) return;
    try {
      await sip.answer(answer.sdp);
    } catch (error) {
      log.warn({ err: error }, 'answer was not acknowledged');
      call.markEnded();
      return;
    }
    call.answeredAt = Date.now();
    if (!this.#o.earlyMedia) this.#play(call);
    for (const l of this.#listeners) l(call);
  }

  /** Sends 20 ms frames of the configured audio while the call lasts. */
  #play(call: AgentCall): void {
    if (this.#o.audio !== 'tone' && this.#o.audio !== 'silence') return;
    const codec = call.media.codec;
    const rate = codec.clockRate === 48000 ? 48000 : 8000;
    const samples = rate / 50;
    const tone = new ToneGenerator(this.#o.toneHz, this.#o.audio === 'silence' ? -120 : this.#o.toneDbfs, rate);
    const encoder =
      codec.name === 'opus' ? new Encoder({ channels: 1, sample_rate: 48000, application: 'voip' }) : undefined;
    const g711 = new Uint8Array(samples);
    let timestamp = Math.floor(Math.random() * 2 ** 31);
    let first = true;
    const greetingFrames = this.#o.greetingMs > 0 ? Math.ceil(this.#o.greetingMs / 20) : Number.POSITIVE_INFINITY;
    let frames = 0;
    const timer = setInterval(() => {
      if (call.isEnded) {
        clearInterval(timer);
        this.#timers.delete(timer);
        return;
      }
      if (this.#sending.has(call)) return; // DTMF in progress: audio paused (RFC 4733 §2.5.1.2)
      const pcm = frames++ < greetingFrames ? tone.nextFrame(samples) : new Int16Array(samples);
      let payload: Uint8Array = g711;
      if (encoder) payload = encoder.encode(pcm);
      else g711Encode(codec.name as 'PCMU' | 'PCMA', pcm, g711);
      call.rtp.send(codec.payloadType, timestamp >>> 0, Buffer.from(payload), first);
      first = false;
      timestamp += samples;
      this.#timestamps.set(call, timestamp);
    }, 20);
    this.#timers.add(timer);
  }

  readonly #sending = new Set<AgentCall>();
  readonly #timestamps = new Map<AgentCall, number>();

  async #sendDigits(call: AgentCall, digits: string): Promise<void> {
    const pt = call.media.dtmfPayloadType;
    if (pt === undefined) throw new Error('DTMF was not negotiated on this call');
    const unit = call.media.codec.clockRate / 8000; // event timestamps run on the stream's clock
    for (const digit of digits) {
      this.#sending.add(call);
      const start = (this.#timestamps.get(call) ?? 0) >>> 0;
      const event = dtmfEventCode(digit);
      for (let i = 1; i <= 5; i++) {
        call.rtp.send(pt, start, buildTelephoneEvent({ event, end: false, volume: 10, duration: i * 160 }), i === 1);
        await sleep(20);
      }
      for (let i = 0; i < 3; i++)
        call.rtp.send(pt, start, buildTelephoneEvent({ event, end: true, volume: 10, duration: 800 }), false);
      this.#timestamps.set(call, start + 800 * unit);
      this.#sending.delete(call);
      await sleep(60);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
