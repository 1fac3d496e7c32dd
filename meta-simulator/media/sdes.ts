/**
 * SDES-SRTP as Meta's relay speaks it when a number has `srtp_key_exchange_protocol: "SDES"` (M-SET; M-SIP SDES
 * section; meta-calling-api.md §5.1 "SRTP", §5.3 "SIP SDP"): `RTP/SAVP` with an `a=crypto` line (RFC 4568), no
 * STUN, no ICE, no DTLS. Meta's samples redact the crypto line; the suite is the standard
 * `AES_CM_128_HMAC_SHA1_80` (reference doc: "a safe assumption").
 *
 * The SRTP itself is werift's `SrtpSession` (RFC 3711), used here only by the simulator.
 *
 * @module
 */
import { randomBytes, randomInt } from 'node:crypto';
import { ProtectionProfileAes128CmHmacSha1_80, SrtpSession } from 'werift';

/** The one crypto suite Meta's relay offers and accepts (RFC 4568 §6.2.1). */
export const SDES_SUITE = 'AES_CM_128_HMAC_SHA1_80';
/** Master key (16 bytes) + master salt (14 bytes) of `AES_CM_128_HMAC_SHA1_80` (RFC 4568 §6.2.1). */
const KEY_BYTES = 16;
const SALT_BYTES = 14;

/** One parsed `a=crypto` line. */
export interface SdesCrypto {
  /** The line's tag; an answer echoes the tag of the offer line it accepts (RFC 4568 §5.1.2). */
  tag: number;
  suite: string;
  /** Master key followed by master salt (30 bytes for `AES_CM_128_HMAC_SHA1_80`). */
  keySalt: Buffer;
}

/** A fresh master key + salt for `AES_CM_128_HMAC_SHA1_80`. */
export function newSdesKey(): Buffer {
  return randomBytes(KEY_BYTES + SALT_BYTES);
}

/** `a=crypto:<tag> AES_CM_128_HMAC_SHA1_80 inline:<base64 key||salt>` (RFC 4568 §9.1). */
export function cryptoLine(tag: number, keySalt: Buffer): string {
  return `a=crypto:${tag} ${SDES_SUITE} inline:${keySalt.toString('base64')}`;
}

/** Every `a=crypto` line of an SDP; malformed ones are skipped. Lifetime and MKI parameters are ignored. */
export function parseCryptoLines(sdp: string): SdesCrypto[] {
  const out: SdesCrypto[] = [];
  for (const line of sdp.split(/\r?\n/)) {
    const m = /^a=crypto:(\d+)\s+(\S+)\s+inline:([A-Za-z0-9+/=]+)/.exec(line.trim());
    if (!m) continue;
    out.push({ tag: Number(m[1]), suite: m[2] as string, keySalt: Buffer.from(m[3] as string, 'base64') });
  }
  return out;
}

/**
 * The crypto line Meta can use from the other side's SDP: `AES_CM_128_HMAC_SHA1_80` with a 30-byte key||salt, or
 * a reason why there is none.
 */
export function usableCrypto(sdp: string): { ok: true; crypto: SdesCrypto } | { ok: false; details: string } {
  const lines = parseCryptoLines(sdp);
  if (lines.length === 0) return { ok: false, details: 'SDES requires an a=crypto line' };
  const usable = lines.find((c) => c.suite === SDES_SUITE && c.keySalt.length === KEY_BYTES + SALT_BYTES);
  if (!usable) {
    return {
      ok: false,
      details: `No usable a=crypto line: ${SDES_SUITE} with a ${KEY_BYTES + SALT_BYTES}-byte inline key is required, found ${lines.map((c) => c.suite).join(', ')}`,
    };
  }
  return { ok: true, crypto: usable };
}

/** An SRTP session for SDES keys: ours protects what we send, theirs unprotects what we receive. */
export function sdesSrtpSession(local: Buffer, remote: Buffer): SrtpSession {
  return new SrtpSession({
    keys: {
      localMasterKey: local.subarray(0, KEY_BYTES),
      localMasterSalt: local.subarray(KEY_BYTES),
      remoteMasterKey: remote.subarray(0, KEY_BYTES),
      remoteMasterSalt: remote.subarray(KEY_BYTES),
    },
    profile: ProtectionProfileAes128CmHmacSha1_80,
  });
}

/** Options of {@link sdesSdp}. */
export interface SdesSdpOptions {
  /** IPv4 address Meta's relay listens on (`c=`). */
  address: string;
  port: number;
  /** The relay's key||salt. */
  keySalt: Buffer;
  /** Tag of the crypto line (an answer echoes the offer's). */
  tag: number;
  ssrc: number;
  /** Codecs in order, e.g. Opus 111 (+ PCMU/PCMA when `additional_codecs` is on), then telephone-event/8000. */
  codecs: { pt: number; rtpmap: string; fmtp?: string }[];
}

/**
 * Meta's SDES-mode SDP (M-SIP SDES samples, §5.3): `m=audio <port> RTP/SAVP 111 126`, `c=` the relay's address,
 * one `a=crypto`, rtcp-mux, Opus + telephone-event/8000, ptime 20 — and no `a=ice-*`, `a=candidate`,
 * `a=fingerprint` or `a=setup`.
 */
export function sdesSdp(opts: SdesSdpOptions): string {
  const sessionId = randomInt(1, 2 ** 47);
  const pts = opts.codecs.map((c) => c.pt);
  const lines = [
    'v=0',
    `o=- ${sessionId} 2 IN IP4 127.0.0.1`,
    's=-',
    't=0 0',
    `m=audio ${opts.port} RTP/SAVP ${pts.join(' ')}`,
    `c=IN IP4 ${opts.address}`,
    'a=rtcp-mux',
    cryptoLine(opts.tag, opts.keySalt),
    ...opts.codecs.flatMap((c) => [
      `a=rtpmap:${c.pt} ${c.rtpmap}`,
      ...(c.fmtp !== undefined ? [`a=fmtp:${c.pt} ${c.fmtp}`] : []),
    ]),
    'a=ptime:20',
    'a=maxptime:20',
    'a=sendrecv',
    `a=ssrc:${opts.ssrc} cname:WhatsAppTrack1`,
  ];
  return `${lines.join('\r\n')}\r\n`;
}
