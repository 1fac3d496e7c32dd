/** The UAC contract stories on the in-process adapter (the `sip` package). */
import { outboundCallContract } from './contract/outbound-call.ts';

outboundCallContract('inprocess');
