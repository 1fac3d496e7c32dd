/**
 * SRTP (RFC 3711) for the WhatsApp leg's media fast path: the two DTLS-SRTP
 * protection profiles WebRTC negotiates (RFC 5764 §4.1.2),
 * `SRTP_AES128_CM_HMAC_SHA1_80` and `SRTP_AEAD_AES_128_GCM` (RFC 7714).
 *
 * Why not werift's own SRTP: it builds a new cipher and HMAC object and
 * re-parses the header bit by bit for every packet, and it keeps no replay
 * list. Here the AES-CM keystream comes from one reused AES-ECB cipher
 * (the counter blocks are encrypted in one call), the HMAC-SHA1 tag comes
 * from pad states computed once per key (hmac-sha1.ts), the header is read with
 * plain byte arithmetic into a caller-owned {@link RtpView}, and the receiver
 * keeps RFC 3711 §3.3.2's replay window. On the WhatsApp leg RTCP stays with
 * werift (SRTCP is a few packets per second); the SIP leg's SDES-SRTP (RFC 4568)
 * protects its RTCP with {@link SrtpStream.forRtcp} (SRTCP, RFC 3711 §3.4,
 * AES-CM only).
 *
 * Keys come from the DTLS exporter (the master key and salt); the session
 * keys are derived here (RFC 3711 §4.3.1, key derivation rate 0).
 *
 * @module
 */
import { createCipheriv, createDecipheriv, timingSafeEqual } from 'node:crypto';
import { RTP_HEADER_BYTES, type RtpView } from '../media/rtp.ts';
import { HmacSha1 } from './hmac-sha1.ts';

/** DTLS-SRTP protection profile (IANA "DTLS-SRTP Protection Profiles" value in brackets). */
export type SrtpProfile =
  /** [0x0001] AES-128 counter mode, HMAC-SHA1 80-bit tag (RFC 3711, RFC 5764). */
  | 'AES_CM_128_HMAC_SHA1_80'
  /** [0x0007] AES-128-GCM with a 16-byte tag (RFC 7714). */
  | 'AEAD_AES_128_GCM';

/** The profile for an IANA DTLS-SRTP protection profile number, or undefined if unsupported. */
export function srtpProfileFromId(id: number): SrtpProfile | undefined {
  if (id === 0x0001) return 'AES_CM_128_HMAC_SHA1_80';
  if (id === 0x0007) return 'AEAD_AES_128_GCM';
  return undefined;
}

/** Master key and salt lengths of a profile (RFC 5764 §4.1.2, RFC 7714 §12). */
export function srtpMasterLengths(profile: SrtpProfile): { key: number; salt: number } {
  return profile === 'AEAD_AES_128_GCM' ? { key: 16, salt: 12 } : { key: 16, salt: 14 };
}

/** Session keys of one direction (RFC 3711 §4.3). */
export interface SrtpSessionKeys {
  encryptionKey: Buffer;
  /** 14 bytes for AES-CM, 12 for GCM. */
  salt: Buffer;
  /** HMAC-SHA1 key (AES-CM only), 20 bytes. */
  authKey: Buffer | undefined;
}

/**
 * RFC 3711 §4.3.1 key derivation with kdr = 0 (the only rate DTLS-SRTP uses):
 * `x = (label << 48) XOR master_salt`, keystream = AES-CM(master_key, x · 2^16).
 * GCM's 96-bit master salt is extended with zero bytes to 112 bits (RFC 7714
 * §11 uses the same PRF; libsrtp does the same).
 */
export function deriveSrtpSessionKeys(profile: SrtpProfile, masterKey: Buffer, masterSalt: Buffer): SrtpSessionKeys {
  return deriveSessionKeys(profile, masterKey, masterSalt, 0x00);
}

/** RFC 3711 §4.3.2: the SRTCP session keys take labels 0x03 (encryption), 0x04 (auth) and 0x05 (salt). */
export function deriveSrtcpSessionKeys(profile: SrtpProfile, masterKey: Buffer, masterSalt: Buffer): SrtpSessionKeys {
  return deriveSessionKeys(profile, masterKey, masterSalt, 0x03);
}

function deriveSessionKeys(
  profile: SrtpProfile,
  masterKey: Buffer,
  masterSalt: Buffer,
  firstLabel: 0x00 | 0x03,
): SrtpSessionKeys {
  const lengths = srtpMasterLengths(profile);
  if (masterKey.length !== lengths.key) throw new RangeError(`SRTP master key must be ${lengths.key} bytes`);
  if (masterSalt.length !== lengths.salt) throw new RangeError(`SRTP master salt must be ${lengths.salt} bytes`);
  const prf = (label: number, length: number): Buffer => {
    const blocks = Math.ceil(length / 16);
    const input = Buffer.alloc(blocks * 16);
    for (let b = 0; b < blocks; b++) {
      const block = input.subarray(b * 16, b * 16 + 16);
      masterSalt.copy(block, 0); // 14 (or 12) bytes, then two zero counter bytes
      block[7] = (block[7] as number) ^ label; // label << 48 lands in byte 7 of the 112-bit value
      block[14] = (b >> 8) & 0xff;
      block[15] = b & 0xff;
    }
    const ecb = createCipheriv('aes-128-ecb', masterKey, null);
    ecb.setAutoPadding(false);
    return Buffer.concat([ecb.update(input), ecb.final()]).subarray(0, length);
  };
  return {
    encryptionKey: prf(firstLabel, 16),
    salt: prf(firstLabel + 2, lengths.salt),
    authKey: profile === 'AES_CM_128_HMAC_SHA1_80' ? prf(firstLabel + 1, 20) : undefined,
  };
}

/** Why {@link SrtpStream.unprotect} refused a packet. */
export type SrtpDropReason = 'malformed' | 'authentication' | 'replay';

/** Per-SSRC receive state: rollover counter, highest sequence, replay window. */
interface ReceiveState {
  roc: number;
  /** Highest sequence number authenticated so far (s_l). */
  highestSeq: number;
  /** Highest packet index (ROC · 65536 + SEQ) authenticated so far. */
  highestIndex: number;
  /** Slot `i & 127` holds index `i` once that packet was accepted. */
  seen: Float64Array;
}

/** RFC 3711 §3.3.2: packets more than this many indexes behind the highest are refused. */
const REPLAY_WINDOW = 64;
const AES_CM_TAG = 10;
const GCM_TAG = 16;
/** RFC 3711 §3.4: the E flag and the 31-bit SRTCP index follow the encrypted portion. */
const SRTCP_INDEX_BYTES = 4;
/** RTCP header bytes sent in the clear (V/P/RC, PT, length, sender SSRC). */
const RTCP_CLEAR_BYTES = 8;

/** Per-SSRC SRTCP receive state: highest index and a replay window like SRTP's. */
interface RtcpReceiveState {
  highestIndex: number;
  seen: Float64Array;
}

/**
 * One direction of an SRTP session: use {@link SrtpStream.sender} to protect
 * what we send and {@link SrtpStream.receiver} to unprotect what arrives.
 */
export class SrtpStream {
  /** Bytes appended to every protected packet. */
  readonly tagLength: number;
  private readonly keys: SrtpSessionKeys;
  /** AES-CM: one ECB cipher, reused for every packet's counter blocks. */
  private readonly ecb: ReturnType<typeof createCipheriv> | undefined;
  /** AES-CM: the auth key's HMAC-SHA1 with its pad states computed once (see hmac-sha1.ts). */
  private readonly hmac: HmacSha1 | undefined;
  private readonly tagScratch = Buffer.alloc(AES_CM_TAG);
  private counterBlocks = Buffer.alloc(16 * 16);
  private readonly rocBytes = Buffer.alloc(4);
  private readonly gcmIv = Buffer.alloc(12);
  /** Send side: ROC and last sequence per SSRC. */
  private readonly sendState = new Map<number, { roc: number; lastSeq: number }>();
  private readonly receiveState = new Map<number, ReceiveState>();
  /** SRTCP: the next index we send (31 bits) and the receive state per SSRC. */
  private rtcpIndex = 0;
  private readonly rtcpReceiveState = new Map<number, RtcpReceiveState>();

  private constructor(
    readonly profile: SrtpProfile,
    masterKey: Buffer,
    masterSalt: Buffer,
    rtcp = false,
  ) {
    this.keys = (rtcp ? deriveSrtcpSessionKeys : deriveSrtpSessionKeys)(profile, masterKey, masterSalt);
    if (profile === 'AES_CM_128_HMAC_SHA1_80') {
      this.tagLength = AES_CM_TAG;
      this.ecb = createCipheriv('aes-128-ecb', this.keys.encryptionKey, null);
      this.ecb.setAutoPadding(false);
      this.hmac = new HmacSha1(this.keys.authKey as Buffer);
    } else {
      this.tagLength = GCM_TAG;
    }
  }

  /** The stream that protects packets we send (keys: our DTLS side's master key and salt). */
  static sender(profile: SrtpProfile, masterKey: Buffer, masterSalt: Buffer): SrtpStream {
    return new SrtpStream(profile, masterKey, masterSalt);
  }

  /** The stream that unprotects packets the peer sends (keys: the peer's master key and salt). */
  static receiver(profile: SrtpProfile, masterKey: Buffer, masterSalt: Buffer): SrtpStream {
    return new SrtpStream(profile, masterKey, masterSalt);
  }

  /**
   * The SRTCP stream of a master key and salt (RFC 3711 §3.4, session keys of §4.3.2): use
   * {@link SrtpStream.protectRtcp} on one of ours and {@link SrtpStream.unprotectRtcp} on the
   * peer's. AES-CM only (SDES offers no GCM here).
   */
  static forRtcp(profile: SrtpProfile, masterKey: Buffer, masterSalt: Buffer): SrtpStream {
    if (profile !== 'AES_CM_128_HMAC_SHA1_80')
      throw new RangeError(`SRTCP is implemented for AES-CM only, not ${profile}`);
    return new SrtpStream(profile, masterKey, masterSalt, true);
  }

  /**
   * Protect a compound RTCP packet (RFC 3711 §3.4): the first 8 bytes stay clear, the rest is
   * encrypted with the SRTCP index as the packet index, then `E=1 ‖ index` and the 80-bit tag over
   * all of it are appended. Returns a new buffer.
   */
  protectRtcp(rtcp: Uint8Array): Buffer {
    const ssrc = readU32(rtcp, 4);
    const index = this.rtcpIndex;
    this.rtcpIndex = (index + 1) & 0x7fff_ffff;
    const authLength = rtcp.length + SRTCP_INDEX_BYTES;
    const out = Buffer.allocUnsafe(authLength + AES_CM_TAG);
    out.set(rtcp, 0);
    this.xorKeystream(out.subarray(RTCP_CLEAR_BYTES, rtcp.length), ssrc, index >>> 16, index & 0xffff);
    out.writeUInt32BE((0x8000_0000 | index) >>> 0, rtcp.length);
    (this.hmac as HmacSha1).mac(out.subarray(0, authLength), EMPTY, out.subarray(authLength, authLength + AES_CM_TAG));
    return out;
  }

  /**
   * Authenticate, replay-check and decrypt an SRTCP packet (RFC 3711 §3.4). On success returns the
   * plain compound RTCP packet (a view into `srtcp`, decrypted in place); otherwise why it was
   * dropped, with `srtcp` untouched.
   */
  unprotectRtcp(srtcp: Buffer): Buffer | SrtpDropReason {
    const authLength = srtcp.length - AES_CM_TAG;
    const rtcpLength = authLength - SRTCP_INDEX_BYTES;
    if (rtcpLength < RTCP_CLEAR_BYTES || (srtcp[0] as number) >> 6 !== 2) return 'malformed';
    const word = readU32(srtcp, rtcpLength);
    const encrypted = word >>> 31 === 1;
    const index = word & 0x7fff_ffff;
    const ssrc = readU32(srtcp, 4);
    const st = this.rtcpReceiveState.get(ssrc);
    if (st && (index <= st.highestIndex - REPLAY_WINDOW || st.seen[index & 127] === index)) return 'replay';
    const tag = this.tagScratch;
    (this.hmac as HmacSha1).mac(srtcp.subarray(0, authLength), EMPTY, tag);
    if (!timingSafeEqual(tag, srtcp.subarray(authLength))) return 'authentication';
    if (encrypted) {
      this.xorKeystream(srtcp.subarray(RTCP_CLEAR_BYTES, rtcpLength), ssrc, index >>> 16, index & 0xffff);
    }
    if (!st) {
      const seen = new Float64Array(128).fill(-1);
      seen[index & 127] = index;
      this.rtcpReceiveState.set(ssrc, { highestIndex: index, seen });
    } else {
      if (index > st.highestIndex) st.highestIndex = index;
      st.seen[index & 127] = index;
    }
    return srtcp.subarray(0, rtcpLength);
  }

  /**
   * Protect a plain RTP packet whose header (incl. CSRCs/extension) is
   * `headerLength` bytes. Returns a new buffer: header, encrypted payload, tag.
   * The rollover counter follows the sequence numbers (RFC 3711 §3.3.1).
   */
  protect(rtp: Uint8Array, headerLength: number = RTP_HEADER_BYTES): Buffer {
    const ssrc = readU32(rtp, 8);
    const seq = ((rtp[2] as number) << 8) | (rtp[3] as number);
    let st = this.sendState.get(ssrc);
    if (!st) {
      st = { roc: 0, lastSeq: seq };
      this.sendState.set(ssrc, st);
    } else {
      if (seq < st.lastSeq && st.lastSeq - seq > 0x8000) st.roc = (st.roc + 1) >>> 0;
      st.lastSeq = seq;
    }
    const out = Buffer.allocUnsafe(rtp.length + this.tagLength);
    out.set(rtp.subarray(0, headerLength), 0);
    const payload = rtp.subarray(headerLength);
    if (this.profile === 'AEAD_AES_128_GCM') {
      const cipher = createCipheriv('aes-128-gcm', this.keys.encryptionKey, this.gcmNonce(ssrc, st.roc, seq), {
        authTagLength: GCM_TAG,
      });
      cipher.setAAD(out.subarray(0, headerLength));
      const enc = cipher.update(payload);
      cipher.final();
      enc.copy(out, headerLength);
      cipher.getAuthTag().copy(out, headerLength + payload.length);
      return out;
    }
    out.set(payload, headerLength);
    this.xorKeystream(out.subarray(headerLength, headerLength + payload.length), ssrc, st.roc, seq);
    this.hmacTag(out.subarray(0, rtp.length), st.roc, out.subarray(rtp.length, rtp.length + AES_CM_TAG));
    return out;
  }

  /**
   * Authenticate, replay-check and decrypt an SRTP packet. On success the
   * payload is decrypted *in place* and `out` describes it (its payload is a
   * view into `srtp`); otherwise returns why it was dropped and `srtp` is
   * untouched.
   */
  unprotect(srtp: Buffer, out: RtpView): SrtpDropReason | undefined {
    const len = srtp.length - this.tagLength;
    if (len < RTP_HEADER_BYTES) return 'malformed';
    const b0 = srtp[0] as number;
    if (b0 >> 6 !== 2) return 'malformed';
    let headerLength = RTP_HEADER_BYTES + (b0 & 0x0f) * 4;
    if (b0 & 0x10) {
      if (headerLength + 4 > len) return 'malformed';
      headerLength += 4 + (((srtp[headerLength + 2] as number) << 8) | (srtp[headerLength + 3] as number)) * 4;
    }
    if (headerLength > len) return 'malformed';
    const seq = ((srtp[2] as number) << 8) | (srtp[3] as number);
    const ssrc = readU32(srtp, 8);

    let st = this.receiveState.get(ssrc);
    // RFC 3711 §3.3.1: guess the packet's ROC from the highest sequence seen.
    let roc = 0;
    if (st) {
      roc = st.roc;
      if (st.highestSeq < 0x8000) {
        if (seq - st.highestSeq > 0x8000) roc = st.roc - 1;
      } else if (st.highestSeq - 0x8000 > seq) {
        roc = st.roc + 1;
      }
      if (roc < 0) return 'replay';
      const index = roc * 0x10000 + seq;
      if (index <= st.highestIndex - REPLAY_WINDOW) return 'replay';
      if (st.seen[index & 127] === index) return 'replay';
    }

    if (this.profile === 'AEAD_AES_128_GCM') {
      const decipher = createDecipheriv('aes-128-gcm', this.keys.encryptionKey, this.gcmNonce(ssrc, roc, seq), {
        authTagLength: GCM_TAG,
      });
      decipher.setAAD(srtp.subarray(0, headerLength));
      decipher.setAuthTag(srtp.subarray(len));
      const plain = decipher.update(srtp.subarray(headerLength, len));
      try {
        decipher.final();
      } catch {
        return 'authentication';
      }
      plain.copy(srtp, headerLength);
    } else {
      const tag = this.tagScratch;
      this.hmacTag(srtp.subarray(0, len), roc, tag);
      if (!timingSafeEqual(tag, srtp.subarray(len))) return 'authentication';
      this.xorKeystream(srtp.subarray(headerLength, len), ssrc, roc, seq);
    }

    // Authenticated: only now may the state move (§3.3.1, last paragraph).
    const index = roc * 0x10000 + seq;
    if (!st) {
      st = { roc, highestSeq: seq, highestIndex: index, seen: new Float64Array(128).fill(-1) };
      this.receiveState.set(ssrc, st);
    } else if (index > st.highestIndex) {
      st.roc = roc;
      st.highestSeq = seq;
      st.highestIndex = index;
    }
    st.seen[index & 127] = index;

    let end = len;
    if (b0 & 0x20) {
      const pad = srtp[len - 1] as number;
      if (pad === 0 || headerLength + pad > len) return 'malformed';
      end -= pad;
    }
    const b1 = srtp[1] as number;
    out.payloadType = b1 & 0x7f;
    out.marker = (b1 & 0x80) !== 0;
    out.sequenceNumber = seq;
    out.timestamp = readU32(srtp, 4);
    out.ssrc = ssrc;
    out.payload = srtp.subarray(headerLength, end);
    return undefined;
  }

  /**
   * AES-CM (RFC 3711 §4.1.1): IV = (salt · 2^16) XOR (SSRC · 2^64) XOR
   * (index · 2^16); the keystream is AES(IV), AES(IV+1), … — all counter blocks
   * of a packet go through the reused ECB cipher in one call.
   */
  private xorKeystream(data: Uint8Array, ssrc: number, roc: number, seq: number): void {
    const n = Math.ceil(data.length / 16);
    if (n === 0) return;
    if (this.counterBlocks.length < n * 16) this.counterBlocks = Buffer.alloc(n * 16);
    const blocks = this.counterBlocks;
    const salt = this.keys.salt;
    // Block 0, then copy it and set the 16-bit block counter.
    for (let i = 0; i < 14; i++) blocks[i] = salt[i] as number;
    blocks[14] = 0;
    blocks[15] = 0;
    blocks[4] = (blocks[4] as number) ^ (ssrc >>> 24);
    blocks[5] = (blocks[5] as number) ^ ((ssrc >>> 16) & 0xff);
    blocks[6] = (blocks[6] as number) ^ ((ssrc >>> 8) & 0xff);
    blocks[7] = (blocks[7] as number) ^ (ssrc & 0xff);
    blocks[8] = (blocks[8] as number) ^ (roc >>> 24);
    blocks[9] = (blocks[9] as number) ^ ((roc >>> 16) & 0xff);
    blocks[10] = (blocks[10] as number) ^ ((roc >>> 8) & 0xff);
    blocks[11] = (blocks[11] as number) ^ (roc & 0xff);
    blocks[12] = (blocks[12] as number) ^ (seq >>> 8);
    blocks[13] = (blocks[13] as number) ^ (seq & 0xff);
    for (let b = 1; b < n; b++) {
      blocks.copy(blocks, b * 16, 0, 14);
      blocks[b * 16 + 14] = (b >> 8) & 0xff;
      blocks[b * 16 + 15] = b & 0xff;
    }
    const ks = (this.ecb as ReturnType<typeof createCipheriv>).update(blocks.subarray(0, n * 16));
    for (let i = 0; i < data.length; i++) data[i] = (data[i] as number) ^ (ks[i] as number);
  }

  /** RFC 3711 §4.2: HMAC-SHA1 over the authenticated portion ‖ ROC, truncated to the 80-bit tag in `out`. */
  private hmacTag(authenticated: Uint8Array, roc: number, out: Uint8Array): void {
    this.rocBytes.writeUInt32BE(roc >>> 0, 0);
    (this.hmac as HmacSha1).mac(authenticated, this.rocBytes, out);
  }

  /** RFC 7714 §8.1: IV = (0x0000 ‖ SSRC ‖ ROC ‖ SEQ) XOR salt. */
  private gcmNonce(ssrc: number, roc: number, seq: number): Buffer {
    const iv = this.gcmIv;
    iv.writeUInt16BE(0, 0);
    iv.writeUInt32BE(ssrc >>> 0, 2);
    iv.writeUInt32BE(roc >>> 0, 6);
    iv.writeUInt16BE(seq, 10);
    const salt = this.keys.salt;
    for (let i = 0; i < 12; i++) iv[i] = (iv[i] as number) ^ (salt[i] as number);
    return iv;
  }
}

const EMPTY = new Uint8Array(0);

function readU32(b: Uint8Array, o: number): number {
  return (
    (((b[o] as number) << 24) | ((b[o + 1] as number) << 16) | ((b[o + 2] as number) << 8) | (b[o + 3] as number)) >>> 0
  );
}
