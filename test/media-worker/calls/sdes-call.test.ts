/** The SDES-SRTP call story on the in-process SIP adapter (the `sip` package). */
import { sdesCallContract } from './contract/sdes-call.ts';

sdesCallContract('inprocess');
