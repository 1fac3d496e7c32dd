/**
 * SDES (RFC 4568) for the SIP leg: the `a=crypto` attribute that carries an SRTP master key and
 * salt in the SDP, read and written through sdp-transform. One suite, `AES_CM_128_HMAC_SHA1_80`
 * (RFC 4568 §6.2.1: a 16-byte key and a 14-byte salt, base64 in `inline:`), no MKI, no lifetime
 * shorter than a call, no session parameters that weaken or change SRTP (§6.3).
 *
 * This module imports nothing of the project, so `sip/` (re-INVITE answers) and `media/` (the SIP
 * leg's negotiation) share it.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';

/** The one crypto suite the SIP leg offers and accepts (RFC 4568 §6.2.1). */
export const SDES_SUITE = 'AES_CM_128_HMAC_SHA1_80';

/** Master key and master salt bytes of {@link SDES_SUITE}. */
export const SDES_KEY_BYTES = 16;
export const SDES_SALT_BYTES = 14;

/**
 * SRTP on the SIP leg (setting `SIP_SRTP`): `off` plain RTP only (an `RTP/SAVP` offer is refused
 * 488); `optional` best effort (we offer `RTP/AVP` with `a=crypto`, and take SRTP or plain RTP,
 * whichever the PBX picks); `required` SRTP only (we offer `RTP/SAVP`; an answer or offer without a
 * usable key fails the call, 488 when the PBX offered).
 */
export type SipSrtpPolicy = 'off' | 'optional' | 'required';

/** One side's SDES key: the crypto line's tag and the master key ‖ salt (30 bytes, base64). */
export interface SdesKey {
  /** The `a=crypto` tag; an answer echoes the tag of the offer's line it accepts (RFC 4568 §5.1.2). */
  tag: number;
  /** Master key ‖ master salt, base64 (40 characters). Never log it. */
  keySalt: string;
}

/**
 * The SDES negotiation failed: the far end's SDP carries no usable key where one is required, a
 * key we cannot use, or SRTP where we do not speak it. A PBX's offer is refused with
 * {@link SdesNegotiationError.sipStatus} (488 Not Acceptable Here, RFC 3261 §13.3.1.4 / RFC 4568
 * §7.1.2); an unusable answer ends the call.
 */
export class SdesNegotiationError extends Error {
  override readonly name = 'SdesNegotiationError';
  /** The SIP status a refused offer gets. */
  readonly sipStatus = 488;

  /**
   * @param kind - whose SDP failed: the PBX's `offer` or its `answer`
   * @param problem - what is wrong, without key material
   */
  constructor(
    readonly kind: 'offer' | 'answer',
    readonly problem: string,
  ) {
    super(`SDES-SRTP: the SIP ${kind} is not acceptable: ${problem}`);
  }
}

/** A fresh master key ‖ salt from the CSPRNG, base64, for one call. */
export function newSdesKeySalt(): string {
  return randomBytes(SDES_KEY_BYTES + SDES_SALT_BYTES).toString('base64');
}

/** One `a=crypto` line (RFC 4568 §9.1): `a=crypto:<tag> <suite> <key-params> [<session-params>…]`. */
export interface CryptoLine {
  tag: number;
  suite: string;
  /** `inline:<key‖salt>[|lifetime][|MKI:length]`, `;`-separated when there are several. */
  keyParams: string;
  sessionParams: string[];
}

/**
 * The `a=crypto` lines of the first audio stream of `sdp`. Read from the text because
 * sdp-transform's grammar keeps only the first session parameter of a line (its `sessionConfig` is
 * one `\S*`), and an `UNENCRYPTED_SRTP` after a `WSH=` must not go unseen.
 */
export function audioCryptoLines(sdp: string): CryptoLine[] {
  const lines = sdp.split(/\r?\n/);
  const start = lines.findIndex((l) => l.startsWith('m=audio'));
  if (start < 0) return [];
  const out: CryptoLine[] = [];
  for (let i = start + 1; i < lines.length && !(lines[i] as string).startsWith('m='); i++) {
    const m = /^a=crypto:(\d+)\s+(\S+)\s+(\S+)((?:\s+\S+)*)\s*$/.exec(lines[i] as string);
    if (!m) continue;
    out.push({
      tag: Number(m[1]),
      suite: m[2] as string,
      keyParams: m[3] as string,
      sessionParams: (m[4] as string).split(/\s+/).filter((p) => p !== ''),
    });
  }
  return out;
}

/** `a=crypto:<tag> AES_CM_128_HMAC_SHA1_80 inline:<key‖salt>` for our key (RFC 4568 §9.1). */
export function cryptoAttributeLine(key: SdesKey): string {
  return `a=crypto:${key.tag} ${SDES_SUITE} inline:${key.keySalt}`;
}

/** `RTP/SAVP` or `RTP/SAVPF`: the m-line's profile says SRTP (RFC 3711 §12). */
export function isSecureProfile(protocol: string | undefined): boolean {
  return /^RTP\/SAVPF?$/i.test(protocol ?? '');
}

/** 30 bytes in base64 are 40 characters without padding. */
const KEY_SALT_BASE64 = /^[A-Za-z0-9+/]{40}$/;

/**
 * Why one `a=crypto` line cannot be used, or undefined when it can (RFC 4568 §6.1 key-params,
 * §6.3 session parameters).
 */
export function cryptoProblem(c: CryptoLine): string | undefined {
  if (c.suite !== SDES_SUITE) return `suite ${c.suite} (only ${SDES_SUITE})`;
  const keyParams = c.keyParams.split(';');
  // §6.1: several key-params need an MKI to tell them apart; we use none.
  if (keyParams.length !== 1) return 'several keys (MKI is not supported)';
  const m = /^inline:([^|]*)((?:\|[^|]*)*)$/.exec(keyParams[0] as string);
  if (!m) return 'the key is not inline:';
  if (!KEY_SALT_BASE64.test(m[1] as string)) {
    return `the key is not ${SDES_KEY_BYTES}+${SDES_SALT_BYTES} bytes of base64`;
  }
  for (const part of (m[2] as string).split('|').slice(1)) {
    if (part.includes(':')) return 'an MKI (not supported)';
    // A lifetime (2^n or a number) is fine: a call never sends 2^31 packets.
    if (!/^(?:2\^\d+|\d+)$/.test(part)) return `an unknown key parameter "${part}"`;
  }
  for (const param of c.sessionParams) {
    // §6.3.7: a window size hint at least our 64-packet replay window is harmless.
    const wsh = /^WSH=(\d+)$/.exec(param);
    if (wsh && Number(wsh[1]) >= 64) continue;
    // UNENCRYPTED_SRTP/SRTCP, UNAUTHENTICATED_SRTP, KDR, FEC_ORDER, FEC_KEY: not what we do.
    return `the session parameter ${param.split('=')[0]} (not supported)`;
  }
  return undefined;
}

/**
 * The first usable crypto line of a PBX's offer (RFC 4568 §7.1.1: the answerer picks one), or the
 * problems of each line when none is usable.
 */
export function pickOfferedCrypto(lines: readonly CryptoLine[]): { key: SdesKey } | { problems: string[] } {
  const problems: string[] = [];
  for (const c of lines) {
    const problem = cryptoProblem(c);
    if (problem === undefined) return { key: { tag: c.tag, keySalt: inlineKey(c) } };
    problems.push(`a=crypto:${c.tag} ${problem}`);
  }
  return { problems: problems.length > 0 ? problems : ['no a=crypto line'] };
}

/**
 * The PBX's key from its answer to our offer with tag `offeredTag` (RFC 4568 §7.1.3: one line,
 * with the tag of the line it accepted).
 *
 * @throws {@link SdesNegotiationError} when the answer carries no usable key for our line
 */
export function answeredCrypto(lines: readonly CryptoLine[], offeredTag: number): SdesKey {
  if (lines.length === 0) throw new SdesNegotiationError('answer', 'no a=crypto line');
  if (lines.length > 1) throw new SdesNegotiationError('answer', `${lines.length} a=crypto lines (one expected)`);
  const c = lines[0] as CryptoLine;
  if (c.tag !== offeredTag) throw new SdesNegotiationError('answer', `a=crypto tag ${c.tag}, we offered ${offeredTag}`);
  const problem = cryptoProblem(c);
  if (problem !== undefined) throw new SdesNegotiationError('answer', problem);
  return { tag: c.tag, keySalt: inlineKey(c) };
}

function inlineKey(c: CryptoLine): string {
  return (/^inline:([^|;]*)/.exec(c.keyParams) as RegExpExecArray)[1] as string;
}
