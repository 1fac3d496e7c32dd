/**
 * AES-128-GCM (NIST SP 800-38D) for SRTP's `AEAD_AES_128_GCM` (RFC 7714),
 * built on one reused AES-ECB cipher and a table-driven GHASH.
 *
 * Why not `createCipheriv('aes-128-gcm')`: Node cannot re-key an existing
 * cipher with a new IV, and a GCM packet needs a new IV, so every packet paid
 * for a new OpenSSL cipher context (`initiv`: about 12 µs per packet measured
 * on the bench machine, the largest single cost of a passthrough call). Here
 * the key schedule is done once: the counter blocks `J0, inc32(J0), …` of a
 * packet are encrypted in one ECB call (the same trick as AES-CM in srtp.ts),
 * and GHASH runs in JavaScript with Shoup's 8-bit table for the hash key `H`
 * (256 × 16 bytes per key, built once).
 *
 * Only 96-bit IVs and 16-byte tags (all RFC 7714 uses). Cross-checked against
 * Node's own GCM in test/media-worker/webrtc/aes-gcm.test.ts.
 *
 * @module
 */
import { createCipheriv } from 'node:crypto';

/** GCM tag length used by SRTP (RFC 7714 §8). */
export const GCM_TAG_BYTES = 16;

/**
 * Reduction of the 8 bits shifted out of a 128-bit value in GCM's bit-reflected
 * representation: `R8[b]` XORed into the top 32 bits (SP 800-38D §6.3, R = 0xe1 ‖ 0^120).
 */
const R8 = (() => {
  const t = new Uint32Array(256);
  for (let b = 0; b < 256; b++) {
    const z = new Uint32Array([0, 0, 0, b]);
    for (let k = 0; k < 8; k++) shiftRight1(z);
    t[b] = z[0] as number;
  }
  return t;
})();

/** z = z · x in GF(2^128), bit-reflected: shift right one bit, reduce with 0xe1. */
function shiftRight1(z: Uint32Array): void {
  const carry = (z[3] as number) & 1;
  z[3] = ((z[3] as number) >>> 1) | ((z[2] as number) << 31);
  z[2] = ((z[2] as number) >>> 1) | ((z[1] as number) << 31);
  z[1] = ((z[1] as number) >>> 1) | ((z[0] as number) << 31);
  z[0] = ((z[0] as number) >>> 1) ^ (carry ? 0xe1000000 : 0);
}

/** One AES-128-GCM key: encrypt/decrypt with a 12-byte IV and additional data. */
export class AesGcm {
  private readonly ecb: ReturnType<typeof createCipheriv>;
  /** `M[b]` = b · H as four big-endian 32-bit words (index b·4 … b·4+3). */
  private readonly m = new Uint32Array(256 * 4);
  private counterBlocks = Buffer.alloc(16 * 16);
  /** The running GHASH value Y as four big-endian 32-bit words. */
  private y0 = 0;
  private y1 = 0;
  private y2 = 0;
  private y3 = 0;

  constructor(key: Uint8Array) {
    if (key.length !== 16) throw new RangeError('AES-128-GCM key must be 16 bytes');
    this.ecb = createCipheriv('aes-128-ecb', key, null);
    this.ecb.setAutoPadding(false);
    const h = this.ecb.update(Buffer.alloc(16));
    // M[128] = H; M[64] = H·x; … M[1] = H·x^7 (a byte's first bit is the lowest power); then sums.
    const z = new Uint32Array([h.readUInt32BE(0), h.readUInt32BE(4), h.readUInt32BE(8), h.readUInt32BE(12)]);
    for (let i = 128; i >= 1; i >>= 1) {
      this.m.set(z, i * 4);
      shiftRight1(z);
    }
    for (let i = 2; i < 256; i <<= 1) {
      for (let j = 1; j < i; j++) {
        for (let w = 0; w < 4; w++)
          this.m[(i + j) * 4 + w] = (this.m[i * 4 + w] as number) ^ (this.m[j * 4 + w] as number);
      }
    }
  }

  /**
   * Encrypt `data` in place and write the 16-byte tag at `tagOut[0..16)`.
   * `aad` is authenticated, not encrypted (SRTP: the RTP header).
   */
  encrypt(iv: Uint8Array, aad: Uint8Array, data: Uint8Array, tagOut: Uint8Array): void {
    const ks = this.keystream(iv, data.length);
    for (let i = 0; i < data.length; i++) data[i] = (data[i] as number) ^ (ks[16 + i] as number);
    this.tag(ks, aad, data, tagOut);
  }

  /**
   * Check `tag` over `aad` and the ciphertext `data`; when it matches, decrypt
   * `data` in place and return true. On a mismatch `data` is untouched.
   */
  decrypt(iv: Uint8Array, aad: Uint8Array, data: Uint8Array, tag: Uint8Array): boolean {
    if (tag.length !== GCM_TAG_BYTES) return false;
    const ks = this.keystream(iv, data.length);
    const expected = this.scratchTag;
    this.tag(ks, aad, data, expected);
    // Constant time over the 16 bytes (no early exit).
    let diff = 0;
    for (let i = 0; i < GCM_TAG_BYTES; i++) diff |= (expected[i] as number) ^ (tag[i] as number);
    if (diff !== 0) return false;
    for (let i = 0; i < data.length; i++) data[i] = (data[i] as number) ^ (ks[16 + i] as number);
    return true;
  }

  private readonly scratchTag = new Uint8Array(GCM_TAG_BYTES);

  /** E(J0) in bytes 0–15, then the payload keystream E(inc32(J0)), E(inc32²(J0)), … (SP 800-38D §7.1). */
  private keystream(iv: Uint8Array, length: number): Buffer {
    if (iv.length !== 12) throw new RangeError('AES-GCM IV must be 12 bytes');
    const n = 1 + Math.ceil(length / 16);
    if (this.counterBlocks.length < n * 16) this.counterBlocks = Buffer.alloc(n * 16);
    const blocks = this.counterBlocks;
    for (let b = 0; b < n; b++) {
      const o = b * 16;
      blocks.set(iv, o);
      const c = b + 1; // J0 ends in 0x00000001
      blocks[o + 12] = (c >>> 24) & 0xff;
      blocks[o + 13] = (c >>> 16) & 0xff;
      blocks[o + 14] = (c >>> 8) & 0xff;
      blocks[o + 15] = c & 0xff;
    }
    return this.ecb.update(blocks.subarray(0, n * 16));
  }

  /** T = E(J0) XOR GHASH(A ‖ 0* ‖ C ‖ 0* ‖ [len(A)]64 ‖ [len(C)]64). */
  private tag(ks: Uint8Array, aad: Uint8Array, data: Uint8Array, out: Uint8Array): void {
    this.y0 = 0;
    this.y1 = 0;
    this.y2 = 0;
    this.y3 = 0;
    this.absorb(aad);
    this.absorb(data);
    // Lengths in bits, 64 bits each (both well below 2^32 here).
    const aBits = aad.length * 8;
    const cBits = data.length * 8;
    this.block(Math.floor(aBits / 2 ** 32), aBits >>> 0, Math.floor(cBits / 2 ** 32), cBits >>> 0);
    writeWord(out, 0, this.y0 ^ readWord(ks, 0));
    writeWord(out, 4, this.y1 ^ readWord(ks, 4));
    writeWord(out, 8, this.y2 ^ readWord(ks, 8));
    writeWord(out, 12, this.y3 ^ readWord(ks, 12));
  }

  /** GHASH over `bytes`, the last partial block padded with zeros. */
  private absorb(bytes: Uint8Array): void {
    const full = bytes.length & ~15;
    let o = 0;
    for (; o < full; o += 16) {
      this.block(readWord(bytes, o), readWord(bytes, o + 4), readWord(bytes, o + 8), readWord(bytes, o + 12));
    }
    if (o < bytes.length) {
      let w0 = 0;
      let w1 = 0;
      let w2 = 0;
      let w3 = 0;
      for (let k = 0; k < bytes.length - o; k++) {
        const v = (bytes[o + k] as number) << (24 - 8 * (k & 3));
        if (k < 4) w0 |= v;
        else if (k < 8) w1 |= v;
        else if (k < 12) w2 |= v;
        else w3 |= v;
      }
      this.block(w0 >>> 0, w1 >>> 0, w2 >>> 0, w3 >>> 0);
    }
  }

  /** Y = (Y XOR X) · H, Horner over the 16 bytes of X from the last (Shoup's 8-bit table). */
  private block(x0: number, x1: number, x2: number, x3: number): void {
    const m = this.m;
    x0 = (x0 ^ this.y0) >>> 0;
    x1 = (x1 ^ this.y1) >>> 0;
    x2 = (x2 ^ this.y2) >>> 0;
    x3 = (x3 ^ this.y3) >>> 0;
    let i = (x3 & 0xff) * 4;
    let z0 = m[i] as number;
    let z1 = m[i + 1] as number;
    let z2 = m[i + 2] as number;
    let z3 = m[i + 3] as number;
    // Bytes 14 … 0: Z = Z · x^8 (shift right 8, reduce) XOR M[byte]; a word's last byte is its low 8 bits.
    for (let wi = 3; wi >= 0; wi--) {
      const w = wi === 3 ? x3 : wi === 2 ? x2 : wi === 1 ? x1 : x0;
      for (let s = wi === 3 ? 8 : 0; s < 32; s += 8) {
        const rem = z3 & 0xff;
        z3 = (z3 >>> 8) | (z2 << 24);
        z2 = (z2 >>> 8) | (z1 << 24);
        z1 = (z1 >>> 8) | (z0 << 24);
        z0 = (z0 >>> 8) ^ (R8[rem] as number);
        i = ((w >>> s) & 0xff) * 4;
        z0 ^= m[i] as number;
        z1 ^= m[i + 1] as number;
        z2 ^= m[i + 2] as number;
        z3 ^= m[i + 3] as number;
      }
    }
    this.y0 = z0 >>> 0;
    this.y1 = z1 >>> 0;
    this.y2 = z2 >>> 0;
    this.y3 = z3 >>> 0;
  }
}

function readWord(b: Uint8Array, o: number): number {
  return (
    (((b[o] as number) << 24) | ((b[o + 1] as number) << 16) | ((b[o + 2] as number) << 8) | (b[o + 3] as number)) >>> 0
  );
}

function writeWord(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}
