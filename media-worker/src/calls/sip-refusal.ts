/**
 * How the bridge refuses a PBX's INVITE: a final error with its standard reason phrase
 * (RFC 3261 §21) and a Reason header saying why (RFC 3326), and which error answers which of
 * Meta's `connect` refusals (meta-calling-api.md §6, M-TRB).
 */
import { metaRefusalOf } from '#core/calls/call-record.ts';
import type { MetaCallError } from '#core/meta/webhook.ts';
import { SdesNegotiationError } from '../sdp/sdes.ts';
import type { InboundSipCall } from '../sip/sip-port.ts';
import { reasonPhrase } from '../sip/sip-wire.ts';
import type { Ending } from './call-session.ts';

/** The SIP answer to one of Meta's refusals. */
export interface SipRefusal {
  readonly status: number;
  /**
   * The bridge's reason, then Meta's code and text, e.g.
   * `no-permission (Meta 138006: No approved call permission from the recipient)`.
   */
  readonly text: string;
  /** `Reason` (the SIP cause and Meta's own code and text) and, when Meta gives a time, `Retry-After`. */
  readonly headers: Record<string, string>;
}

/**
 * SIP status per Meta code (M-TRB). 403: Meta will not place this call as things stand (permission,
 * country, number set-up); 480 with Retry-After: a limit or pause that lifts at a time Meta names;
 * 404: not a WhatsApp user; 486: the user is already in a call with this number; 503: Meta is
 * overloaded or failed (a retry may succeed).
 */
const META_CODES: Readonly<Record<number, { status: number; text: string }>> = {
  138006: { status: 403, text: 'no-permission' },
  138013: { status: 403, text: 'business-country-blocked' },
  131030: { status: 403, text: 'test-number-allow-list' },
  138000: { status: 403, text: 'calling-disabled' },
  131055: { status: 403, text: 'sip-mode-enabled' },
  138012: { status: 480, text: 'daily-limit' },
  138014: { status: 480, text: 'calling-temporarily-disabled' },
  138001: { status: 404, text: 'not-on-whatsapp' },
  138003: { status: 486, text: 'already-in-a-call' },
  138002: { status: 503, text: 'meta-rate-limit' },
  138005: { status: 503, text: 'meta-rate-limit' },
};

/**
 * The SIP answer for a failed Meta `connect`: a status per Meta code, a Reason header carrying
 * Meta's code and text, and Retry-After (seconds from `now`) where Meta says when to try again.
 */
export function sipStatusForMeta(error: unknown, now: number = Date.now()): SipRefusal {
  const meta = metaRefusalOf(error);
  const mapped = (meta && META_CODES[meta.code]) ?? { status: 503, text: 'meta-unavailable' };
  const metaText = meta ? (meta.details ?? meta.message) : undefined;
  const text = meta ? `${mapped.text} (Meta ${meta.code}: ${metaText})` : mapped.text;
  const headers: Record<string, string> = {
    Reason: [
      reasonValue('SIP', mapped.status, text),
      ...(meta ? [reasonValue('WhatsApp', meta.code, metaText ?? '')] : []),
    ].join(', '),
  };
  if (meta?.nextAllowedAt !== undefined && meta.nextAllowedAt > now) {
    headers['Retry-After'] = String(Math.ceil((meta.nextAllowedAt - now) / 1000));
  }
  return { status: mapped.status, text, headers };
}

/**
 * SIP status per error code of Meta's `terminate` (M-TRB): what the PBX hears when Meta ends the
 * call with `errors[]`. 480: the WhatsApp user's client failed (set-up, relay, media), the user may
 * be reachable later; 503: the bridge did not apply Meta's answer in time (138007), a retry may
 * succeed; 500: WhatsApp received no media from the bridge (138021), the bridge's own failure.
 */
const META_TERMINATE_CODES: Readonly<Record<number, { status: number; text: string }>> = {
  138007: { status: 503, text: 'meta-connect-timeout' },
  138019: { status: 480, text: 'whatsapp-setup-failed' },
  138020: { status: 480, text: 'whatsapp-relay-unreachable' },
  138021: { status: 500, text: 'no-media-from-bridge' },
  138022: { status: 480, text: 'whatsapp-media-failed' },
  138023: { status: 480, text: 'whatsapp-no-media-signals' },
};

/**
 * How the SIP side hears that Meta ended the call with `errors[]` (the first code decides): the
 * final status for a PBX INVITE still unanswered, and a Reason header for that response or for the
 * BYE/CANCEL (RFC 3326), e.g. `SIP;cause=480;text="whatsapp-setup-failed (Meta 138019: …)",
 * WhatsApp;cause=138019;text="…"`. Undefined when Meta gave no error.
 */
export function sipEndForMetaErrors(errors: readonly MetaCallError[] | undefined): SipRefusal | undefined {
  const error = errors?.[0];
  if (!error) return undefined;
  const mapped = META_TERMINATE_CODES[error.code] ?? { status: 480, text: 'meta-terminated' };
  const metaText = error.details ?? error.message ?? '';
  const text = `${mapped.text} (Meta ${error.code}: ${metaText})`;
  return {
    status: mapped.status,
    text,
    headers: { Reason: `${reasonValue('SIP', mapped.status, text)}, ${reasonValue('WhatsApp', error.code, metaText)}` },
  };
}

/**
 * A PBX's SDP answer whose SDES-SRTP does not fit our offer (RFC 4568 §7.1.3, e.g. no key where we
 * required SRTP): the call ends from the bridge, and the BYE says 488 in a Reason header, as the
 * refusal of such an offer would. Undefined for any other error.
 */
export function sdesAnswerFailure(error: unknown): { ending: Ending; byeHeaders: Record<string, string> } | undefined {
  if (!(error instanceof SdesNegotiationError)) return undefined;
  return {
    ending: {
      reason: 'media-failed',
      by: 'bridge',
      sip: { status: error.sipStatus, reason: reasonPhrase(error.sipStatus) },
    },
    byeHeaders: reason(error.sipStatus, error.message),
  };
}

/** The RFC 3326 Reason header explaining a refusal. */
export function reason(status: number, text: string): Record<string, string> {
  return { Reason: reasonValue('SIP', status, text) };
}

/** Answers `invite` with a final error, its standard phrase and a Reason header (or the headers given). */
export function refuse(invite: InboundSipCall, status: number, text: string, headers?: Record<string, string>): void {
  invite.reject(status, reasonPhrase(status), headers ?? reason(status, text));
}

/** One RFC 3326 reason value; `protocol` is a token (`SIP`, or `WhatsApp` for Meta's own code). */
function reasonValue(protocol: string, cause: number, text: string): string {
  return `${protocol};cause=${cause};text="${text.replace(/["\\\r\n]/g, "'")}"`;
}
