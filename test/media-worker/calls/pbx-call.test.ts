/** The PBX-started call stories on the in-process SIP adapter (the `sip` package). */
import { pbxCallContract } from './contract/pbx-call.ts';

pbxCallContract('inprocess');
