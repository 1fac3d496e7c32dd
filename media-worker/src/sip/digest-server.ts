/**
 * Server side of SIP digest authentication (RFC 3261 §22.4, RFC 2617 MD5 with qop=auth), used to
 * challenge INVITEs from the PBX. Nonces are stateless: a timestamp and an HMAC of it under a
 * per-process secret, valid for a bounded time, so no per-client state is kept; an expired nonce
 * gets a new challenge with `stale=true`. (The `sip` package's own server-side digest has a broken
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

/** Outcome of a verification. */
export type DigestVerdict = 'ok' | 'missing' | 'stale' | 'bad';

const md5 = (s: string) => createHash('md5').update(s).digest('hex');
const unquote = (s: string | undefined) => (s ?? '').replace(/^"(.*)"$/, '$1');

/** Issues challenges and verifies answers for one set of credentials. */
export class DigestVerifier {
  readonly #secret = randomBytes(32);
  readonly #ttlMs: number;
  readonly #clock: Clock;

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

  /** Checks the `Authorization` headers of a request with method `method`. */
  verify(method: string, headers: readonly AuthorizationHeader[] | undefined): DigestVerdict {
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
    // Right answer to an old challenge: ask again with stale=true (RFC 2617 §3.2.1).
    return age > this.#ttlMs ? 'stale' : 'ok';
  }

  #nonce(): string {
    const t = Math.floor(this.#clock.now()).toString(36);
    return `${t}.${createHmac('sha256', this.#secret).update(t).digest('base64url').slice(0, 22)}`;
  }

  /** Age of a nonce we issued, or undefined for a nonce we did not issue. */
  #nonceAge(nonce: string): number | undefined {
    const [t, mac] = nonce.split('.');
    if (!t || !mac) return undefined;
    const expected = createHmac('sha256', this.#secret).update(t).digest('base64url').slice(0, 22);
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
