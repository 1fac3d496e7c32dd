/**
 * {@link CallMediaPort} for a call pinned to a media thread: each method is a message to the
 * thread (see protocol.ts), which runs the call's real {@link CallMedia}. What the scripts read
 * synchronously (`sip`, `mode`, `bridged`) is kept here from what was sent.
 */
import type { CallMediaStats } from '#core/calls/call-record.ts';
import { CallMediaClosedError } from '../calls/call-media.ts';
import type { CallMediaPort, WhatsAppLegPort } from '../calls/media-port.ts';
import { type BridgeMode, bridgeModeOf, type SipMediaDescription, type SipSdpOptions } from '../media/sip-sdp.ts';
import type { RTCPeerConnectionState } from '../webrtc/whatsapp-leg.ts';
import type { MediaCommand, MediaRequestOp } from './protocol.ts';

/** The thread a call is pinned to, as its proxy uses it. */
export interface ThreadChannel {
  /** The thread's index in the pool. */
  readonly index: number;
  /** Resolves with the thread's answer; rejects with its error, `MediaThreadLostError` or `MediaThreadTimeoutError`. */
  request(key: number, op: MediaRequestOp, arg?: string, callId?: string): Promise<unknown>;
  /** Posts an ordered command; a failure comes back through the call's {@link ThreadedCallMedia.fail}. */
  command(key: number, command: MediaCommand): void;
  /** The call's media is closed: the thread forgets the proxy. */
  release(key: number): void;
}

/** The media of one call on a media thread. */
export class ThreadedCallMedia implements CallMediaPort {
  readonly leg: WhatsAppLegPort;
  readonly key: number;
  readonly #thread: ThreadChannel;
  readonly #callId: string | undefined;
  #sip: SipMediaDescription | undefined;
  /** True once `start` was sent: the thread's bridge runs. */
  #started = false;
  #sipOpen = false;
  #closed: Promise<void> | undefined;
  #failure: Error | undefined;
  readonly #failureListeners = new Set<(error: Error) => void>();
  readonly #stateListeners = new Set<(state: RTCPeerConnectionState) => void>();
  readonly #audioListeners = new Set<() => void>();

  /** The proxy of the media the thread opened under `key` (the thread's `open` is posted first). */
  constructor(thread: ThreadChannel, key: number, callId?: string) {
    this.#thread = thread;
    this.key = key;
    this.#callId = callId;
    this.leg = this.#legPort();
  }

  /** The index of the thread the call is pinned to. */
  get thread(): number {
    return this.#thread.index;
  }

  async openSip(): Promise<SipSdpOptions> {
    const sdp = (await this.#thread.request(this.key, 'openSip', undefined, this.#callId)) as SipSdpOptions;
    this.#sipOpen = true;
    return sdp;
  }

  get sip(): SipMediaDescription | undefined {
    return this.#sip;
  }

  get mode(): BridgeMode | undefined {
    // Derived like MediaBridge.mode, so a re-INVITE that switches the codec switches it here too.
    return this.#started && this.#sip ? bridgeModeOf(this.#sip) : undefined;
  }

  get bridged(): boolean {
    return this.#started;
  }

  start(sip: SipMediaDescription, callId: string): void {
    if (this.#started) {
      this.updateSip(sip);
      return;
    }
    if (this.#closed) throw new CallMediaClosedError(callId);
    if (!this.#sipOpen) throw new Error('the SIP media of this call is not open');
    this.#sip = sip;
    this.#started = true;
    this.#thread.command(this.key, { op: 'start', sip, callId });
  }

  updateSip(sip: SipMediaDescription): void {
    this.#sip = sip;
    this.#thread.command(this.key, { op: 'updateSip', sip });
  }

  hold(): void {
    this.#thread.command(this.key, { op: 'hold' });
  }

  resume(): void {
    this.#thread.command(this.key, { op: 'resume' });
  }

  sendDtmfToWhatsApp(digit: string, durationMs: number): void {
    this.#thread.command(this.key, { op: 'sendDtmfToWhatsApp', digit, durationMs });
  }

  async stats(): Promise<CallMediaStats | undefined> {
    return (await this.#thread.request(this.key, 'stats', undefined, this.#callId)) as CallMediaStats | undefined;
  }

  /** Closes the call's media on its thread (a dead thread's media is gone with it). Idempotent; never rejects. */
  close(): Promise<void> {
    this.#closed ??= this.#thread
      .request(this.key, 'close', undefined, this.#callId)
      .then(
        () => undefined,
        () => undefined,
      )
      .finally(() => this.#thread.release(this.key));
    return this.#closed;
  }

  onFailure(cb: (error: Error) => void): () => void {
    if (this.#failure) {
      cb(this.#failure);
      return () => undefined;
    }
    this.#failureListeners.add(cb);
    return () => this.#failureListeners.delete(cb);
  }

  /** The thread reports a failure of this call's media (or died): told once. */
  fail(error: Error): void {
    if (this.#failure) return;
    this.#failure = error;
    for (const cb of [...this.#failureListeners]) cb(error);
    this.#failureListeners.clear();
  }

  /** The leg's peer connection changed state (pushed by the thread). */
  deliverState(state: RTCPeerConnectionState): void {
    for (const cb of [...this.#stateListeners]) cb(state);
  }

  /** Audio arrived from Meta (pushed by the thread, once per `watchAudio`). */
  deliverAudio(): void {
    const listeners = [...this.#audioListeners];
    this.#audioListeners.clear();
    for (const cb of listeners) cb();
  }

  #legPort(): WhatsAppLegPort {
    const thread = this.#thread;
    const key = this.key;
    const callId = this.#callId;
    return {
      answer: async (offer) => (await thread.request(key, 'answer', offer, callId)) as string,
      createOffer: async () => (await thread.request(key, 'createOffer', undefined, callId)) as string,
      applyAnswer: async (answer) => {
        await thread.request(key, 'applyAnswer', answer, callId);
      },
      withholdMedia: () => thread.command(key, { op: 'withholdMedia' }),
      releaseMedia: () => thread.command(key, { op: 'releaseMedia' }),
      startSilence: () => thread.command(key, { op: 'startSilence' }),
      onConnectionStateChange: (cb) => {
        if (this.#stateListeners.size === 0) thread.command(key, { op: 'watchState' });
        this.#stateListeners.add(cb);
        return () => this.#stateListeners.delete(cb);
      },
      onAudio: (cb) => {
        this.#audioListeners.add(cb);
        thread.command(key, { op: 'watchAudio' });
        return () => {
          if (this.#audioListeners.delete(cb) && this.#audioListeners.size === 0)
            thread.command(key, { op: 'unwatchAudio' });
        };
      },
    };
  }
}
