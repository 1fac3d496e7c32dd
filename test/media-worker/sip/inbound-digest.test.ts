/**
 * Digest authentication of inbound INVITEs on the in-process adapter (the contract stories), and
 * the stateless-nonce verifier both adapters share.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '#core/clock.ts';
import { DigestVerifier, parseAuthorization } from '#worker/sip/digest-server.ts';
import { inboundDigestContract } from './contract/inbound-digest.ts';

const credentials = { realm: 'wa-sip-bridge', username: 'pbx-1', password: 'correct horse battery' };

inboundDigestContract('inprocess');

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

describe('DigestVerifier', () => {
  it('refuses nonces it did not issue and asks again (stale) after the nonce lifetime', () => {
    const clock = new ManualClock(1_000_000);
    const v = new DigestVerifier(credentials, { nonceTtlMs: 1000, clock });
    const nonce = v.challenge().nonce!.replace(/"/g, '');
    const answer = (n: string) => {
      // RFC 2617 qop=auth response, computed independently of the verifier.
      const ha1 = md5(`pbx-1:wa-sip-bridge:${credentials.password}`);
      const ha2 = md5('INVITE:sip:+1@127.0.0.1');
      return [
        {
          scheme: 'Digest',
          username: '"pbx-1"',
          realm: '"wa-sip-bridge"',
          nonce: `"${n}"`,
          uri: '"sip:+1@127.0.0.1"',
          qop: 'auth',
          nc: '00000001',
          cnonce: '"c"',
          response: `"${md5(`${ha1}:${n}:00000001:c:auth:${ha2}`)}"`,
        },
      ];
    };
    expect(v.verify('INVITE', answer(nonce))).toBe('ok');
    expect(v.verify('INVITE', answer(`${nonce.split('.')[0]}.forged0000000000000000`))).toBe('bad');
    clock.advance(2000);
    expect(v.verify('INVITE', answer(nonce))).toBe('stale');
    expect(v.verify('INVITE', undefined)).toBe('missing');
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
