/**
 * G.711 µ-law/A-law (ITU-T G.711, RFC 3551 §4.5.14) into and out of
 * caller-owned buffers. Decoding is a 256-entry table lookup; encoding uses
 * alawmulaw's per-sample encoder. No allocation per packet.
 *
 * @module
 */
import alawmulaw from 'alawmulaw';

/** The two G.711 laws. */
export type G711Law = 'PCMU' | 'PCMA';

function decodeTable(decodeSample: (b: number) => number): Int16Array {
  const t = new Int16Array(256);
  for (let i = 0; i < 256; i++) t[i] = decodeSample(i);
  return t;
}

const ULAW_DECODE = decodeTable(alawmulaw.mulaw.decodeSample);
const ALAW_DECODE = decodeTable(alawmulaw.alaw.decodeSample);

/** Decode `src` (one byte per sample) into `dst` at `offset`; returns the sample count. */
export function g711Decode(law: G711Law, src: Uint8Array, dst: Int16Array, offset = 0): number {
  const table = law === 'PCMU' ? ULAW_DECODE : ALAW_DECODE;
  const n = Math.min(src.length, dst.length - offset);
  for (let i = 0; i < n; i++) dst[offset + i] = table[src[i] as number] as number;
  return n;
}

/** Encode `count` samples of `src` (from `offset`) into `dst`; returns the byte count. */
export function g711Encode(
  law: G711Law,
  src: Int16Array,
  dst: Uint8Array,
  offset = 0,
  count = src.length - offset,
): number {
  const encode = law === 'PCMU' ? alawmulaw.mulaw.encodeSample : alawmulaw.alaw.encodeSample;
  const n = Math.min(count, dst.length);
  for (let i = 0; i < n; i++) dst[i] = encode(src[offset + i] as number);
  return n;
}
