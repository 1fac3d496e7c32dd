/**
 * Errors of the media path (WhatsApp WebRTC leg, SIP RTP leg, bridge).
 *
 * @module
 */

/** Why a {@link MediaError} was raised. */
export type MediaErrorCode =
  /** An SDP could not be used (unparseable, no common codec, Meta would reject it). */
  | 'invalid-sdp'
  /** A method was called in the wrong state (e.g. `applyAnswer` before `createOffer`). */
  | 'invalid-state'
  /** A caller passed a bad argument (digit, address, port range). */
  | 'invalid-argument'
  /** The object is closed. */
  | 'closed'
  /** Something did not happen in time (ICE/DTLS connect). */
  | 'timeout'
  /** The WebRTC stack (werift) failed. */
  | 'webrtc'
  /** No free RTP port in the configured range, or a socket error. */
  | 'socket';

/** Context attached to every {@link MediaError}, for logs and call records. */
export interface MediaErrorContext {
  /** Bridge call id (or Meta's `wacid`), when known. */
  callId?: string;
  /** Which part raised it: `whatsapp-leg`, `rtp-session`, `sip-sdp`, `media-bridge`. */
  component?: string;
  /** Free-form details, e.g. Meta's SDP validation text. */
  details?: string;
}

/**
 * Named error of the media path. `code` says why; `context` carries the call
 * id and component so a log line is useful on its own.
 */
export class MediaError extends Error {
  override readonly name = 'MediaError';
  /** Machine-readable reason. */
  readonly code: MediaErrorCode;
  /** Call context (call id, component, details). */
  readonly context: MediaErrorContext;

  /**
   * @param code - why
   * @param message - human-readable text
   * @param context - call context
   * @param options - `cause`, the underlying error
   */
  constructor(code: MediaErrorCode, message: string, context: MediaErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.context = context;
  }
}
