/**
 * SDP for the SIP leg: RTP/AVP audio towards the business's PBX, or SRTP keyed by SDES
 * (RFC 4568) when the setting `SIP_SRTP` asks for it.
 *
 * The bridge offers (RFC 3264 §5) the codecs it can bridge — Opus (passed
 * through to WhatsApp without decoding) and G.711 µ-law/A-law (transcoded) —
 * plus telephone-event/8000 (RFC 4733), and reads the PBX's answer with the
 * RFC 3264 §6.1 rule: the first format in the answer that we offered wins.
 * Re-INVITEs that put the call on hold are recognised both the RFC 3264 §8.4
 * way (`a=sendonly` / `a=inactive`) and the old RFC 2543 way (`c=0.0.0.0`),
 * by the one rule in `sdp/sdp.ts` the SIP layer applies too.
 *
 * SDES (`sdp/sdes.ts` reads and checks the `a=crypto` lines). RFC 4568 has no "SRTP if you can" in
 * one m-line, so the policy is:
 * - `required`: we offer `RTP/SAVP` with one `a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:…`; the
 *   answer must be `RTP/SAVP` with one usable line of tag 1. A PBX's offer must carry a usable key
 *   (`RTP/SAVP`, or `RTP/AVP` with `a=crypto`), else 488.
 * - `optional`: best-effort SRTP as Asterisk (`media_encryption_optimistic`) and baresip
 *   (`mediaenc=srtp`) do it: we offer `RTP/AVP` *with* the `a=crypto` line; an answer with a usable
 *   line gives SRTP, one without gives plain RTP. A PBX's offer with a usable key gets SRTP, one
 *   without plain RTP (an `RTP/SAVP` offer with no usable key is still 488).
 * - `off`: plain RTP; an `RTP/SAVP` offer is refused 488, an `a=crypto` line in an `RTP/AVP` offer
 *   is ignored (RFC 4568 §7.1.2: the answer simply carries none), and an `RTP/SAVP` answer fails.
 * Our answer to a PBX's offer mirrors its profile and the tag of the line it accepted, with our own
 * key (RFC 4568 §7.1.2: each side sends with its own key).
 *
 * @module
 */
import { randomInt } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import sdpTransform from 'sdp-transform';
import {
  answeredCrypto,
  audioCryptoLines,
  cryptoAttributeLine,
  isSecureProfile,
  pickOfferedCrypto,
  type SdesKey,
  SdesNegotiationError,
  type SipSrtpPolicy,
} from '../sdp/sdes.ts';
import { audioDirection, mirrorDirection, type SdpDirection } from '../sdp/sdp.ts';
import { MediaError } from './errors.ts';

export type { SdesKey, SipSrtpPolicy } from '../sdp/sdes.ts';
export type { SdpDirection } from '../sdp/sdp.ts';

/** The `a=crypto` tag of the one line we offer. */
export const OFFER_CRYPTO_TAG = 1;

/** SDES on the SIP leg for one call: the policy (`SIP_SRTP`) and our master key ‖ salt (base64). */
export interface SipSrtpOptions {
  policy: SipSrtpPolicy;
  /** From the CSPRNG, one per call (`newSdesKeySalt`). Never log it. */
  keySalt: string;
}

/** Audio codecs the SIP leg can carry. */
export type SipCodecName = 'opus' | 'PCMU' | 'PCMA';

/** A negotiated audio codec. */
export interface SipCodec {
  /** Canonical name. */
  name: SipCodecName;
  /** RTP payload type the peer uses (and we send with). */
  payloadType: number;
  /** RTP clock rate: 48000 for Opus (RFC 7587), 8000 for G.711 (RFC 3551). */
  clockRate: number;
}

/** Options for {@link createSipOffer} and {@link answerSipOffer}. */
export interface SipSdpOptions {
  /** Address for `o=` and `c=` (the RTP session's advertised address). */
  address: string;
  /** RTP port (even, RFC 3550 §11). */
  port: number;
  /** Codecs in order of preference. @default ['opus', 'PCMU', 'PCMA'] */
  codecs?: SipCodecName[];
  /** Offer telephone-event/8000. @default true */
  dtmf?: boolean;
  /** Packet time in ms. @default 20 */
  ptime?: number;
  /** Dynamic payload type for Opus. @default 111 */
  opusPayloadType?: number;
  /**
   * Opus `maxaveragebitrate` (RFC 7587 §6.1, 6000–510000 bit/s): the most
   * we want to receive. In passthrough the PBX's Opus goes to WhatsApp
   * unchanged, so this matches Meta's mono voice stream (20 kb/s, Meta §5.1).
   * `null` leaves the parameter out. @default 20000
   */
  opusMaxAverageBitrate?: number | null;
  /**
   * Opus `maxplaybackrate` (RFC 7587 §6.1, 8000–48000 Hz): the audio
   * bandwidth we can use (Meta: 16000, wideband). `null` leaves it out. @default 16000
   */
  opusMaxPlaybackRate?: number | null;
  /**
   * Opus `sprop-maxcapturerate` (RFC 7587 §6.1, 8000–48000 Hz): the
   * bandwidth of what we send (WhatsApp audio is wideband). `null` leaves it out. @default 16000
   */
  opusMaxCaptureRate?: number | null;
  /** Dynamic payload type for telephone-event/8000. @default 101 */
  telephoneEventPayloadType?: number;
  /** Direction attribute. @default 'sendrecv' */
  direction?: SdpDirection;
  /** `o=` session id; random by default. Keep it for re-offers. */
  sessionId?: string;
  /** `o=` session version; bump it on every re-offer (RFC 3264 §8). @default 1 */
  sessionVersion?: number;
  /** SDES-SRTP (see the module's policy); absent: plain RTP, as with policy `off`. */
  srtp?: SipSrtpOptions;
}

/** What {@link parseSipAnswer} and {@link answerSipOffer} negotiated. */
/** How audio crosses the bridge. */
export type BridgeMode = 'passthrough' | 'transcode';

/** The bridge's rule: Opus at the PBX is relayed as is (`passthrough`), G.711 is transcoded. */
export function bridgeModeOf(sip: SipMediaDescription): BridgeMode {
  return sip.codec.name === 'opus' ? 'passthrough' : 'transcode';
}

export interface SipMediaDescription {
  /** Peer RTP address (media-level `c=` wins over session-level). */
  address: string;
  /** Peer RTP port. */
  port: number;
  /** The audio codec to use both ways. */
  codec: SipCodec;
  /** Peer's telephone-event/8000 payload type, if DTMF was negotiated. */
  dtmfPayloadType?: number;
  /** The peer's direction attribute (from the peer's point of view). */
  direction: SdpDirection;
  /**
   * The peer put the call on hold: `sendonly`/`inactive` (RFC 3264 §8.4) or
   * `c=IN IP4 0.0.0.0` (RFC 2543, still sent by some PBXs).
   */
  onHold: boolean;
  /** Peer's `a=ptime`, if present. */
  ptime?: number;
  /** SDES-SRTP was negotiated: the peer's key (it sends with it) and the tag of the accepted line. */
  srtp?: SdesKey;
}

const DEFAULT_CODECS: SipCodecName[] = ['opus', 'PCMU', 'PCMA'];

/** Static payload types of RFC 3551 §6 that may appear without `a=rtpmap`. */
const STATIC_PT: Record<number, { name: SipCodecName; clockRate: number }> = {
  0: { name: 'PCMU', clockRate: 8000 },
  8: { name: 'PCMA', clockRate: 8000 },
};

/**
 * Build the SDP offer for the outgoing INVITE: one `RTP/AVP` audio m-line
 * with the configured codecs (Opus dynamic, PCMU 0, PCMA 8) and
 * telephone-event/8000, `a=ptime`, and the direction.
 *
 * @throws {@link MediaError} `invalid-argument` for a bad address, port or codec list
 */
export function createSipOffer(options: SipSdpOptions): string {
  const srtp = options.srtp;
  const sdes =
    srtp && srtp.policy !== 'off'
      ? {
          protocol: srtp.policy === 'required' ? 'RTP/SAVP' : 'RTP/AVP',
          key: { tag: OFFER_CRYPTO_TAG, keySalt: srtp.keySalt },
        }
      : undefined;
  return buildSdp(options, options.codecs ?? DEFAULT_CODECS, options.dtmf ?? true, sdes);
}

/**
 * Parse the PBX's SDP answer to {@link createSipOffer}. Picks the first
 * format of the answer that we offered (RFC 3264 §6.1).
 *
 * @param offered - the codecs we offered (default: all supported)
 * @param srtp - the SDES policy our offer was made with (default `off`)
 * @throws {@link MediaError} `invalid-sdp` if unparseable, the audio stream
 *   was rejected (port 0), or no offered codec is in the answer
 * @throws {@link SdesNegotiationError} when the answer's SRTP does not fit the offer
 */
export function parseSipAnswer(
  sdp: string,
  offered: SipCodecName[] = DEFAULT_CODECS,
  srtp: SipSrtpPolicy = 'off',
): SipMediaDescription {
  return describe(sdp, offered, 'answer', srtp).description;
}

/**
 * Parse a SIP offer (INVITE or re-INVITE from the PBX) the same way; used
 * for hold detection on re-INVITEs and for PBX-originated calls.
 *
 * @throws {@link MediaError} `invalid-sdp` as {@link parseSipAnswer}
 * @throws {@link SdesNegotiationError} when the offer's SRTP does not fit the policy (answer 488)
 */
export function parseSipOffer(
  sdp: string,
  supported: SipCodecName[] = DEFAULT_CODECS,
  srtp: SipSrtpPolicy = 'off',
): SipMediaDescription {
  return describe(sdp, supported, 'offer', srtp).description;
}

/**
 * Answer a PBX's offer (PBX-originated call or re-INVITE): pick the first
 * offered codec we support, mirror its payload type and the offer's
 * telephone-event PT, and answer the RFC 3264 §6.1 direction (`sendonly` →
 * `recvonly`, `inactive` → `inactive`).
 */
export function answerSipOffer(
  offerSdp: string,
  options: SipSdpOptions,
): { sdp: string; negotiated: SipMediaDescription } {
  const srtpOptions = options.srtp;
  const { description: negotiated, protocol } = describe(
    offerSdp,
    options.codecs ?? DEFAULT_CODECS,
    'offer',
    srtpOptions?.policy ?? 'off',
  );
  const sdes =
    negotiated.srtp && srtpOptions
      ? {
          // The answer keeps the offer's profile (RFC 3264 §6) and the accepted line's tag (RFC 4568 §7.1.2).
          protocol: isSecureProfile(protocol) ? 'RTP/SAVP' : 'RTP/AVP',
          key: { tag: negotiated.srtp.tag, keySalt: srtpOptions.keySalt },
        }
      : undefined;
  const direction: SdpDirection =
    negotiated.direction === 'sendrecv' ? (options.direction ?? 'sendrecv') : mirrorDirection(negotiated.direction);
  const sdp = buildSdp(
    {
      ...options,
      direction,
      ...(negotiated.codec.name === 'opus' ? { opusPayloadType: negotiated.codec.payloadType } : {}),
      ...(negotiated.dtmfPayloadType !== undefined ? { telephoneEventPayloadType: negotiated.dtmfPayloadType } : {}),
    },
    [negotiated.codec.name],
    (options.dtmf ?? true) && negotiated.dtmfPayloadType !== undefined,
    sdes,
  );
  return { sdp, negotiated };
}

function buildSdp(
  options: SipSdpOptions,
  codecs: SipCodecName[],
  dtmf: boolean,
  sdes?: { protocol: string; key: SdesKey },
): string {
  const { address, port } = options;
  const family = isIPv4(address) ? 'IP4' : isIPv6(address) ? 'IP6' : undefined;
  if (!family) throw invalid('invalid-argument', `address must be an IP address, got "${address}"`);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    throw invalid('invalid-argument', `port must be 1–65535, got ${port}`);
  }
  if (codecs.length === 0 || new Set(codecs).size !== codecs.length) {
    throw invalid('invalid-argument', `codecs must be a non-empty list without repeats, got [${codecs.join(', ')}]`);
  }
  const opusPt = options.opusPayloadType ?? 111;
  const tePt = options.telephoneEventPayloadType ?? 101;
  const ptime = options.ptime ?? 20;
  const pts: number[] = [];
  const attrs: string[] = [];
  for (const codec of codecs) {
    if (codec === 'opus') {
      pts.push(opusPt);
      // RFC 7587 §7: always "opus/48000/2"; mono wideband voice capped like
      // Meta's stream (maxaveragebitrate=20000, maxplaybackrate=16000), since
      // in passthrough the PBX's Opus reaches WhatsApp unchanged.
      attrs.push(`a=rtpmap:${opusPt} opus/48000/2`, `a=fmtp:${opusPt} ${opusFmtp(options)}`);
    } else if (codec === 'PCMU') {
      pts.push(0);
      attrs.push('a=rtpmap:0 PCMU/8000');
    } else if (codec === 'PCMA') {
      pts.push(8);
      attrs.push('a=rtpmap:8 PCMA/8000');
    } else {
      throw invalid('invalid-argument', `unsupported codec "${String(codec)}"`);
    }
  }
  if (dtmf) {
    pts.push(tePt);
    // RFC 4733 §7.1.1: events 0-15 are the DTMF digits.
    attrs.push(`a=rtpmap:${tePt} telephone-event/8000`, `a=fmtp:${tePt} 0-16`);
  }
  const sessionId = options.sessionId ?? String(randomInt(1, 2 ** 47));
  const version = options.sessionVersion ?? 1;
  return [
    'v=0',
    `o=wa-sip-bridge ${sessionId} ${version} IN ${family} ${address}`,
    's=wa-sip-bridge',
    `c=IN ${family} ${address}`,
    't=0 0',
    `m=audio ${port} ${sdes?.protocol ?? 'RTP/AVP'} ${pts.join(' ')}`,
    ...attrs,
    ...(sdes ? [cryptoAttributeLine(sdes.key)] : []),
    `a=ptime:${ptime}`,
    `a=${options.direction ?? 'sendrecv'}`,
    '',
  ].join('\r\n');
}

/** The Opus `a=fmtp` parameters we offer and answer (RFC 7587 §6.1). */
function opusFmtp(options: SipSdpOptions): string {
  const params = ['useinbandfec=1', 'stereo=0', 'sprop-stereo=0'];
  const caps: [string, number | null | undefined, number, number, number][] = [
    ['maxaveragebitrate', options.opusMaxAverageBitrate, 20_000, 6000, 510_000],
    ['maxplaybackrate', options.opusMaxPlaybackRate, 16_000, 8000, 48_000],
    ['sprop-maxcapturerate', options.opusMaxCaptureRate, 16_000, 8000, 48_000],
  ];
  for (const [name, value, fallback, min, max] of caps) {
    if (value === null) continue;
    const v = value ?? fallback;
    if (!Number.isInteger(v) || v < min || v > max) {
      throw invalid('invalid-argument', `Opus ${name} must be an integer in ${min}–${max}, got ${v}`);
    }
    params.push(`${name}=${v}`);
  }
  return params.join(';');
}

function describe(
  sdp: string,
  wanted: SipCodecName[],
  kind: 'offer' | 'answer',
  policy: SipSrtpPolicy,
): { description: SipMediaDescription; protocol: string } {
  let parsed: sdpTransform.SessionDescription;
  try {
    if (typeof sdp !== 'string' || !sdp.trimStart().startsWith('v=0')) throw new Error('it must start with "v=0"');
    parsed = sdpTransform.parse(sdp);
  } catch (err) {
    throw invalid('invalid-sdp', `unparseable SIP ${kind}: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  const media = (parsed.media ?? []).find((m) => m.type === 'audio');
  if (!media) throw invalid('invalid-sdp', `the SIP ${kind} has no audio m-line`);
  if (!media.port) throw invalid('invalid-sdp', `the SIP ${kind} rejected the audio stream (port 0)`);
  const address = media.connection?.ip ?? parsed.connection?.ip;
  if (!address) throw invalid('invalid-sdp', `the SIP ${kind} has no c= line`);

  const formats = String(media.payloads ?? '')
    .trim()
    .split(/\s+/)
    .filter((p) => p !== '')
    .map(Number);
  let codec: SipCodec | undefined;
  let dtmfPayloadType: number | undefined;
  for (const pt of formats) {
    const rtp = media.rtp.find((r) => r.payload === pt);
    const name = rtp?.codec.toLowerCase();
    if (name === 'telephone-event') {
      if (rtp?.rate === 8000 && dtmfPayloadType === undefined) dtmfPayloadType = pt;
      continue;
    }
    if (codec) continue;
    let candidate: SipCodec | undefined;
    if (name === 'opus' && rtp?.rate === 48000) {
      candidate = { name: 'opus', payloadType: pt, clockRate: 48000 };
    } else if ((name === 'pcmu' || name === 'pcma') && (rtp?.rate ?? 8000) === 8000) {
      candidate = { name: name === 'pcmu' ? 'PCMU' : 'PCMA', payloadType: pt, clockRate: 8000 };
    } else if (!rtp && STATIC_PT[pt]) {
      candidate = { ...(STATIC_PT[pt] as { name: SipCodecName; clockRate: number }), payloadType: pt };
    }
    if (candidate && wanted.includes(candidate.name)) codec = candidate;
  }
  if (!codec) {
    throw invalid('invalid-sdp', `no common audio codec in the SIP ${kind} (m=audio … ${formats.join(' ')})`);
  }
  const { declared: direction, onHold } = audioDirection(parsed);
  const ptime = media.ptime !== undefined ? Number(media.ptime) : undefined;
  const srtp = sdesOf(sdp, media.protocol, kind, policy);
  return {
    description: {
      address,
      port: media.port,
      codec,
      ...(dtmfPayloadType !== undefined ? { dtmfPayloadType } : {}),
      direction,
      onHold,
      ...(ptime !== undefined && Number.isFinite(ptime) ? { ptime } : {}),
      ...(srtp ? { srtp } : {}),
    },
    protocol: media.protocol,
  };
}

/**
 * The peer's SDES key under `policy` (the module's rules), undefined for plain RTP.
 *
 * @throws {@link SdesNegotiationError} when the SDP does not fit the policy
 */
function sdesOf(sdp: string, protocol: string, kind: 'offer' | 'answer', policy: SipSrtpPolicy): SdesKey | undefined {
  const secure = isSecureProfile(protocol);
  const lines = audioCryptoLines(sdp);
  if (kind === 'answer') {
    if (policy === 'off') {
      if (secure) throw new SdesNegotiationError('answer', `${protocol} to our RTP/AVP offer (SIP_SRTP is off)`);
      return undefined;
    }
    if (policy === 'required' && !secure) {
      throw new SdesNegotiationError('answer', `${protocol} to our RTP/SAVP offer`);
    }
    // Optional: an answer without a=crypto declined SRTP (plain RTP/AVP); one with it must be usable.
    if (policy === 'optional' && !secure && lines.length === 0) return undefined;
    return answeredCrypto(lines, OFFER_CRYPTO_TAG);
  }
  if (policy === 'off') {
    if (secure) throw new SdesNegotiationError('offer', `${protocol} (SIP_SRTP is off: plain RTP only)`);
    return undefined; // an a=crypto line in an RTP/AVP offer is best effort: declined by answering without one
  }
  if (!secure && lines.length === 0) {
    if (policy === 'required')
      throw new SdesNegotiationError('offer', `${protocol} without a=crypto (SIP_SRTP is required)`);
    return undefined;
  }
  const picked = pickOfferedCrypto(lines);
  if ('key' in picked) return picked.key;
  // A best-effort RTP/AVP offer whose keys we cannot use still gets plain RTP unless SRTP is required.
  if (!secure && policy === 'optional') return undefined;
  throw new SdesNegotiationError('offer', `no usable key: ${picked.problems.join('; ')}`);
}

function invalid(code: 'invalid-sdp' | 'invalid-argument', message: string, cause?: unknown): MediaError {
  return new MediaError(code, message, { component: 'sip-sdp' }, cause === undefined ? undefined : { cause });
}
