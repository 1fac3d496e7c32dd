/**
 * DTMF in SIP INFO bodies (the legacy, pre-RFC 6086 usage PBXs still send): `application/dtmf-relay`
 * (`Signal=5\r\nDuration=160`, Cisco's format, duration in ms) and `application/dtmf` (the digit
 * alone). Both SIP adapters answer INFO with this, so they accept and refuse the same bodies.
 */

/** The INFO bodies we understand, for the Accept header of a 415 (RFC 3261 §21.4.13). */
export const INFO_ACCEPT = 'application/dtmf-relay, application/dtmf';

/** The digit length we report when the body gives none (the outbound stream's default tone). */
export const DEFAULT_INFO_DTMF_MS = 100;

/** A digit carried by an INFO. */
export interface InfoDigit {
  /** One of 0-9, *, #, A-D. */
  readonly digit: string;
  readonly durationMs: number;
}

/** How to answer an INFO. */
export type InfoVerdict =
  /** A digit: answer 200 and report it. */
  | { readonly kind: 'digit'; readonly digit: InfoDigit }
  /** No body (a keep-alive some PBXs send): answer 200, report nothing. */
  | { readonly kind: 'empty' }
  /** A body type we do not take: 415 with `Accept: INFO_ACCEPT`. */
  | { readonly kind: 'unsupported'; readonly contentType: string }
  /** A DTMF body we cannot read: 400 with `why`. */
  | { readonly kind: 'malformed'; readonly why: string };

/** RFC 4733 §3.2 event codes 10–15 as characters. */
const EVENT_CHARS = '0123456789*#ABCD';

/** A signal as text (`5`, `*`, `#`, `a`) or as an RFC 4733 event code (`10` = `*`, `11` = `#`). */
function digitOf(signal: string): string | undefined {
  const s = signal.trim().toUpperCase();
  if (s.length === 1 && EVENT_CHARS.includes(s)) return s;
  if (/^1[0-5]$/.test(s)) return EVENT_CHARS[Number(s)];
  return undefined;
}

/** Read an INFO's body by its Content-Type (parameters and case ignored). */
export function parseInfoDtmf(contentType: string | undefined, body: string | undefined): InfoVerdict {
  if (body === undefined || body.trim() === '') return { kind: 'empty' };
  const type = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (type === 'application/dtmf') {
    const digit = digitOf(body);
    return digit === undefined
      ? { kind: 'malformed', why: 'application/dtmf body is not a DTMF digit' }
      : { kind: 'digit', digit: { digit, durationMs: DEFAULT_INFO_DTMF_MS } };
  }
  if (type !== 'application/dtmf-relay') return { kind: 'unsupported', contentType: type };
  const fields = new Map<string, string>();
  for (const line of body.split(/\r?\n/)) {
    const eq = line.indexOf('=');
    if (eq > 0) fields.set(line.slice(0, eq).trim().toLowerCase(), line.slice(eq + 1).trim());
  }
  const digit = digitOf(fields.get('signal') ?? '');
  if (digit === undefined) return { kind: 'malformed', why: 'dtmf-relay body has no valid Signal' };
  const duration = Number(fields.get('duration'));
  const durationMs = Number.isInteger(duration) && duration > 0 ? duration : DEFAULT_INFO_DTMF_MS;
  return { kind: 'digit', digit: { digit, durationMs } };
}
