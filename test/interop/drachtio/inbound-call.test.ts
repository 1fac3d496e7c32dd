/** The UAS contract stories on the drachtio adapter (drachtio-srf over the prebuilt drachtio-server). */
import { inboundCallContract } from '../../media-worker/sip/contract/inbound-call.ts';

inboundCallContract('drachtio');
