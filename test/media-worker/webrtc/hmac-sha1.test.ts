import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HmacSha1 } from '#worker/webrtc/hmac-sha1.ts';

describe('HMAC-SHA1 with precomputed pad states (RFC 2104)', () => {
  it('reproduces RFC 2202 test case 2 ("Jefe")', () => {
    const out = Buffer.alloc(20);
    new HmacSha1(Buffer.from('Jefe')).mac(Buffer.from('what do ya want '), Buffer.from('for nothing?'), out);
    expect(out.toString('hex')).toBe('effcdf6ae5eb2fa2d27416d5f184df9c259a7c79');
  });

  it('matches createHmac on random keys (1–100 bytes), messages of 0–300 bytes and trailers of 0–6 bytes', () => {
    for (let t = 0; t < 1500; t++) {
      const key = randomBytes([20, 1, 63, 64, 65, 100][t % 6] as number);
      const data = randomBytes(t % 301);
      const trailer = randomBytes(t % 7);
      const hmac = new HmacSha1(key);
      const out = Buffer.alloc(20);
      hmac.mac(data, trailer, out);
      expect(out.toString('hex'), `case ${t}`).toBe(createHmac('sha1', key).update(data).update(trailer).digest('hex'));
      // The same key again (scratch state reused): still the same MAC.
      const again = Buffer.alloc(20);
      hmac.mac(data, trailer, again);
      expect(again.equals(out)).toBe(true);
    }
  });

  it('writes only as many bytes as the output holds (SRTP: the 80-bit tag)', () => {
    const key = randomBytes(20);
    const data = randomBytes(120);
    const roc = Buffer.from([0, 0, 0, 1]);
    const tag = Buffer.alloc(10);
    new HmacSha1(key).mac(data, roc, tag);
    expect(tag.equals(createHmac('sha1', key).update(data).update(roc).digest().subarray(0, 10))).toBe(true);
  });
});
