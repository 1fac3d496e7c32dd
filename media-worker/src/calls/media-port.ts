/**
 * The seam between a call's script (signalling, on the worker's main thread) and the call's media
 * (the WhatsApp leg, the SIP side's RTP session and the bridge). The scripts see only
 * {@link CallMediaPort}: {@link CallMedia} implements it in this thread (`MEDIA_THREADS=0`), and
 * `ThreadedCallMedia` (threads/threaded-call-media.ts) implements it by messages to the media
 * thread the call is pinned to.
 *
 * The surface is what the scripts use and nothing more. Methods that return `void` are ordered
 * commands: a threaded port posts them and the thread applies them in order, before any later
 * request of the same call; a failure there ends the call through {@link CallMediaPort.onFailure}.
 */
import type { Logger } from 'pino';
import type { CallMediaStats } from '#core/calls/call-record.ts';
import type { WorkerConfig } from '../config.ts';
import type { BridgeMode } from '../media/media-bridge.ts';
import type { SipMediaDescription, SipSdpOptions } from '../media/sip-sdp.ts';
import type { RTCPeerConnectionState } from '../webrtc/whatsapp-leg.ts';
import { CallMedia } from './call-media.ts';

/** What the call scripts do with the WhatsApp leg (see `WhatsAppLeg` for each method's contract). */
export interface WhatsAppLegPort {
  /** User-initiated call: answers Meta's SDP offer; resolves with the SDP answer for `pre_accept`/`accept`. */
  answer(metaOffer: string): Promise<string>;
  /** Business-initiated call: the SDP offer for Meta's `connect`. */
  createOffer(): Promise<string>;
  /** Business-initiated call: applies Meta's SDP answer from the webhook. */
  applyAnswer(metaAnswer: string): Promise<void>;
  /** Sends nothing to Meta until {@link releaseMedia} (M-FAQ: a packet answers the call). */
  withholdMedia(): void;
  /** Ends {@link withholdMedia}: what was held goes out at once. */
  releaseMedia(): void;
  /** Starts the silence stream (the maiden packet, §5.1). */
  startSilence(): void;
  /** Told every change of the peer connection's state; returns the unsubscribe. */
  onConnectionStateChange(cb: (state: RTCPeerConnectionState) => void): () => void;
  /**
   * Told when audio RTP arrives from Meta (the business-initiated pickup signal); returns the
   * unsubscribe. A threaded leg tells only the first packet after each subscription: the scripts
   * need no more, and every packet crossing threads would cost what the threads save.
   */
  onAudio(cb: () => void): () => void;
}

/** The media of one call, as the call scripts and {@link CallSession} use it. */
export interface CallMediaPort {
  /** The WhatsApp leg; created with the call, so it can answer or create Meta's offer at once. */
  readonly leg: WhatsAppLegPort;
  /** Opens the SIP side's RTP session; what `createSipOffer`/`answerSipOffer` advertise for it. */
  openSip(): Promise<SipSdpOptions>;
  /** The SIP side as last described (the answer, an early answer or a re-INVITE), if any. */
  readonly sip: SipMediaDescription | undefined;
  /** `passthrough` or `transcode` once bridged. */
  readonly mode: BridgeMode | undefined;
  /** True once the bridge runs. */
  readonly bridged: boolean;
  /** Bridges the leg to the SIP side at `sip` (a second call only updates the SIP side). */
  start(sip: SipMediaDescription, callId: string): void;
  /** The SIP side moved or re-described itself (RFC 3264 §8). */
  updateSip(sip: SipMediaDescription): void;
  /** The SIP side put the call on hold (RFC 3264 §8.4). */
  hold(): void;
  /** The SIP side took the call off hold. */
  resume(): void;
  /**
   * A DTMF digit the SIP side signalled out of the media (an INFO, `application/dtmf-relay`): sent
   * to WhatsApp as RFC 4733 events, as digits arriving in the SIP side's RTP are.
   */
  sendDtmfToWhatsApp(digit: string, durationMs: number): void;
  /** The call's media statistics as stored on its record; `undefined` when no media was bridged. */
  stats(): Promise<CallMediaStats | undefined>;
  /** Closes the bridge, the RTP session and the leg. Idempotent; never rejects. */
  close(): Promise<void>;
  /**
   * Told once if the media failed outside any request (its media thread died, or an ordered
   * command failed there); the session then ends the call `bridge-error`. Returns the unsubscribe.
   */
  onFailure(cb: (error: Error) => void): () => void;
}

/** Opens the media of a new call; `callId` labels its logs when known up front (user-initiated calls). */
export type CallMediaFactory = (logger: Logger, callId?: string) => CallMediaPort;

/** Media in the worker's own thread (`MEDIA_THREADS=0`). */
export function inProcessMedia(config: Pick<WorkerConfig, 'media'>): CallMediaFactory {
  return (logger, callId) => new CallMedia(config, logger, callId);
}
