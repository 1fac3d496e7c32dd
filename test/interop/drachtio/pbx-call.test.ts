/** The PBX-started call stories on the drachtio SIP adapter (drachtio-srf over the prebuilt drachtio-server). */
import { pbxCallContract } from '../../media-worker/calls/contract/pbx-call.ts';

pbxCallContract('drachtio');
