/** The user-initiated call stories on the in-process SIP adapter (the `sip` package). */
import { userCallContract } from './contract/user-call.ts';

userCallContract('inprocess');
