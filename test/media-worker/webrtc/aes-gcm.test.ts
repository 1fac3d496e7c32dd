import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AesGcm } from '#worker/webrtc/aes-gcm.ts';

/** Node's own (OpenSSL) AES-128-GCM: the reference. */
function openssl(key: Buffer, iv: Buffer, aad: Buffer, plain: Buffer) {
  const c = createCipheriv('aes-128-gcm', key, iv, { authTagLength: 16 });
  c.setAAD(aad);
  const data = Buffer.concat([c.update(plain), c.final()]);
  return { data, tag: c.getAuthTag() };
}

describe('AES-128-GCM on a reused ECB cipher and a table GHASH (SP 800-38D)', () => {
  it('reproduces the GCM specification test case 4 (AES-128, 60-byte plaintext, 20-byte AAD)', () => {
    const gcm = new AesGcm(Buffer.from('feffe9928665731c6d6a8f9467308308', 'hex'));
    const data = Buffer.from(
      'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39',
      'hex',
    );
    const tag = Buffer.alloc(16);
    gcm.encrypt(
      Buffer.from('cafebabefacedbaddecaf888', 'hex'),
      Buffer.from('feedfacedeadbeeffeedfacedeadbeefabaddad2', 'hex'),
      data,
      tag,
    );
    expect(data.toString('hex')).toBe(
      '42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091',
    );
    expect(tag.toString('hex')).toBe('5bc94fbc3221a5db94fae95ae7121a47');
  });

  it('matches OpenSSL on random keys, IVs, AAD of 0–40 bytes and payloads of 0–300 bytes, and decrypts back', () => {
    for (let t = 0; t < 600; t++) {
      const key = randomBytes(16);
      const iv = randomBytes(12);
      const aad = randomBytes(t % 41);
      const plain = randomBytes((t * 7) % 301);
      const ref = openssl(key, iv, aad, plain);
      const gcm = new AesGcm(key);
      const data = Buffer.from(plain);
      const tag = Buffer.alloc(16);
      gcm.encrypt(iv, aad, data, tag);
      expect(data.equals(ref.data), `ciphertext, case ${t}`).toBe(true);
      expect(tag.equals(ref.tag), `tag, case ${t}`).toBe(true);
      expect(gcm.decrypt(iv, aad, data, tag)).toBe(true);
      expect(data.equals(plain)).toBe(true);
    }
  });

  it('refuses a flipped bit in the tag, the AAD or the ciphertext and leaves the data untouched', () => {
    const key = randomBytes(16);
    const iv = randomBytes(12);
    const aad = randomBytes(12);
    const { data, tag } = openssl(key, iv, aad, randomBytes(120));
    const gcm = new AesGcm(key);
    const flip = (b: Buffer, i: number) => {
      const c = Buffer.from(b);
      c[i] = (c[i] as number) ^ 1;
      return c;
    };
    expect(gcm.decrypt(iv, aad, Buffer.from(data), flip(tag, 15))).toBe(false);
    expect(gcm.decrypt(iv, flip(aad, 3), Buffer.from(data), tag)).toBe(false);
    const tampered = flip(data, 60);
    const before = Buffer.from(tampered);
    expect(gcm.decrypt(iv, aad, tampered, tag)).toBe(false);
    expect(tampered.equals(before)).toBe(true);
    expect(gcm.decrypt(iv, aad, Buffer.from(data), tag)).toBe(true);
  });
});
