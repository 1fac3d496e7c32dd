/**
 * Digest authentication of inbound INVITEs on the in-process adapter (the contract stories), and
 * the stateless-nonce verifier both adapters share.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '#core/clock.ts';
import { DigestVerifier, MAX_TRACKED_NONCES, parseAuthorization } from '#worker/sip/digest-server.ts';
import { inboundDigestContract } from './contract/inbound-digest.ts';

const credentials = { realm: 'wa-sip-bridge', username: 'pbx-1', password: 'correct horse battery' };

inboundDigestContract('inprocess');

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

const RQ = 'sip:+1@127.0.0.1';

/** An RFC 2617 answer to nonce `n`, computed independently of the verifier (qop=auth unless `qop` is ''). */
function answer(n: string, options: { uri?: string; nc?: string; qop?: string } = {}) {
  const uri = options.uri ?? RQ;
  const nc = options.nc ?? '00000001';
  const qop = options.qop ?? 'auth';
  const ha1 = md5(`pbx-1:wa-sip-bridge:${credentials.password}`);
  const ha2 = md5(`INVITE:${uri}`);
  const response = qop ? md5(`${ha1}:${n}:${nc}:c:auth:${ha2}`) : md5(`${ha1}:${n}:${ha2}`);
  return [
    {
      scheme: 'Digest',
      username: '"pbx-1"',
      realm: '"wa-sip-bridge"',
      nonce: `"${n}"`,
      uri: `"${uri}"`,
      ...(qop ? { qop, nc, cnonce: '"c"' } : {}),
      response: `"${response}"`,
    },
  ];
}

describe('DigestVerifier', () => {
  const nonceOf = (v: DigestVerifier) => v.challenge().nonce!.replace(/"/g, '');

  it('refuses nonces it did not issue and asks again (stale) after the nonce lifetime', () => {
    const clock = new ManualClock(1_000_000);
    const v = new DigestVerifier(credentials, { nonceTtlMs: 1000, clock });
    const nonce = nonceOf(v);
    expect(v.verify('INVITE', answer(nonce), RQ)).toBe('ok');
    expect(v.verify('INVITE', answer(`${nonce.split('.').slice(0, 2).join('.')}.forged0000000000000000`), RQ)).toBe(
      'bad',
    );
    clock.advance(2000);
    expect(v.verify('INVITE', answer(nonce, { nc: '00000002' }), RQ)).toBe('stale');
    expect(v.verify('INVITE', undefined, RQ)).toBe('missing');
  });

  it('an answer computed for another URI is uri-mismatch (400), even when the digest itself is right; case of scheme and host does not matter', () => {
    const v = new DigestVerifier(credentials, { clock: new ManualClock() });
    const nonce = nonceOf(v);
    expect(v.verify('INVITE', answer(nonce, { uri: 'sip:+2@127.0.0.1' }), RQ)).toBe('uri-mismatch');
    expect(v.verify('INVITE', answer(nonce, { uri: 'SIP:+1@127.0.0.1' }), RQ)).toBe('ok');
    // The user part is case-sensitive (RFC 3261 §19.1.4).
    expect(v.verify('INVITE', answer(nonceOf(v), { uri: 'sip:Alice@h' }), 'sip:alice@h')).toBe('uri-mismatch');
  });

  it('nonce counts must grow per nonce: a repeated or lower count is a replay; a qop-less answer serves once', () => {
    const clock = new ManualClock(42);
    const v = new DigestVerifier(credentials, { clock });
    const nonce = nonceOf(v);
    expect(v.verify('INVITE', answer(nonce, { nc: '00000001' }), RQ)).toBe('ok');
    expect(v.verify('INVITE', answer(nonce, { nc: '00000001' }), RQ)).toBe('replay');
    expect(v.verify('INVITE', answer(nonce, { nc: '0000000a' }), RQ)).toBe('ok');
    expect(v.verify('INVITE', answer(nonce, { nc: '00000009' }), RQ)).toBe('replay');
    clock.advance(1);
    const other = nonceOf(v);
    expect(v.verify('INVITE', answer(other, { nc: '00000001' }), RQ)).toBe('ok'); // counts are per nonce
    clock.advance(1);
    const plain = nonceOf(v);
    expect(v.verify('INVITE', answer(plain, { qop: '' }), RQ)).toBe('ok');
    expect(v.verify('INVITE', answer(plain, { qop: '' }), RQ)).toBe('replay');
  });

  it(`remembers ${MAX_TRACKED_NONCES} live nonces at most; an answer to a forgotten one is refused as a replay, never let through`, () => {
    const clock = new ManualClock(0);
    const v = new DigestVerifier(credentials, { clock });
    const first = nonceOf(v);
    expect(v.verify('INVITE', answer(first), RQ)).toBe('ok');
    for (let i = 0; i < MAX_TRACKED_NONCES; i++) {
      clock.advance(1);
      expect(v.verify('INVITE', answer(nonceOf(v)), RQ)).toBe('ok');
    }
    expect(v.verify('INVITE', answer(first, { nc: '00000002' }), RQ)).toBe('replay');
    clock.advance(1);
    expect(v.verify('INVITE', answer(nonceOf(v)), RQ)).toBe('ok'); // a fresh nonce still works
  });
});

describe('Function: parseAuthorization', () => {
  it('reads an Authorization header text into the shape the verifier takes (quoted values keep their quotes)', () => {
    const v = new DigestVerifier(credentials);
    expect(v.challengeText()).toMatch(/^Digest realm="wa-sip-bridge", nonce="[^"]+", qop="auth", algorithm=MD5$/);
    expect(v.challengeText(true)).toMatch(/, stale=true$/);
    expect(
      parseAuthorization(
        'Digest username="pbx-1", realm="wa-sip-bridge", nonce="a.b", uri="sip:+1@127.0.0.1", response="0f", qop=auth, nc=00000001, cnonce="c, d"',
      ),
    ).toEqual({
      scheme: 'Digest',
      username: '"pbx-1"',
      realm: '"wa-sip-bridge"',
      nonce: '"a.b"',
      uri: '"sip:+1@127.0.0.1"',
      response: '"0f"',
      qop: 'auth',
      nc: '00000001',
      cnonce: '"c, d"',
    });
    expect(parseAuthorization('Digest')).toBeUndefined();
  });
});
