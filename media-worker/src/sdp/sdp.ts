/**
 * The SDP rules both the SIP signalling layer and the media layer apply, on sdp-transform: the
 * direction and hold state of an audio stream (RFC 3264 §6.1, §8.4), the rewrites of our own SDP
 * when answering a re-INVITE (direction, session version, format list), and redaction for logs.
 *
 * Codec negotiation for the SIP leg lives in `media/sip-sdp.ts`, which reads directions with
 * {@link audioDirection} from here; this module imports nothing of the project, so `sip/` can use
 * it without depending on `media/`.
 *
 * @module
 */
import sdpTransform from 'sdp-transform';

/** An SDP stream direction attribute (RFC 4566 §6, RFC 3264 §5.1). */
export type SdpDirection = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';

/** A parsed session description (sdp-transform's shape). */
export type SessionDescription = sdpTransform.SessionDescription;

type MediaDescription = SessionDescription['media'][number];

/** The direction of an audio stream as its author declared it, and what that means for hold. */
export interface AudioDirection {
  /** The `a=` direction attribute: media level, else session level, else `sendrecv`. */
  declared: SdpDirection;
  /**
   * The connection address is `0.0.0.0` (or `::`): the RFC 2543 way to say "do not send to me",
   * still sent by some PBXs (RFC 3264 §8.4).
   */
  nullAddress: boolean;
  /** `declared` without the author's receive side when {@link nullAddress}. */
  effective: SdpDirection;
  /** The author will not receive what we send: `sendonly`/`inactive`, or a null address. */
  onHold: boolean;
}

/**
 * Direction and hold state of the first audio stream of `session` (or of the session itself when
 * it has no audio stream): the media-level attribute and `c=` win over the session-level ones.
 */
export function audioDirection(session: SessionDescription): AudioDirection {
  const media = firstAudio(session);
  const declared = (media?.direction ?? session.direction ?? 'sendrecv') as SdpDirection;
  const address = media?.connection?.ip ?? session.connection?.ip;
  const nullAddress = address === '0.0.0.0' || address === '::';
  let effective = declared;
  if (nullAddress) {
    if (declared === 'sendrecv') effective = 'sendonly';
    else if (declared === 'recvonly') effective = 'inactive';
  }
  return { declared, nullAddress, effective, onHold: effective === 'sendonly' || effective === 'inactive' };
}

/** Effective direction of the first audio stream of `sdp`, as seen from its author. */
export function remoteDirection(sdp: string): SdpDirection {
  return audioDirection(sdpTransform.parse(sdp)).effective;
}

/** Whether the far end's offer puts us on hold: it will not receive what we send. */
export function isHold(sdp: string): boolean {
  return audioDirection(sdpTransform.parse(sdp)).onHold;
}

/** The direction an answer takes for an offer of direction `d` (RFC 3264 §6.1). */
export function mirrorDirection(d: SdpDirection): SdpDirection {
  switch (d) {
    case 'sendonly':
      return 'recvonly';
    case 'recvonly':
      return 'sendonly';
    default:
      return d;
  }
}

/**
 * `local` with every stream's direction set to `direction` and the o= session version set to
 * `version` (RFC 3264 §8: each new SDP in a session bumps it). The session-level direction is
 * dropped so the media-level ones govern. sdp-transform writes the lines in its own canonical order.
 */
export function withDirection(local: string, direction: SdpDirection, version: number): string {
  const session = sdpTransform.parse(local);
  delete session.direction;
  for (const media of session.media) media.direction = direction;
  if (session.origin) session.origin.sessionVersion = version;
  return sdpTransform.write(session);
}

/** Encodings of the static RTP payload types (RFC 3551 §6) that may come without a=rtpmap. */
const STATIC_PT: Readonly<Record<string, string>> = {
  '0': 'pcmu/8000',
  '3': 'gsm/8000',
  '8': 'pcma/8000',
  '9': 'g722/8000',
  '18': 'g729/8000',
};

/** The m-line's payload types (sdp-transform gives a number when there is only one). */
function payloadsOf(media: MediaDescription): string[] {
  return String(media.payloads ?? '')
    .split(/\s+/)
    .filter((p) => p !== '');
}

/** Payload type → `encoding/clock` (lower case) of an audio stream. */
function audioFormats(media: MediaDescription | undefined): Map<string, string> {
  const formats = new Map<string, string>();
  if (!media) return formats;
  for (const pt of payloadsOf(media)) {
    const rtp = media.rtp.find((r) => String(r.payload) === pt);
    formats.set(pt, rtp ? `${rtp.codec.toLowerCase()}/${rtp.rate ?? ''}` : (STATIC_PT[pt] ?? `pt${pt}`));
  }
  return formats;
}

/**
 * `local` with its audio formats narrowed to those the far end's new `offer` still lists
 * (RFC 3264 §6.1: an answer carries no format the offer lacks). Our payload type numbers are kept
 * (a SHOULD, not a MUST, in §6.1). When nothing matches, `local` is returned unchanged.
 */
export function restrictToOffer(local: string, offer: string): string {
  const offered = new Set(audioFormats(firstAudio(sdpTransform.parse(offer))).values());
  const session = sdpTransform.parse(local);
  const audio = firstAudio(session);
  const ours = audioFormats(audio);
  const keep = new Set([...ours].filter(([, enc]) => offered.has(enc)).map(([pt]) => pt));
  if (!audio || keep.size === 0 || keep.size === ours.size) return local;
  const kept = (pt: number | string) => keep.has(String(pt));
  audio.payloads = payloadsOf(audio).filter(kept).join(' ');
  audio.rtp = audio.rtp.filter((r) => kept(r.payload));
  audio.fmtp = audio.fmtp.filter((f) => kept(f.payload));
  if (audio.rtcpFb) audio.rtcpFb = audio.rtcpFb.filter((f) => f.payload === '*' || kept(f.payload));
  return sdpTransform.write(session);
}

/** The o= session version of `sdp` (0 when unreadable). */
export function sessionVersion(sdp: string): number {
  const v = Number(sdpTransform.parse(sdp).origin?.sessionVersion);
  return Number.isSafeInteger(v) ? v : 0;
}

/**
 * `sdp` without `a=crypto` lines (RFC 4568 keys), safe to log. Text-based on purpose: it must
 * also clean SDP that does not parse and whole SIP messages (`sip-wire.ts` runs it on the wire
 * text).
 */
export function redactSdp(sdp: string): string {
  return sdp.replace(/^a=crypto:.*$/gim, 'a=crypto:<redacted>');
}

function firstAudio(session: SessionDescription): MediaDescription | undefined {
  return session.media.find((m) => m.type === 'audio');
}
