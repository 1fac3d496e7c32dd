/**
 * The X-headers a user-initiated call's INVITE carries (`SIP_X_HEADERS`): the caller's identity
 * and the call's context, so the PBX can route and screen-pop.
 */
import type { UserCallJob } from '#core/calls/call-record.ts';
import type { XHeaderField } from '../config.ts';

/** Builds the configured X-headers from the call's context; absent values are left out. */
export function xHeaders(
  job: UserCallJob,
  mapping: ReadonlyArray<readonly [string, XHeaderField]>,
): Record<string, string> {
  const values: Record<XHeaderField, string | undefined> = {
    callerNumber: job.caller.phone ? `+${job.caller.phone}` : undefined,
    userId: job.caller.userId,
    parentUserId: job.caller.parentUserId,
    displayName: job.caller.name,
    username: job.caller.username,
    callId: job.callId,
    phoneNumberId: job.line.phoneNumberId,
    businessNumber: `+${job.line.businessNumber}`,
    ctaPayload: job.ctaPayload,
    deeplinkPayload: job.deeplinkPayload,
  };
  const headers: Record<string, string> = {};
  for (const [name, field] of mapping) {
    const v = values[field];
    if (v !== undefined && v !== '') headers[name] = v;
  }
  return headers;
}
