/** The UAS contract stories on the in-process adapter (the `sip` package). */
import { inboundCallContract } from './contract/inbound-call.ts';

inboundCallContract('inprocess');
