/** The inbound digest contract stories on the drachtio adapter (drachtio-srf over the prebuilt drachtio-server). */
import { inboundDigestContract } from '../../media-worker/sip/contract/inbound-digest.ts';

inboundDigestContract('drachtio');
