/**
 * Server side of SIP digest authentication (RFC 3261 §22.4, RFC 2617 MD5 with qop=auth), used to
 * challenge INVITEs from the PBX by both adapters. Nonces are stateless: a timestamp and an HMAC
 * of it under a per-process secret, valid for a bounded time; an expired nonce gets a new
 * challenge with `stale=true` (RFC 7616 §3.3). Besides the response itself the server checks
 * (RFC 2617 §3.2.2, RFC 7616 §3.4) that the digest-uri is the Request-URI (else 400, so a
 * captured answer cannot be spent on another resource) and that the nonce count of each nonce
 * only grows (a repeated count is a replay: new challenge); the only state is the highest count
 * per live nonce, bounded. (The `sip` package's own server-side digest has a broken
 * `algorithm` field and ties the nonce count to one context, so it is not used here.)
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { type Clock, realClock } from '#core/clock.ts';

/** The credentials a PBX must present. Never logged. */
export interface DigestCredentials {
  readonly realm: string;
  readonly username: string;
  readonly password: string;
}

/** A parsed `Authorization` header as the `sip` package gives it (quoted values keep their quotes). */
export type AuthorizationHeader = Record<string, string | undefined>;

/**
 * Outcome of a verification: `ok`; `missing`/`bad`/`stale`/`replay` are answered 401 with a new
 * challenge (`stale=true` for `stale`); `uri-mismatch` is answered 400 (RFC 2617 §3.2.2.5 and
 * RFC 7616 §3.4.6: "SHOULD return a 400 Bad Request" — the request is malformed, and no
 * challenge can make it right).
 */
export type DigestVerdict = 'ok' | 'missing' | 'stale' | 'bad' | 'replay' | 'uri-mismatch';

/** Live nonces whose highest nonce count is remembered, at most. */
export const MAX_TRACKED_NONCES = 4096;

/**
 * Whether the digest-uri names the Request-URI: equal after dropping angle brackets, with scheme,
 * host and parameters compared without case (RFC 3261 §19.1.4; the user part keeps its case).
 */
export function sameRequestUri(digestUri: string, requestUri: string): boolean {
  const norm = (u: string) => {
    const bare = u.trim().replace(/^<(.*)>$/, '$1');
    const m = /^(sips?):(?:([^@]*)@)?(.*)$/i.exec(bare);
    return m ? `${m[1]?.toLowerCase()}:${m[2] === undefined ? '' : `${m[2]}@`}${m[3]?.toLowerCase()}` : bare;
  };
  return norm(digestUri) === norm(requestUri);
}

const md5 = (s: string) => createHash('md5').update(s).digest('hex');
const unquote = (s: string | undefined) => (s ?? '').replace(/^"(.*)"$/, '$1');

/** Issues challenges and verifies answers for one set of credentials. */
export class DigestVerifier {
  readonly #secret = randomBytes(32);
  readonly #ttlMs: number;
  readonly #clock: Clock;
  /** Highest nonce count accepted per nonce (RFC 2617 §3.2.2: a count seen before is a replay). */
  readonly #counts = new Map<string, number>();
  /** Nonces issued at or before this time whose count was forgotten (table full): refused as replays. */
  #forgottenUpTo = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly credentials: DigestCredentials,
    options: { nonceTtlMs?: number; clock?: Clock } = {},
  ) {
    this.#ttlMs = options.nonceTtlMs ?? 300_000;
    this.#clock = options.clock ?? realClock;
  }

  /** The `WWW-Authenticate` value of a 401, as the `sip` package stringifies it. */
  challenge(stale = false): Record<string, string> {
    return {
      scheme: 'Digest',
      realm: `"${this.credentials.realm}"`,
      nonce: `"${this.#nonce()}"`,
      qop: '"auth"',
      algorithm: 'MD5',
      ...(stale ? { stale: 'true' } : {}),
    };
  }

  /** The same challenge as header text, for stacks that take headers as text (drachtio). */
  challengeText(stale = false): string {
    const { scheme, ...params } = this.challenge(stale);
    return `${scheme} ${Object.entries(params)
      .map(([k, v]) => `${k}=${v}`)
      .join(', ')}`;
  }

  /** Checks the `Authorization` headers of a request with method `method` and Request-URI `requestUri`. */
  verify(method: string, headers: readonly AuthorizationHeader[] | undefined, requestUri: string): DigestVerdict {
    const auth = headers?.find((h) => /^digest$/i.test(h.scheme ?? '') && unquote(h.realm) === this.credentials.realm);
    if (!auth) return 'missing';
    if (unquote(auth.username) !== this.credentials.username) return 'bad';
    const algorithm = unquote(auth.algorithm) || 'MD5';
    if (!/^md5$/i.test(algorithm)) return 'bad';
    const nonce = unquote(auth.nonce);
    const age = this.#nonceAge(nonce);
    if (age === undefined) return 'bad';
    const ha1 = md5(`${this.credentials.username}:${this.credentials.realm}:${this.credentials.password}`);
    const ha2 = md5(`${method}:${unquote(auth.uri)}`);
    const qop = unquote(auth.qop).toLowerCase();
    const expected =
      qop === 'auth'
        ? md5(`${ha1}:${nonce}:${unquote(auth.nc)}:${unquote(auth.cnonce)}:auth:${ha2}`)
        : qop === ''
          ? md5(`${ha1}:${nonce}:${ha2}`)
          : undefined;
    const given = Buffer.from(unquote(auth.response).toLowerCase());
    if (!expected || given.length !== expected.length || !timingSafeEqual(given, Buffer.from(expected))) return 'bad';
    // RFC 2617 §3.2.2.5: the answer is for the resource named in `uri`, which must be this request's.
    if (!sameRequestUri(unquote(auth.uri), requestUri)) return 'uri-mismatch';
    // Right answer to an old challenge: ask again with stale=true (RFC 2617 §3.2.1).
    if (age > this.#ttlMs) return 'stale';
    // qop=auth: `nc` counts the requests made with this nonce and must grow; without qop there is
    // no count, so the nonce serves once.
    const nc = qop === 'auth' ? Number.parseInt(unquote(auth.nc), 16) : 1;
    const last =
      this.#counts.get(nonce) ?? (this.#issuedAt(nonce) <= this.#forgottenUpTo ? Number.POSITIVE_INFINITY : 0);
    if (!Number.isSafeInteger(nc) || nc <= last) return 'replay';
    this.#remember(nonce, nc);
    return 'ok';
  }

  #remember(nonce: string, nc: number): void {
    this.#counts.delete(nonce);
    this.#counts.set(nonce, nc);
    if (this.#counts.size <= MAX_TRACKED_NONCES) return;
    for (const known of this.#counts.keys()) {
      const age = this.#nonceAge(known);
      if (age === undefined || age > this.#ttlMs) this.#counts.delete(known);
    }
    // Still full of live nonces: forget the least recently used; answers to it (and to any nonce
    // issued no later) are then refused as replays, which costs an honest client one more challenge.
    for (const known of this.#counts.keys()) {
      if (this.#counts.size <= MAX_TRACKED_NONCES) break;
      this.#counts.delete(known);
      this.#forgottenUpTo = Math.max(this.#forgottenUpTo, this.#issuedAt(known));
    }
  }

  /**
   * `time.salt.mac`: the salt makes every challenge's nonce unique (two challenges in one
   * millisecond must not share nonce counts).
   */
  #nonce(): string {
    const stamped = `${Math.floor(this.#clock.now()).toString(36)}.${randomBytes(9).toString('base64url')}`;
    return `${stamped}.${this.#mac(stamped)}`;
  }

  #mac(stamped: string): string {
    return createHmac('sha256', this.#secret).update(stamped).digest('base64url').slice(0, 22);
  }

  /** Issue time of a nonce (its timestamp part). */
  #issuedAt(nonce: string): number {
    return Number.parseInt(nonce.split('.')[0] ?? '', 36);
  }

  /** Age of a nonce we issued, or undefined for a nonce we did not issue. */
  #nonceAge(nonce: string): number | undefined {
    const [t, salt, mac, extra] = nonce.split('.');
    if (!t || !salt || !mac || extra !== undefined) return undefined;
    const expected = this.#mac(`${t}.${salt}`);
    if (mac.length !== expected.length || !timingSafeEqual(Buffer.from(mac), Buffer.from(expected))) return undefined;
    return this.#clock.now() - Number.parseInt(t, 36);
  }
}

/**
 * An `Authorization` header's text (RFC 2617 §3.2.2 `credentials`) in the shape the `sip` package
 * parses it to (quoted values keep their quotes), so {@link DigestVerifier.verify} serves stacks
 * that hand over headers as text. `undefined` when it is not a Digest credential.
 */
export function parseAuthorization(text: string): AuthorizationHeader | undefined {
  const m = /^\s*(\S+)\s+(.*)$/s.exec(text);
  if (!m?.[1] || !m[2]) return undefined;
  const out: AuthorizationHeader = { scheme: m[1] };
  const param = /([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)/g;
  for (const p of m[2].matchAll(param)) if (p[1]) out[p[1].toLowerCase()] = p[2];
  return out;
}
