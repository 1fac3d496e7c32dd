/**
 * Media statistics of a call as stored on its record, collected from the bridge and the WhatsApp
 * leg just before they are closed.
 */
import type { CallMediaStats } from '#core/calls/call-record.ts';
import type { MediaBridge } from '../media/media-bridge.ts';
import type { RtpSession } from '../media/rtp-session.ts';
import type { WhatsAppLeg } from '../webrtc/whatsapp-leg.ts';

/** Reads the statistics; `undefined` when no media flowed (no bridge). */
export async function collectMediaStats(
  bridge: MediaBridge | undefined,
  leg: WhatsAppLeg | undefined,
  rtp?: RtpSession,
): Promise<CallMediaStats | undefined> {
  if (!bridge || !leg) return undefined;
  const b = bridge.stats();
  const w = await leg.stats();
  const rtpStats = rtp?.stats();
  const rtcp = rtpStats?.rtcp;
  const srtp = rtpStats?.srtp;
  return {
    mode: b.mode,
    codec: b.mode === 'passthrough' ? 'opus' : 'g711',
    whatsappToSip: {
      packets: b.whatsappToSip.packetsOut,
      lost: b.whatsappToSip.lost,
      dtmfDigits: b.whatsappToSip.dtmfDigits,
    },
    sipToWhatsapp: {
      packets: b.sipToWhatsapp.packetsOut,
      lost: b.sipToWhatsapp.lost,
      jitterMs: b.sipToWhatsapp.jitterMs,
      dtmfDigits: b.sipToWhatsapp.dtmfDigits,
    },
    whatsapp: {
      packetsSent: w.packetsSent,
      packetsReceived: w.packetsReceived,
      packetsLost: w.packetsLost,
      jitterMs: w.jitterMs,
      ...(w.roundTripTimeMs === undefined ? {} : { roundTripTimeMs: w.roundTripTimeMs }),
      ...(w.srtpDropped
        ? { srtpRejected: w.srtpDropped.authentication + w.srtpDropped.replay + w.srtpDropped.malformed }
        : {}),
    },
    ...(rtcp
      ? {
          sip: {
            rtcpReportsReceived: rtcp.reportsReceived,
            ...(rtcp.roundTripTimeMs === undefined ? {} : { roundTripTimeMs: rtcp.roundTripTimeMs }),
            ...(rtcp.remote ? { lostReportedByPbx: rtcp.remote.packetsLost } : {}),
            ...(srtp ? { srtpRejected: srtp.rtpRejected + srtp.rtcpRejected } : {}),
          },
        }
      : {}),
  };
}
