/**
 * The little SDP knowledge the signalling layer needs: reading the hold state of a far-end offer
 * and mirroring its direction into our answer (RFC 3264 §6.1, §8.4). Codec negotiation is not done
 * here — a re-INVITE is answered with the SDP we already sent, only the direction changes.
 */

/** An SDP stream direction attribute (RFC 4566 §6). */
export type SdpDirection = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';

const DIRECTIONS: ReadonlySet<string> = new Set(['sendrecv', 'sendonly', 'recvonly', 'inactive']);

function splitLines(sdp: string): string[] {
  return sdp.split(/\r?\n/).filter((l) => l.length > 0);
}

/**
 * Effective direction of the first audio stream of `sdp`, as seen from its author. A connection
 * address of 0.0.0.0 is the RFC 2543 way to say "do not send to me" (RFC 3264 §8.4), so it removes
 * the author's receive side.
 */
export function remoteDirection(sdp: string): SdpDirection {
  let sessionDir: SdpDirection | undefined;
  let sessionConn: string | undefined;
  let mediaDir: SdpDirection | undefined;
  let mediaConn: string | undefined;
  let section: 'session' | 'audio' | 'other' | 'done' = 'session';
  for (const line of splitLines(sdp)) {
    if (line.startsWith('m=')) {
      if (section === 'audio') section = 'done';
      else if (section !== 'done') section = line.startsWith('m=audio') ? 'audio' : 'other';
      continue;
    }
    if (section === 'done' || section === 'other') continue;
    const attr = line.startsWith('a=') ? line.slice(2).trim() : undefined;
    const dir = attr !== undefined && DIRECTIONS.has(attr) ? (attr as SdpDirection) : undefined;
    const conn = line.startsWith('c=') ? line.slice(2).trim().split(/\s+/)[2]?.split('/')[0] : undefined;
    if (section === 'session') {
      sessionDir = dir ?? sessionDir;
      sessionConn = conn ?? sessionConn;
    } else {
      mediaDir = dir ?? mediaDir;
      mediaConn = conn ?? mediaConn;
    }
  }
  let direction = mediaDir ?? sessionDir ?? 'sendrecv';
  if ((mediaConn ?? sessionConn) === '0.0.0.0') {
    if (direction === 'sendrecv') direction = 'sendonly';
    else if (direction === 'recvonly') direction = 'inactive';
  }
  return direction;
}

/** Whether the far end's offer puts us on hold: it will not receive what we send. */
export function isHold(sdp: string): boolean {
  const d = remoteDirection(sdp);
  return d === 'sendonly' || d === 'inactive';
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
 * `version` (RFC 3264 §8: each new SDP in a session bumps it). Session-level direction lines are
 * dropped so the media-level ones govern.
 */
export function withDirection(local: string, direction: SdpDirection, version: number): string {
  const out: string[] = [];
  let inMedia = false;
  const flushDirection = (): void => {
    if (inMedia) out.push(`a=${direction}`);
  };
  for (const line of splitLines(local)) {
    if (line.startsWith('a=') && DIRECTIONS.has(line.slice(2).trim())) continue;
    if (line.startsWith('m=')) {
      flushDirection();
      inMedia = true;
    }
    if (line.startsWith('o=')) {
      const f = line.slice(2).split(' ');
      if (f.length >= 6) f[2] = String(version);
      out.push(`o=${f.join(' ')}`);
      continue;
    }
    out.push(line);
  }
  flushDirection();
  return `${out.join('\r\n')}\r\n`;
}

/** Encodings of the static RTP payload types (RFC 3551 §6) that may come without a=rtpmap. */
const STATIC_PT: Readonly<Record<string, string>> = {
  '0': 'pcmu/8000',
  '3': 'gsm/8000',
  '8': 'pcma/8000',
  '9': 'g722/8000',
  '18': 'g729/8000',
};

/** Payload type → `encoding/clock` (lower case) of the first audio stream of `sdp`. */
function audioFormats(sdp: string): Map<string, string> {
  const formats = new Map<string, string>();
  let inAudio = false;
  for (const line of splitLines(sdp)) {
    if (line.startsWith('m=')) {
      if (inAudio) break;
      inAudio = line.startsWith('m=audio');
      if (inAudio) for (const pt of line.split(' ').slice(3)) formats.set(pt, STATIC_PT[pt] ?? `pt${pt}`);
      continue;
    }
    const m = inAudio ? /^a=rtpmap:(\d+)\s+([^/\s]+)\/(\d+)/.exec(line) : null;
    if (m?.[1] && formats.has(m[1])) formats.set(m[1], `${m[2]?.toLowerCase()}/${m[3]}`);
  }
  return formats;
}

/**
 * `local` with its audio formats narrowed to those the far end's new `offer` still lists
 * (RFC 3264 §6.1: an answer carries no format the offer lacks). Our payload type numbers are kept
 * (a SHOULD, not a MUST, in §6.1). When nothing matches, `local` is returned unchanged.
 */
export function restrictToOffer(local: string, offer: string): string {
  const offered = new Set(audioFormats(offer).values());
  const ours = audioFormats(local);
  const keep = new Set([...ours].filter(([, enc]) => offered.has(enc)).map(([pt]) => pt));
  if (keep.size === 0 || keep.size === ours.size) return local;
  const out: string[] = [];
  let inAudio = false;
  let done = false;
  for (const line of splitLines(local)) {
    if (line.startsWith('m=')) {
      if (inAudio) done = true;
      inAudio = !done && line.startsWith('m=audio');
      if (inAudio) {
        const f = line.split(' ');
        out.push([...f.slice(0, 3), ...f.slice(3).filter((pt) => keep.has(pt))].join(' '));
        continue;
      }
    }
    const pt = inAudio ? /^a=(?:rtpmap|fmtp|rtcp-fb):(\d+)[\s]/.exec(line)?.[1] : undefined;
    if (pt !== undefined && !keep.has(pt)) continue;
    out.push(line);
  }
  return `${out.join('\r\n')}\r\n`;
}

/** The o= session version of `sdp` (0 when unreadable). */
export function sessionVersion(sdp: string): number {
  const o = splitLines(sdp).find((l) => l.startsWith('o='));
  const v = Number(o?.slice(2).split(' ')[2]);
  return Number.isSafeInteger(v) ? v : 0;
}

/** `sdp` without `a=crypto` lines (RFC 4568 keys), safe to log. */
export function redactSdp(sdp: string): string {
  return sdp.replace(/^a=crypto:.*$/gim, 'a=crypto:<redacted>');
}
