/**
 * The WhatsApp leg's SDP, shaped for Meta on sdp-transform: what werift
 * writes is close to what Meta accepts, and these pure functions close the
 * gap (docs/meta-calling-api.md §5.1; the simulator's
 * `meta-simulator/media/sdp-validation.ts` is the executable version of
 * Meta's checks):
 *
 * - {@link shapeLocalSdp}: exactly one `a=fingerprint`, sha-256 (Meta rejects
 *   extra fingerprint lines, error 138008); `a=ptime:20`; no trickle lines
 *   (Meta's relay has no trickle ICE); behind 1:1 NAT, the public address in
 *   `c=`, in the host candidate and the candidate's port on the m-line.
 * - {@link withoutWidebandTelephoneEvents}: Meta sends DTMF at 8 kHz only, and
 *   werift's codec matching ignores the clock rate, so a remote description
 *   that also lists telephone-event/48000 loses it before werift sees it.
 * - {@link offeredSetup} and {@link remotePayloadTypes}: what the leg reads
 *   from Meta's offer or answer.
 *
 * The simulator keeps its own SDP helpers on purpose: a test double that
 * shares the product's code stops being an independent oracle.
 *
 * @module
 */
import sdpTransform from 'sdp-transform';

type Session = sdpTransform.SessionDescription;
type Media = Session['media'][number];

/** Opus frame length the leg sends, advertised as `a=ptime` (Meta requires 20 if present, §5.1). */
export const WHATSAPP_PTIME_MS = 20;

/** Options for {@link shapeLocalSdp}. */
export interface ShapeLocalSdpOptions {
  /** The address werift's host candidate carries (the ICE socket's bind address). */
  bindAddress: string;
  /**
   * Public IPv4 address to advertise instead (cloud 1:1 NAT): replaces the
   * bind address in `c=` lines and in the host candidate, and the m-line port
   * becomes the candidate's (there is no `c=` address to reach otherwise).
   */
  publicAddress?: string;
}

/** The remote side's payload types for Opus/48000 and telephone-event/8000, when it lists them. */
export interface RemotePayloadTypes {
  opus: number | undefined;
  telephoneEvent: number | undefined;
}

/** werift's local SDP could not be turned into one Meta accepts (a werift change, never Meta's input). */
export class LocalSdpError extends Error {
  override readonly name = 'LocalSdpError';
}

/**
 * Turn werift's local offer or answer into what Meta accepts (see the module
 * comment). Everything else (ICE credentials, `a=setup`, codecs, SSRC, BUNDLE)
 * passes through unchanged.
 *
 * sdp-transform keeps one `a=fingerprint` per section (the last), so the
 * output has one line per section by construction; werift 0.25 writes one
 * sha-256 fingerprint per m-line (`RTCCertificate.getFingerprints`).
 *
 * @throws {@link LocalSdpError} when the SDP carries no sha-256 fingerprint
 */
export function shapeLocalSdp(sdp: string, options: ShapeLocalSdpOptions): string {
  const session = sdpTransform.parse(sdp);
  const pub = options.publicAddress;
  const fingerprint = session.media.map((m) => m.fingerprint).find(isSha256) ?? session.fingerprint;
  if (!isSha256(fingerprint)) throw new LocalSdpError('werift offered no sha-256 fingerprint');

  // Exactly one fingerprint in the whole description: on the (BUNDLEd) first m-line, as werift writes it.
  delete session.fingerprint;
  // Meta's relay is not a trickle ICE agent: all candidates are in the SDP.
  delete session.iceOptions;
  if (pub && session.connection?.version === 4) session.connection.ip = pub;
  session.media.forEach((media, i) => {
    delete media.endOfCandidates;
    delete media.iceOptions;
    if (i === 0) media.fingerprint = fingerprint;
    else delete media.fingerprint;
    if (media.type === 'audio') media.ptime = WHATSAPP_PTIME_MS;
    if (!pub) return;
    if (media.connection?.version === 4) media.connection.ip = pub;
    for (const c of media.candidates ?? []) if (c.ip === options.bindAddress) c.ip = pub;
    const port = media.candidates?.[0]?.port;
    if (media.type === 'audio' && port !== undefined) media.port = port;
  });
  return sdpTransform.write(session);
}

/**
 * Drop telephone-event payload types whose clock is not 8000 Hz from every
 * audio m-line that also has an 8000 Hz one (Meta supports DTMF at 8 kHz only,
 * §5.1; werift's codec matching ignores the clock rate and would otherwise
 * pick the first). Returns the SDP unchanged when there is nothing to drop.
 */
export function withoutWidebandTelephoneEvents(sdp: string): string {
  const session = sdpTransform.parse(sdp);
  let changed = false;
  for (const media of session.media) {
    const events = media.rtp.filter((r) => r.codec.toLowerCase() === 'telephone-event');
    const drop = new Set(events.filter((r) => r.rate !== 8000).map((r) => r.payload));
    if (drop.size === 0 || drop.size === events.length) continue;
    changed = true;
    media.rtp = media.rtp.filter((r) => !drop.has(r.payload));
    media.fmtp = media.fmtp.filter((f) => !drop.has(f.payload));
    if (media.rtcpFb) media.rtcpFb = media.rtcpFb.filter((f) => !drop.has(Number(f.payload)));
    media.payloads = payloadList(media)
      .filter((pt) => !drop.has(pt))
      .join(' ');
  }
  return changed ? sdpTransform.write(session) : sdp;
}

/**
 * The key exchange Meta's SDP uses: `SDES` for `RTP/SAVP(F)` with `a=crypto` and no `a=fingerprint` (Meta's SDES
 * mode, M-SIP: no STUN, ICE or DTLS), else `DTLS`.
 */
export function offeredKeyExchange(sdp: string): 'DTLS' | 'SDES' {
  const session = sdpTransform.parse(sdp);
  const audio = firstAudio(session);
  const protocol = audio?.protocol ?? '';
  const hasCrypto = (audio?.crypto?.length ?? 0) > 0;
  const hasFingerprint = audio?.fingerprint !== undefined || session.fingerprint !== undefined;
  return !protocol.includes('TLS') && hasCrypto && !hasFingerprint ? 'SDES' : 'DTLS';
}

/**
 * The `a=setup` of the first audio m-line, or of the session when the
 * m-line has none (RFC 4145 §4: media level wins); undefined when absent.
 */
export function offeredSetup(sdp: string): string | undefined {
  const session = sdpTransform.parse(sdp);
  return firstAudio(session)?.setup ?? session.setup;
}

/** The first Opus/48000 and telephone-event/8000 payload types the remote side lists (usually 111/126). */
export function remotePayloadTypes(sdp: string): RemotePayloadTypes {
  let opus: number | undefined;
  let telephoneEvent: number | undefined;
  for (const media of sdpTransform.parse(sdp).media) {
    for (const r of media.rtp) {
      const codec = r.codec.toLowerCase();
      if (codec === 'opus' && r.rate === 48_000) opus ??= r.payload;
      else if (codec === 'telephone-event' && r.rate === 8000) telephoneEvent ??= r.payload;
    }
  }
  return { opus, telephoneEvent };
}

function isSha256(f: Media['fingerprint']): f is NonNullable<Media['fingerprint']> {
  return f?.type.toLowerCase() === 'sha-256';
}

function firstAudio(session: Session): Media | undefined {
  return session.media.find((m) => m.type === 'audio');
}

function payloadList(media: Media): number[] {
  return String(media.payloads ?? '')
    .split(' ')
    .filter((p) => p !== '')
    .map(Number);
}
