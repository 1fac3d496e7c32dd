/**
 * Meta-style validation of the SDP a business sends (pre_accept/accept answers,
 * business-initiated connect offers). Mirrors the checks Meta's Graph API
 * applies before answering "SDP Validation error" (see
 * docs/meta-calling-api.md §5.1 and §7 item 5).
 *
 * @module
 */
import sdpTransform from 'sdp-transform';
import { usableCrypto } from './sdes.ts';

/** Options for {@link validateBusinessSdp}. */
export interface BusinessSdpValidationOptions {
  /** `answer` for pre_accept/accept of a user-initiated call, `offer` for a business-initiated connect. */
  type: 'offer' | 'answer';
  /** `audio.additional_codecs` enabled: PCMU/PCMA alone are acceptable (since Mar 2026). */
  allowG711?: boolean;
  /** `srtp_key_exchange_protocol` setting; default `DTLS`. */
  keyExchange?: 'DTLS' | 'SDES';
}

/** Verdict of {@link validateBusinessSdp}; `details` is a single human-readable reason. */
export type BusinessSdpValidationResult = { ok: true } | { ok: false; details: string };

/** Static RTP payload types (RFC 3551) that may appear without an rtpmap. */
const STATIC_PAYLOADS: Record<number, { codec: string; rate: number }> = {
  0: { codec: 'PCMU', rate: 8000 },
  8: { codec: 'PCMA', rate: 8000 },
  9: { codec: 'G722', rate: 8000 },
  13: { codec: 'CN', rate: 8000 },
};

type MediaDescription = sdpTransform.SessionDescription['media'][number];

function fail(details: string): BusinessSdpValidationResult {
  return { ok: false, details };
}

/**
 * Split raw SDP text into sections: index 0 is the session section, then one
 * per m-line. sdp-transform keeps only the last `a=fingerprint` of a section,
 * so repeated attributes are counted on the raw lines.
 */
function rawSections(sdp: string): string[][] {
  const sections: string[][] = [[]];
  for (const line of sdp.split(/\r?\n/)) {
    const l = line.trim();
    if (l === '') continue;
    if (l.startsWith('m=')) sections.push([]);
    (sections[sections.length - 1] as string[]).push(l);
  }
  return sections;
}

function codecsOf(media: MediaDescription): { pt: number; codec: string; rate: number }[] {
  const pts = String(media.payloads ?? '')
    .trim()
    .split(/\s+/)
    .filter((p) => p !== '')
    .map(Number);
  return pts.map((pt) => {
    const rtp = media.rtp.find((r) => r.payload === pt);
    if (rtp) return { pt, codec: rtp.codec, rate: rtp.rate ?? 0 };
    const s = STATIC_PAYLOADS[pt];
    return { pt, codec: s?.codec ?? 'unknown', rate: s?.rate ?? 0 };
  });
}

/** Codec names that carry no audio of their own (not "the" audio codec). */
const AUXILIARY = new Set(['telephone-event', 'cn', 'red', 'rtx', 'ulpfec', 'flexfec-03']);

/**
 * Validate business SDP the way Meta does. Never throws: garbage input yields
 * `{ ok: false }`.
 *
 * Checks (first failure wins):
 * - exactly one m-line, and it is audio (one BUNDLEd audio stream, M-PAT);
 * - DTLS mode: protocol `UDP/TLS/RTP/SAVPF`, exactly one `a=fingerprint`, and it
 *   is `sha-256` (missing → "No fingerprint found in SDP"); `a=ice-ufrag` and
 *   `a=ice-pwd` present; `a=setup` of an answer is `active` or `passive`
 *   (RFC 5763 §5: the answerer must pin a role; `actpass` is an offerer value;
 *   absent means `active` per RFC 4145 §4);
 * - SDES mode: protocol `RTP/SAVP` and an `a=crypto` line with `AES_CM_128_HMAC_SHA1_80` and a 30-byte
 *   inline key (sdes.ts);
 * - at most one SSRC (Meta rewrites one fixed SSRC; several corrupt audio);
 * - Opus/48000 offered/answered (RFC 7587 clock), or with `allowG711` PCMU/PCMA;
 * - `a=ptime`, if present, is 20;
 * - `telephone-event`, if present, is at 8000 Hz (Meta does not support 48 kHz DTMF);
 *   an offer may list other rates as long as an 8000 one exists.
 */
export function validateBusinessSdp(sdp: string, opts: BusinessSdpValidationOptions): BusinessSdpValidationResult {
  try {
    return validate(sdp, opts);
  } catch (err) {
    return fail(`Unparseable SDP: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function validate(sdp: string, opts: BusinessSdpValidationOptions): BusinessSdpValidationResult {
  if (typeof sdp !== 'string' || (sdp.trimStart().split(/\r?\n/, 1)[0] ?? '').trim() !== 'v=0') {
    return fail('Unparseable SDP: it must start with "v=0"');
  }
  const keyExchange = opts.keyExchange ?? 'DTLS';
  const parsed = sdpTransform.parse(sdp);
  const sections = rawSections(sdp);
  const mediaList = parsed.media ?? [];

  if (mediaList.length !== 1) {
    return fail(`SDP must contain exactly one m-line, found ${mediaList.length}`);
  }
  const media = mediaList[0] as MediaDescription;
  if (media.type !== 'audio') {
    return fail(`The m-line must be audio, found "${media.type}"`);
  }
  const allLines = sections.flat();

  if (keyExchange === 'DTLS') {
    if (media.protocol !== 'UDP/TLS/RTP/SAVPF') {
      return fail(`DTLS-SRTP requires protocol UDP/TLS/RTP/SAVPF, found ${media.protocol}`);
    }
    const fingerprints = allLines.filter((l) => l.startsWith('a=fingerprint:'));
    if (fingerprints.length === 0) return fail('No fingerprint found in SDP');
    if (fingerprints.length > 1) {
      return fail(`SDP must contain exactly one fingerprint, found ${fingerprints.length}`);
    }
    const algorithm = (fingerprints[0] as string).slice('a=fingerprint:'.length).trim().split(/\s+/)[0];
    if (algorithm?.toLowerCase() !== 'sha-256') {
      return fail(`Unsupported fingerprint algorithm "${algorithm ?? ''}", only sha-256 is accepted`);
    }
    const ufrag = media.iceUfrag ?? parsed.iceUfrag;
    const pwd = media.icePwd ?? parsed.icePwd;
    if (!ufrag) return fail('Missing a=ice-ufrag');
    if (!pwd) return fail('Missing a=ice-pwd');
    const setup = media.setup ?? parsed.setup;
    if (opts.type === 'answer') {
      if (setup !== undefined && setup !== 'active' && setup !== 'passive') {
        return fail(`Answer a=setup must be active or passive, found ${setup}`);
      }
    } else if (setup !== undefined && !['actpass', 'active', 'passive'].includes(setup)) {
      return fail(`Offer a=setup must be actpass, active or passive, found ${setup}`);
    }
  } else {
    if (media.protocol !== 'RTP/SAVP') {
      return fail(`SDES requires protocol RTP/SAVP, found ${media.protocol}`);
    }
    const crypto = usableCrypto(sdp);
    if (!crypto.ok) return fail(crypto.details);
  }

  const ssrcIds = new Set((media.ssrcs ?? []).map((s) => String(s.id)));
  if (ssrcIds.size > 1) {
    return fail(`SDP must contain at most one SSRC, found ${ssrcIds.size}`);
  }

  const codecs = codecsOf(media);
  if (codecs.length === 0) return fail('The m-line lists no payload types');
  const hasOpus = codecs.some((c) => c.codec.toLowerCase() === 'opus' && c.rate === 48000);
  const hasG711 = codecs.some(
    (c) => (c.codec.toUpperCase() === 'PCMU' || c.codec.toUpperCase() === 'PCMA') && c.rate === 8000,
  );
  if (!hasOpus && !(opts.allowG711 && hasG711)) {
    const audio = codecs.filter((c) => !AUXILIARY.has(c.codec.toLowerCase())).map((c) => `${c.codec}/${c.rate}`);
    return fail(
      `Unsupported codec(s) ${audio.join(', ') || '(none)'}: opus/48000 is required${
        opts.allowG711 ? ' (or PCMU/PCMA)' : ''
      }`,
    );
  }

  if (media.ptime !== undefined && Number(media.ptime) !== 20) {
    return fail(`a=ptime must be 20, found ${media.ptime}`);
  }
  const ptimeLine = allLines.find((l) => l.startsWith('a=ptime:'));
  if (ptimeLine && Number(ptimeLine.slice('a=ptime:'.length)) !== 20) {
    return fail(`a=ptime must be 20, found ${ptimeLine.slice('a=ptime:'.length)}`);
  }

  const events = codecs.filter((c) => c.codec.toLowerCase() === 'telephone-event');
  if (events.length > 0) {
    const at8k = events.filter((c) => c.rate === 8000);
    const bad = events.find((c) => c.rate !== 8000);
    if (opts.type === 'answer' ? bad !== undefined : at8k.length === 0) {
      return fail(`telephone-event must be 8000 Hz, found telephone-event/${(bad ?? events[0])?.rate}`);
    }
  }
  return { ok: true };
}
