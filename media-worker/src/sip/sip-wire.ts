/**
 * Helpers between our strings and the `sip` package's message objects: identifiers, header
 * sanitising, name-addr formatting, and the latin1 "binary string" convention of the package.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { SipMessage, SipNameAddr, SipUri } from 'sip';
import sip from 'sip';
import { redactSdp } from '../sdp/sdp.ts';
import type { SipParty, SipTransport } from './sip-port.ts';

/** RFC 3261 §17.1.1.1 timer values used by the dialog layer (the package hard-codes the same). */
export const T1_MS = 500;
/** Cap of the 2xx retransmission interval (RFC 3261 §13.3.1.4). */
export const T2_MS = 4000;

/** Methods we accept (Allow header, RFC 3261 §20.5). */
export const ALLOW = 'INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO';

/** Option tags we support (Supported header, RFC 3261 §20.37): session timers (RFC 4028). */
export const SUPPORTED = 'timer';

/** Methods RFC 3261 and common extensions define; others are answered 501 rather than 405. */
export const KNOWN_METHODS: ReadonlySet<string> = new Set([
  'INVITE',
  'ACK',
  'CANCEL',
  'BYE',
  'OPTIONS',
  'REGISTER',
  'PRACK',
  'SUBSCRIBE',
  'NOTIFY',
  'PUBLISH',
  'INFO',
  'REFER',
  'MESSAGE',
  'UPDATE',
]);

/**
 * The project's one table of SIP reason phrases: RFC 3261 §21 plus the codes later RFCs registered
 * with IANA ("Session Initiation Protocol (SIP) Parameters", Response Codes) that a PBX or carrier
 * may send. The `sip-status` package (drachtio's table) was considered and not taken: it is
 * untyped, last changed in 2014, lacks 425/555/607/608 and uses RFC 2543 wording for 481 and 504.
 */
const REASON_PHRASES: Readonly<Record<number, string>> = {
  100: 'Trying',
  180: 'Ringing',
  181: 'Call Is Being Forwarded',
  182: 'Queued',
  183: 'Session Progress',
  199: 'Early Dialog Terminated', // RFC 6228
  200: 'OK',
  202: 'Accepted', // RFC 3265 (deprecated by RFC 6665, still sent)
  204: 'No Notification', // RFC 5839
  300: 'Multiple Choices',
  301: 'Moved Permanently',
  302: 'Moved Temporarily',
  305: 'Use Proxy',
  380: 'Alternative Service',
  400: 'Bad Request',
  401: 'Unauthorized',
  402: 'Payment Required',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  410: 'Gone',
  412: 'Conditional Request Failed', // RFC 3903
  413: 'Request Entity Too Large',
  414: 'Request-URI Too Long',
  415: 'Unsupported Media Type',
  416: 'Unsupported URI Scheme',
  417: 'Unknown Resource-Priority', // RFC 4412
  420: 'Bad Extension',
  421: 'Extension Required',
  422: 'Session Interval Too Small', // RFC 4028
  423: 'Interval Too Brief',
  425: 'Bad Alert Message', // RFC 8876
  428: 'Use Identity Header', // RFC 8224
  429: 'Provide Referrer Identity', // RFC 3892
  430: 'Flow Failed', // RFC 5626
  433: 'Anonymity Disallowed', // RFC 5079
  436: 'Bad Identity Info', // RFC 8224
  437: 'Unsupported Credential', // RFC 8224
  438: 'Invalid Identity Header', // RFC 8224
  439: 'First Hop Lacks Outbound Support', // RFC 5626
  440: 'Max-Breadth Exceeded', // RFC 5393
  469: 'Bad Info Package', // RFC 6086
  470: 'Consent Needed', // RFC 5360
  480: 'Temporarily Unavailable',
  481: 'Call/Transaction Does Not Exist',
  482: 'Loop Detected',
  483: 'Too Many Hops',
  484: 'Address Incomplete',
  485: 'Ambiguous',
  486: 'Busy Here',
  487: 'Request Terminated',
  488: 'Not Acceptable Here',
  489: 'Bad Event', // RFC 6665
  491: 'Request Pending',
  493: 'Undecipherable',
  494: 'Security Agreement Required', // RFC 3329
  500: 'Server Internal Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Server Time-out',
  505: 'Version Not Supported',
  513: 'Message Too Large',
  555: 'Push Notification Service Not Supported', // RFC 8599
  580: 'Precondition Failure', // RFC 3312
  600: 'Busy Everywhere',
  603: 'Decline',
  604: 'Does Not Exist Anywhere',
  606: 'Not Acceptable',
  607: 'Unwanted', // RFC 8197
  608: 'Rejected', // RFC 8688
};

/**
 * The reason phrase for `status` (RFC 3261 §21 and later registrations; `Status <n>` for a code
 * nobody registered). Needed because the package replaces a 503 by its own reason-less 503 while
 * trying the next resolved address, and synthesises 408/503 locally; the call layer uses it for
 * the responses it sends.
 */
export function reasonPhrase(status: number): string {
  return REASON_PHRASES[status] ?? `Status ${status}`;
}

/** Headers the dialog layer owns; callers may not set them through `headers`. */
const RESERVED_HEADERS: ReadonlySet<string> = new Set([
  'via',
  'v',
  'from',
  'f',
  'to',
  't',
  'call-id',
  'i',
  'cseq',
  'contact',
  'm',
  'content-length',
  'l',
  'content-type',
  'c',
  'route',
  'record-route',
  'max-forwards',
  'authorization',
  'proxy-authorization',
  'www-authenticate',
  'proxy-authenticate',
]);

const TOKEN = /^[A-Za-z0-9\-.!%*_+`'~]+$/;

/** A random tag (RFC 3261 §19.3: at least 32 bits of randomness). */
export function newTag(): string {
  return randomBytes(6).toString('hex');
}

/** A globally unique Call-ID (RFC 3261 §8.1.1.4). */
export function newCallId(): string {
  return randomUUID();
}

/**
 * The package reads and writes messages as latin1 ("binary") strings, so Content-Length counts
 * characters and characters above U+00FF would be truncated on the wire. Our text goes through
 * `toWire` (UTF-8 bytes as latin1) and everything read comes back through `fromWire`.
 */
export function toWire(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

/** Inverse of {@link toWire}. */
export function fromWire(s: string): string {
  return Buffer.from(s, 'latin1').toString('utf8');
}

/** A header value with CR, LF and other controls replaced by spaces, so it cannot inject headers. */
export function sanitizeHeaderValue(v: string): string {
  let out = '';
  for (const ch of v) {
    const c = ch.charCodeAt(0);
    out += c < 0x20 || c === 0x7f ? ' ' : ch;
  }
  return out.trim();
}

/**
 * Extra headers for a request or response as package header entries. Names keep their case (the
 * package only upper-cases a lower-case first letter); reserved names and non-token names throw
 * `TypeError` because they are programming errors.
 */
export function extraHeaders(headers: Readonly<Record<string, string>> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (!TOKEN.test(name)) throw new TypeError(`invalid SIP header name: ${JSON.stringify(name)}`);
    if (RESERVED_HEADERS.has(name.toLowerCase())) throw new TypeError(`SIP header ${name} is managed by the SIP layer`);
    out[name] = toWire(sanitizeHeaderValue(value));
  }
  return out;
}

/** Escape a URI user part (RFC 3261 §25.1 `user`): unreserved and user-unreserved stay, the rest is %-escaped. */
export function escapeUser(user: string): string {
  return Array.from(Buffer.from(user, 'utf8'))
    .map((b) => {
      const c = String.fromCharCode(b);
      return /[A-Za-z0-9\-_.!~*'()&=+$,;?/]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
    })
    .join('');
}

/** A display name as an RFC 3261 §25.1 quoted-string, in wire encoding. */
export function quoteDisplayName(name: string): string {
  return toWire(`"${sanitizeHeaderValue(name).replace(/["\\]/g, (c) => `\\${c}`)}"`);
}

function unquote(s: string): string {
  const t = s.trim();
  return t.startsWith('"') && t.endsWith('"') && t.length >= 2 ? t.slice(1, -1).replace(/\\(.)/g, '$1') : t;
}

/** The URI of a name-addr as text. */
export function uriText(uri: string | SipUri | undefined): string {
  if (uri === undefined) return '';
  return typeof uri === 'string' ? uri : sip.stringifyUri(uri);
}

/** A From/To name-addr as a {@link SipParty}. */
export function partyOf(na: SipNameAddr | undefined): SipParty {
  const uri = uriText(na?.uri);
  const parsed = uri ? sip.parseUri(uri) : undefined;
  const name = na?.name ? unquote(fromWire(na.name)) : undefined;
  return {
    uri,
    user: parsed?.user === undefined ? undefined : decodeURIComponentSafe(parsed.user),
    displayName: name || undefined,
  };
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The transport a target URI asks for (RFC 3263 §4.1 with an IP: `transport` param, else UDP; sips → TLS). */
export function transportOf(uri: SipUri): SipTransport {
  const t = uri.params.transport?.toLowerCase();
  if (t === 'tcp' || t === 'tls' || t === 'udp') return t;
  return uri.schema === 'sips' ? 'tls' : 'udp';
}

/** The value of a header of a received message as text (generic headers are strings; others are stringified). */
export function headerText(m: SipMessage, name: string): string | undefined {
  const v = m.headers[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return fromWire(v);
  if (typeof v === 'number') return String(v);
  return undefined;
}

/** Body of a received message as text, or undefined when empty. */
export function bodyOf(m: SipMessage): string | undefined {
  return m.content ? fromWire(m.content) : undefined;
}

/** First Contact URI of a message, if any. */
export function contactUri(m: SipMessage): string | undefined {
  const c = m.headers.contact;
  if (!Array.isArray(c) || c.length === 0) return undefined;
  return uriText(c[0]?.uri) || undefined;
}

/** Shallow copy of a name-addr with its params, so the package cannot alias our stored headers. */
export function copyNameAddr(na: SipNameAddr): SipNameAddr {
  return {
    ...(na.name === undefined ? {} : { name: na.name }),
    uri: typeof na.uri === 'string' ? na.uri : { ...na.uri, params: { ...na.uri.params } },
    params: { ...na.params },
  };
}

/**
 * A message rendered for trace logs: Authorization/Proxy-Authorization values and SDP crypto
 * lines removed (never log credentials or keys).
 */
export function redactedWireText(m: SipMessage): string {
  const text = sip.stringify({ ...m, headers: { ...m.headers } });
  return redactSdp(text).replace(/^((?:Proxy-)?Authorization:).*$/gim, '$1 <redacted>');
}

/**
 * A response to `rq` with the headers RFC 3261 §8.2.6.2 copies from the request (Via, From,
 * Call-ID, CSeq, and To with our tag), then `headers`. `toTag` is set on every response but 100
 * when the request's To has none (a dialog-creating request); in-dialog requests keep theirs.
 */
export function responseTo(
  rq: SipMessage,
  status: number,
  reason: string,
  options: { toTag?: string; headers?: Record<string, unknown>; content?: string } = {},
): SipMessage {
  const to = rq.headers.to ? copyNameAddr(rq.headers.to) : undefined;
  if (to && status > 100 && options.toTag !== undefined && !to.params.tag) to.params.tag = options.toTag;
  return {
    status,
    reason,
    version: rq.version,
    headers: {
      via: rq.headers.via,
      to,
      from: rq.headers.from,
      'call-id': rq.headers['call-id'],
      cseq: rq.headers.cseq,
      ...options.headers,
    },
    ...(options.content === undefined ? {} : { content: options.content }),
  };
}

/** The port a URI names, if any (the `sip` package parses a missing port as `NaN`, not `undefined`). */
export function explicitPort(uri: { port?: number }): number | undefined {
  return Number.isInteger(uri.port) && (uri.port ?? 0) > 0 ? uri.port : undefined;
}

/** The port a URI names, else its transport's default (RFC 3261 §19.1.2: 5060, 5061 for TLS). */
export function targetPort(uri: { port?: number }, transport: string): number {
  return explicitPort(uri) ?? (transport === 'tls' ? 5061 : 5060);
}
