/** The SDES-SRTP call story on the drachtio SIP adapter (drachtio-srf over the prebuilt drachtio-server). */
import { sdesCallContract } from '../../media-worker/calls/contract/sdes-call.ts';

sdesCallContract('drachtio');
