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
