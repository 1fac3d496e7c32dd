/** The OPTIONS probe contract stories on the in-process adapter (the `sip` package). */
import { probeContract } from './contract/probe.ts';

probeContract('inprocess');
