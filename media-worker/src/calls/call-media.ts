/**
 * The media of one call, whatever its kind: the WhatsApp leg (WebRTC to Meta), the SIP side's RTP
 * session and the bridge between them. {@link CallMedia} owns all three and closes them
 * (mediasoup's "the parent closes its children"); {@link applySipDialogEvent} is the one mapping of
 * mid-dialog SIP events (RFC 3264 re-INVITEs) onto it, for calls we place (UAC) and calls placed
 * to us (UAS) alike.
 */
import type { Logger } from 'pino';
import type { CallMediaStats } from '#core/calls/call-record.ts';
import type { WorkerConfig } from '../config.ts';
import { type BridgeMode, MediaBridge } from '../media/media-bridge.ts';
import type { RtpSession } from '../media/rtp-session.ts';
import {
  parseSipOffer,
  type SipCodecName,
  type SipMediaDescription,
  type SipSdpOptions,
  type SipSrtpPolicy,
} from '../media/sip-sdp.ts';
import type { InboundSipCallEvent, SipCallEvent } from '../sip/sip-port.ts';
import { WhatsAppLeg } from '../webrtc/whatsapp-leg.ts';
import type { Ending } from './call-session.ts';
import type { CallMediaPort } from './media-port.ts';
import { collectMediaStats } from './media-stats.ts';
import { openSipMedia } from './sip-media.ts';

/** Thrown when media is opened on a call whose media is already closed (the call ended meanwhile). */
export class CallMediaClosedError extends Error {
  override readonly name = 'CallMediaClosedError';
  constructor(readonly callId: string | undefined) {
    super(`the media of call ${callId ?? '(not yet known)'} is closed`);
  }
}

/**
 * The WhatsApp leg, the SIP-side RTP session and the bridge of one call, in this thread: the
 * in-process {@link CallMediaPort}, and what each media thread runs per call.
 */
export class CallMedia implements CallMediaPort {
  /** The WhatsApp leg; created with the call, so it can answer or create Meta's offer at once. */
  readonly leg: WhatsAppLeg;
  readonly #config: Pick<WorkerConfig, 'media'>;
  readonly #log: Logger;
  readonly #callId: string | undefined;
  #rtp: RtpSession | undefined;
  #bridge: MediaBridge | undefined;
  #sip: SipMediaDescription | undefined;
  /** Our SDES master key ‖ salt (base64) when `SIP_SRTP` is on; the SIP side's SRTP uses it once keyed. */
  #localKey: string | undefined;
  #closed: Promise<void> | undefined;

  /** `callId` labels the leg's and RTP session's logs when it is known up front (user-initiated calls). */
  constructor(config: Pick<WorkerConfig, 'media'>, logger: Logger, callId?: string) {
    this.#config = config;
    this.#log = logger;
    this.#callId = callId;
    this.leg = new WhatsAppLeg({
      bindAddress: config.media.bindAddress,
      ...(config.media.publicAddress ? { publicAddress: config.media.publicAddress } : {}),
      ...(callId === undefined ? {} : { callId }),
      logger,
    });
  }

  /**
   * Opens the SIP side's RTP session; returns what `createSipOffer`/`answerSipOffer` advertise
   * for it. Once the media is closed the session is closed again at once and this throws
   * {@link CallMediaClosedError}, so a set-up step racing the end of the call leaks no socket.
   */
  async openSip(): Promise<SipSdpOptions> {
    if (this.#rtp) throw new Error('the SIP media of this call is already open');
    const { rtp, sdp } = await openSipMedia(this.#config, this.#log, this.#callId);
    if (this.#closed) {
      await rtp.close();
      throw new CallMediaClosedError(this.#callId);
    }
    this.#rtp = rtp;
    this.#localKey = sdp.srtp?.keySalt;
    return sdp;
  }

  /** The SIP side as last described (the answer, an early answer or a re-INVITE), if any. */
  get sip(): SipMediaDescription | undefined {
    return this.#sip;
  }

  /** `passthrough` or `transcode` once bridged. */
  get mode(): BridgeMode | undefined {
    return this.#bridge?.mode;
  }

  /** True once the bridge runs. */
  get bridged(): boolean {
    return this.#bridge !== undefined;
  }

  /**
   * Bridges the WhatsApp leg to the SIP side at `sip`; a second call (a 200 after a 183 with
   * early media) only updates the SIP side. `callId` is Meta's call id, for the bridge's logs.
   */
  start(sip: SipMediaDescription, callId: string): void {
    if (this.#bridge) {
      this.updateSip(sip);
      return;
    }
    if (this.#closed) throw new CallMediaClosedError(callId);
    if (!this.#rtp) throw new Error('the SIP media of this call is not open');
    this.#sip = sip;
    this.#keySrtp(sip);
    this.#bridge = new MediaBridge({
      whatsapp: this.leg,
      rtp: this.#rtp,
      sip,
      callId,
      logger: this.#log,
      ...this.#config.media.transcode,
    });
    this.#bridge.start();
  }

  /**
   * The SIP side moved (new address, port or codec) or re-described itself. Before the bridge
   * runs, the description is kept for {@link start}.
   */
  updateSip(sip: SipMediaDescription): void {
    this.#sip = sip;
    this.#keySrtp(sip);
    this.#bridge?.updateSip(sip);
  }

  /** SDES-SRTP on the RTP session when the SIP side gave a key (RFC 4568), plain RTP otherwise. */
  #keySrtp(sip: SipMediaDescription): void {
    if (!this.#rtp) return;
    if (!sip.srtp) {
      this.#rtp.useSrtp(undefined);
      return;
    }
    if (this.#localKey === undefined) throw new Error('the SIP side keyed SRTP but this call offered no SDES key');
    this.#rtp.useSrtp({
      local: Buffer.from(this.#localKey, 'base64'),
      remote: Buffer.from(sip.srtp.keySalt, 'base64'),
    });
  }

  /** The SIP side put the call on hold (RFC 3264 §8.4); no-op before the bridge runs. */
  hold(): void {
    this.#bridge?.hold();
  }

  /** The SIP side took the call off hold; no-op before the bridge runs. */
  resume(): void {
    this.#bridge?.resume();
  }

  /**
   * A digit from a SIP INFO, played to WhatsApp as RFC 4733 events on the leg's clock (queued
   * behind digits still playing). A failure (the leg closed meanwhile) is logged: the digit is lost
   * with the call.
   */
  sendDtmfToWhatsApp(digit: string, durationMs: number): void {
    this.leg.sendDtmf(digit, { durationMs }).then(
      () => this.#log.debug({ digit, durationMs }, 'INFO digit sent to WhatsApp'),
      (err: unknown) => this.#log.warn({ err, digit }, 'INFO digit not sent to WhatsApp'),
    );
  }

  /** The call's media statistics as stored on its record; `undefined` when no media was bridged. */
  stats(): Promise<CallMediaStats | undefined> {
    return collectMediaStats(this.#bridge, this.leg, this.#rtp);
  }

  /** In this thread a failing step throws to its caller; nothing fails outside a call. */
  onFailure(_cb: (error: Error) => void): () => void {
    return () => undefined;
  }

  /** Closes the bridge, then the RTP session and the WhatsApp leg. Idempotent; never rejects. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await Promise.allSettled([this.#bridge?.close()]);
      await Promise.allSettled([this.#rtp?.close(), this.leg.close()]);
    })();
    return this.#closed;
  }
}

/**
 * Applies a mid-dialog SIP event to the call's media: `hold` and `resume` (RFC 3264 §8.4) pause
 * and restart the bridge; `media-update` (a re-INVITE moving the far end's media to another
 * address, port or codec, RFC 3264 §8) points the bridge at the new description; `dtmf` (a digit
 * by INFO) is played to WhatsApp. `codecs` are the
 * codecs the re-offer may pick from: what we offered for calls we place, what we answered for
 * calls placed to us (our answer in the dialog keeps only that codec). The far end's new SDP is an
 * offer, read under the call's SDES policy `srtp`: a new key rekeys what we receive (RFC 4568
 * §7.1.4), a re-offer that drops SRTP the policy requires fails. Returns false for events that are
 * not the media's.
 */
export function applySipDialogEvent(
  event: SipCallEvent | InboundSipCallEvent,
  media: CallMediaPort,
  codecs: readonly SipCodecName[],
  srtp: SipSrtpPolicy = 'off',
): boolean {
  switch (event.type) {
    case 'hold':
      media.hold();
      return true;
    case 'resume':
      media.resume();
      return true;
    case 'media-update':
      media.updateSip(parseSipOffer(event.sdp, [...codecs], srtp));
      return true;
    case 'dtmf':
      // A digit by INFO (the PBX's out-of-band DTMF) reaches WhatsApp like one in the RTP does.
      media.sendDtmfToWhatsApp(event.digit, event.durationMs);
      return true;
    default:
      return false;
  }
}

/**
 * How a call ends when its SIP session timer ran out (RFC 4028 §10; the SIP layer has sent BYE):
 * the SIP side is gone, as when the agent hangs up, and the record keeps 408 and the reason.
 */
export function sessionExpiredEnding(reason: string): Ending {
  return { reason: 'agent-hung-up', by: 'sip', sip: { status: 408, reason } };
}
