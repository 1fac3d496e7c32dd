/**
 * The stack-independent half of a re-INVITE (RFC 3261 §14.2, RFC 3264 §8): the SDP answer we give
 * and the dialog event the far end's new SDP means (hold, resume, media update). Both SIP adapters
 * (`dialog.ts` on the `sip` package, `drachtio/` on drachtio-srf) use it, so they answer and report
 * a re-INVITE the same way.
 */

import sdpTransform from 'sdp-transform';
import { audioCryptoLines, pickOfferedCrypto } from '../sdp/sdes.ts';
import type { SdpDirection } from '../sdp/sdp.ts';
import { isHold, mirrorDirection, remoteDirection, restrictToOffer, withDirection } from '../sdp/sdp.ts';
import type { SipDialogEvent } from './sip-port.ts';

/**
 * Our answer to a re-INVITE: our current SDP narrowed to the offered formats, with the offer's
 * direction mirrored (sendonly → recvonly, RFC 3264 §6.1) and the o= version set to `version`. An
 * offerless re-INVITE gets our SDP as a sendrecv offer (§14.2). With SDES our key stays (RFC 4568
 * §7.1.4 lets the answerer keep it) under the tag of the offer's line we take (§7.1.2).
 */
export function reinviteAnswer(
  localSdp: string,
  offer: string | undefined,
  version: number,
): { sdp: string; direction: SdpDirection } {
  const direction = offer === undefined ? 'sendrecv' : mirrorDirection(remoteDirection(offer));
  const base = offer === undefined ? localSdp : withOfferedCryptoTag(restrictToOffer(localSdp, offer), offer);
  return { sdp: withDirection(base, direction, version), direction };
}

/** `local`'s one `a=crypto` line re-tagged to the offer's first usable line (unchanged when there is none). */
function withOfferedCryptoTag(local: string, offer: string): string {
  const picked = pickOfferedCrypto(audioCryptoLines(offer));
  if (!('key' in picked)) return local;
  const session = sdpTransform.parse(local);
  const audio = session.media.find((m) => m.type === 'audio');
  const ours = audio?.crypto?.length === 1 ? audio.crypto[0] : undefined;
  if (!ours || ours.id === picked.key.tag) return local;
  ours.id = picked.key.tag;
  return sdpTransform.write(session);
}

/** Follows the far end's SDP through a dialog and names what each new one means. */
export class RemoteSdpTracker {
  #held = false;
  #last: string | undefined;

  /** The SDP the dialog started with (the answer for a UAC, the offer for a UAS). */
  start(sdp: string | undefined): void {
    this.#last = sdp;
    this.#held = sdp !== undefined && isHold(sdp);
  }

  /**
   * Record the far end's new SDP: `hold`/`resume` when its hold state flipped (a=sendonly,
   * a=inactive or c=0.0.0.0, RFC 3264 §8.4), `media-update` when it changed otherwise, nothing
   * when it is the same text.
   */
  apply(sdp: string): SipDialogEvent | undefined {
    const held = isHold(sdp);
    const changed = sdp !== this.#last;
    this.#last = sdp;
    if (held !== this.#held) {
      this.#held = held;
      return { type: held ? 'hold' : 'resume', sdp };
    }
    return changed ? { type: 'media-update', sdp } : undefined;
  }
}
