/**
 * The SIP leg's media endpoint of a call, the same for every kind of call: an
 * RTP session in the configured port range and the SDP parameters that
 * advertise it (the public address behind NAT, the configured codec order, and with `SIP_SRTP`
 * on a fresh SDES key for the call from the CSPRNG).
 */
import type { Logger } from 'pino';
import type { WorkerConfig } from '../config.ts';
import { RtpSession } from '../media/rtp-session.ts';
import type { SipSdpOptions } from '../media/sip-sdp.ts';
import { newSdesKeySalt } from '../sdp/sdes.ts';

/** Open the call's SIP-side RTP session; `sdp` is what `createSipOffer`/`answerSipOffer` advertise for it. */
export async function openSipMedia(
  config: Pick<WorkerConfig, 'media'>,
  logger: Logger,
  callId?: string,
): Promise<{ rtp: RtpSession; sdp: SipSdpOptions }> {
  const rtp = await RtpSession.open({
    bindAddress: config.media.bindAddress,
    portRange: [config.media.portMin, config.media.portMax],
    ...(callId === undefined ? {} : { callId }),
    logger,
  });
  const policy = config.media.srtp ?? 'off';
  return {
    rtp,
    sdp: {
      address: config.media.sipAddress ?? rtp.address,
      port: rtp.port,
      codecs: [...config.media.codecs],
      ...(policy === 'off' ? {} : { srtp: { policy, keySalt: newSdesKeySalt() } }),
    },
  };
}
