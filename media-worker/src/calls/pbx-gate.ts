/**
 * The PBX gate: decides, before anything else happens, whether an INVITE may start a
 * business-initiated call. Only allow-listed sources are served; known scanner user agents and
 * malformed targets are refused at once. Nothing reaches Meta for a refused INVITE: no toll fraud
 * through the bridge (anchors-perf-reliability-style.md §B5).
 */
import { BlockList, isIPv4 } from 'node:net';

/** Why the gate refused an INVITE, with the SIP answer to give. */
export interface GateRefusal {
  readonly allowed: false;
  readonly sipStatus: 403 | 404 | 400;
  readonly reason: 'source-not-allowed' | 'scanner' | 'bad-target';
  readonly detail: string;
}

/** An INVITE the gate lets through, with the WhatsApp number it asks for. */
export interface GatePass {
  readonly allowed: true;
  /** The callee's phone digits, from `sip:+<digits>@…`. */
  readonly phone: string;
}

/** User agents of SIP scanners (SIPVicious and friends). */
const SCANNERS = /friendly-scanner|sipvicious|sipcli|sip-cli|sundayddr|iWar|sipsak|VaxSIPUserAgent|pplsip|SIPScan/i;

/** Builds the gate from CIDR allow-list entries (`10.0.0.0/8`, `127.0.0.1/32`, `192.0.2.7`). */
export function createPbxGate(allowedSources: readonly string[]) {
  const list = new BlockList();
  for (const entry of allowedSources) {
    const [address, bits] = entry.split('/');
    if (!address) continue;
    const type = isIPv4(address) ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(bits), type);
  }
  /** Checks one INVITE. */
  return function gate(invite: {
    sourceAddress: string;
    userAgent?: string;
    requestUri: string;
  }): GatePass | GateRefusal {
    if (invite.userAgent && SCANNERS.test(invite.userAgent)) {
      return { allowed: false, sipStatus: 403, reason: 'scanner', detail: 'scanner user agent' };
    }
    const type = isIPv4(invite.sourceAddress) ? 'ipv4' : 'ipv6';
    if (allowedSources.length === 0 || !list.check(invite.sourceAddress, type)) {
      return {
        allowed: false,
        sipStatus: 403,
        reason: 'source-not-allowed',
        detail: `source ${invite.sourceAddress} is not allowed`,
      };
    }
    // The PBX dials the WhatsApp user in E.164: sip:+<digits>@bridge (RFC 3966 style user part).
    const user = /^sips?:\+?(\d{6,15})@/.exec(invite.requestUri)?.[1];
    if (!user)
      return {
        allowed: false,
        sipStatus: 404,
        reason: 'bad-target',
        detail: 'request URI must be sip:+<E.164 digits>@bridge',
      };
    return { allowed: true, phone: user };
  };
}

/** The gate function. */
export type PbxGate = ReturnType<typeof createPbxGate>;
