/** The user-initiated call stories on the drachtio SIP adapter (drachtio-srf over the prebuilt drachtio-server). */
import { userCallContract } from '../../media-worker/calls/contract/user-call.ts';

userCallContract('drachtio');
