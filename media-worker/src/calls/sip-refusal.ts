/**
 * How the bridge refuses a PBX's INVITE: a final error with its standard reason phrase
 * (RFC 3261 §21) and a Reason header saying why (RFC 3326), and which error answers which of
 * Meta's `connect` refusals (meta-calling-api.md §6).
 */
import { MetaApiError } from '#core/errors.ts';
import type { InboundSipCall } from '../sip/sip-port.ts';
import { reasonPhrase } from '../sip/sip-wire.ts';

/** SIP answers for Meta's connect errors (§6). */
export function sipStatusForMeta(error: unknown): { status: number; text: string } {
  const code = error instanceof MetaApiError ? error.metaCode : undefined;
  switch (code) {
    case 138006:
      return { status: 403, text: 'no-permission' };
    case 138013:
      return { status: 403, text: 'business-country-blocked' };
    case 138012:
      return { status: 403, text: 'daily-limit' };
    case 138001:
      return { status: 404, text: 'not-on-whatsapp' };
    case 138003:
      return { status: 486, text: 'already-in-a-call' };
    case 138002:
    case 138005:
      return { status: 503, text: 'meta-rate-limit' };
    default:
      return { status: 503, text: 'meta-unavailable' };
  }
}

/** The RFC 3326 Reason header explaining a refusal. */
export function reason(status: number, text: string): Record<string, string> {
  return { Reason: `SIP;cause=${status};text="${text.replace(/"/g, "'")}"` };
}

/** Answers `invite` with a final error, its standard phrase and a Reason header. */
export function refuse(invite: InboundSipCall, status: number, text: string): void {
  invite.reject(status, reasonPhrase(status), reason(status, text));
}
