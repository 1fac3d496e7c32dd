/**
 * The OPTIONS probe contract stories on the drachtio adapter: drachtio-srf over the prebuilt
 * drachtio-server (`DRACHTIO_SERVER_BIN`). Fails, never skips, when the binary is missing.
 */
import { probeContract } from '../../media-worker/sip/contract/probe.ts';

probeContract('drachtio');
