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

/**
 * Meta's SDP uses a key exchange the WhatsApp leg does not speak: SDES-SRTP (`RTP/SAVP` + `a=crypto`, no ICE or
 * DTLS), which Meta uses when the number's `srtp_key_exchange_protocol` setting is `SDES` (M-SET; M-SIP SDES
 * section). The leg speaks DTLS-SRTP only; the fix is the setting, so the message names it.
 */
export class UnsupportedKeyExchangeError extends Error {
  override readonly name = 'UnsupportedKeyExchangeError';
  /** Meta's call id. */
  readonly callId: string | undefined;
  /** What Meta's SDP used. */
  readonly keyExchange: 'SDES';
  /** The Meta setting that decides it. */
  readonly setting = 'srtp_key_exchange_protocol';

  /**
   * @param callId - Meta's call id, when known
   * @param keyExchange - what Meta's SDP used
   */
  constructor(callId: string | undefined, keyExchange: 'SDES' = 'SDES') {
    super(
      `Meta's SDP for call ${callId ?? '(unknown)'} uses ${keyExchange}-SRTP (RTP/SAVP + a=crypto, no ICE or DTLS): ` +
        "the number's calling setting srtp_key_exchange_protocol is SDES, and the bridge speaks DTLS-SRTP only. " +
        'Set it to DTLS: POST /{phone-number-id}/settings {"calling":{"srtp_key_exchange_protocol":"DTLS"}}',
    );
    this.callId = callId;
    this.keyExchange = keyExchange;
  }
}

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
