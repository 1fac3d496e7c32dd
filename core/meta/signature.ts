import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Verifies Meta's `X-Hub-Signature-256` header: `sha256=<hex HMAC-SHA256(app secret, raw body)>`.
 *
 * The HMAC must be computed over the bytes exactly as received: Meta escapes non-ASCII characters
 * as `\uXXXX` before signing, so re-serialising parsed JSON breaks the signature
 * (meta-calling-api.md §2.3). The comparison is constant-time.
 *
 * @param rawBody - the request body bytes, untouched.
 * @param header - the header value, if any.
 * @param appSecret - the Meta app secret.
 * @returns true only for a well-formed header whose digest matches.
 */
export function verifyMetaSignature(rawBody: Uint8Array, header: string | undefined, appSecret: string): boolean {
  if (typeof header !== 'string') return false;
  const match = /^sha256=([0-9a-fA-F]{64})$/.exec(header.trim());
  if (!match) return false;
  const expected = createHmac('sha256', appSecret).update(rawBody).digest();
  const given = Buffer.from(match[1]!, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
