/**
 * HMAC-SHA1 (RFC 2104, FIPS 180-4) for SRTP's authentication tag (RFC 3711
 * §4.2), with the key's inner and outer pad states computed once.
 *
 * Why not `createHmac('sha1', key)` per packet: each call builds a new
 * OpenSSL context, hashes the 64-byte ipad/opad blocks again and allocates
 * the digest; for a ~120-byte RTP packet that is several times the cost of
 * the four SHA-1 blocks the MAC actually needs. (Node's `hash.copy()` of
 * precomputed pad states was measured too: slower than `createHmac`, since it
 * is two native objects per packet.) Here the ipad/opad states are kept as
 * numbers, each packet runs three or so inner blocks and one outer block in
 * JavaScript, and nothing is allocated. Cross-checked against `createHmac`
 * in test/media-worker/webrtc/hmac-sha1.test.ts.
 *
 * @module
 */
import { createHash } from 'node:crypto';

const BLOCK = 64;
const DIGEST = 20;
const INIT = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0];

/** One HMAC-SHA1 key. */
export class HmacSha1 {
  private readonly innerState = new Int32Array(5);
  private readonly outerState = new Int32Array(5);
  private readonly state = new Int32Array(5);
  private readonly w = new Int32Array(80);
  private scratch = new Uint8Array(4 * BLOCK);
  private readonly outerBlock = new Uint8Array(BLOCK);

  constructor(key: Uint8Array) {
    const k = new Uint8Array(BLOCK);
    k.set(key.length > BLOCK ? createHash('sha1').update(key).digest() : key);
    const pad = new Uint8Array(BLOCK);
    for (const [xor, target] of [
      [0x36, this.innerState],
      [0x5c, this.outerState],
    ] as const) {
      for (let i = 0; i < BLOCK; i++) pad[i] = (k[i] as number) ^ xor;
      this.state.set(INIT);
      this.compress(pad, 0);
      target.set(this.state);
    }
    // The outer message is always the 20-byte inner digest: its padding and length never change.
    this.outerBlock[DIGEST] = 0x80;
    writeLength(this.outerBlock, BLOCK - 8, (BLOCK + DIGEST) * 8);
  }

  /**
   * HMAC(key, `data` ‖ `trailer`), its first `out.length` (≤ 20) bytes written to `out`.
   * SRTP: `data` is the authenticated portion, `trailer` the 4-byte ROC.
   */
  mac(data: Uint8Array, trailer: Uint8Array, out: Uint8Array): void {
    const len = data.length + trailer.length;
    // Message, 0x80, zeros, 64-bit bit length: a whole number of blocks.
    const padded = Math.ceil((len + 9) / BLOCK) * BLOCK;
    if (this.scratch.length < padded) this.scratch = new Uint8Array(padded);
    const m = this.scratch;
    m.set(data, 0);
    m.set(trailer, data.length);
    m[len] = 0x80;
    m.fill(0, len + 1, padded - 8);
    writeLength(m, padded - 8, (BLOCK + len) * 8);
    this.state.set(this.innerState);
    for (let o = 0; o < padded; o += BLOCK) this.compress(m, o);
    const ob = this.outerBlock;
    for (let i = 0; i < 5; i++) writeWord(ob, i * 4, this.state[i] as number);
    this.state.set(this.outerState);
    this.compress(ob, 0);
    const n = Math.min(out.length, DIGEST);
    for (let i = 0; i < n; i++) out[i] = ((this.state[i >> 2] as number) >>> (24 - 8 * (i & 3))) & 0xff;
  }

  /** FIPS 180-4 §6.1.2: one 64-byte block at `b[o..o+64)` into {@link state}. */
  private compress(b: Uint8Array, o: number): void {
    const w = this.w;
    for (let t = 0; t < 16; t++) {
      const i = o + t * 4;
      w[t] =
        ((b[i] as number) << 24) | ((b[i + 1] as number) << 16) | ((b[i + 2] as number) << 8) | (b[i + 3] as number);
    }
    for (let t = 16; t < 80; t++) {
      const x = (w[t - 3] as number) ^ (w[t - 8] as number) ^ (w[t - 14] as number) ^ (w[t - 16] as number);
      w[t] = (x << 1) | (x >>> 31);
    }
    const s = this.state;
    let a = s[0] as number;
    let bb = s[1] as number;
    let c = s[2] as number;
    let d = s[3] as number;
    let e = s[4] as number;
    let t = 0;
    for (; t < 20; t++) {
      const tmp = (((a << 5) | (a >>> 27)) + ((bb & c) | (~bb & d)) + e + 0x5a827999 + (w[t] as number)) | 0;
      e = d;
      d = c;
      c = (bb << 30) | (bb >>> 2);
      bb = a;
      a = tmp;
    }
    for (; t < 40; t++) {
      const tmp = (((a << 5) | (a >>> 27)) + (bb ^ c ^ d) + e + 0x6ed9eba1 + (w[t] as number)) | 0;
      e = d;
      d = c;
      c = (bb << 30) | (bb >>> 2);
      bb = a;
      a = tmp;
    }
    for (; t < 60; t++) {
      const tmp = (((a << 5) | (a >>> 27)) + ((bb & c) | (bb & d) | (c & d)) + e + 0x8f1bbcdc + (w[t] as number)) | 0;
      e = d;
      d = c;
      c = (bb << 30) | (bb >>> 2);
      bb = a;
      a = tmp;
    }
    for (; t < 80; t++) {
      const tmp = (((a << 5) | (a >>> 27)) + (bb ^ c ^ d) + e + 0xca62c1d6 + (w[t] as number)) | 0;
      e = d;
      d = c;
      c = (bb << 30) | (bb >>> 2);
      bb = a;
      a = tmp;
    }
    s[0] = ((s[0] as number) + a) | 0;
    s[1] = ((s[1] as number) + bb) | 0;
    s[2] = ((s[2] as number) + c) | 0;
    s[3] = ((s[3] as number) + d) | 0;
    s[4] = ((s[4] as number) + e) | 0;
  }
}

/** A message bit length below 2^53 as the 64-bit big-endian field at `b[o..o+8)`. */
function writeLength(b: Uint8Array, o: number, bits: number): void {
  writeWord(b, o, Math.floor(bits / 2 ** 32));
  writeWord(b, o + 4, bits >>> 0);
}

function writeWord(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}
