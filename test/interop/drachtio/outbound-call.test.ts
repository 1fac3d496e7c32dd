/**
 * The UAC contract stories on the drachtio adapter: drachtio-srf over the prebuilt drachtio-server
 * (`DRACHTIO_SERVER_BIN`, default ../shared/tools/drachtio-server/bin/drachtio-server). Fails, never
 * skips, when the binary is missing.
 */
import { outboundCallContract } from '../../media-worker/sip/contract/outbound-call.ts';

outboundCallContract('drachtio');
