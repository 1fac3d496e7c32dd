/**
 * Ending a call: the one path used by the webhook function and the media workers, so the end is
 * recorded once, the concurrency slot is returned once, and the history says why.
 */

import type { CallPatch, CallRecord, CallStore } from './call-record.ts';
import type { EndReason } from './call-state.ts';

/** What ending a call needs. */
export interface EndCallDeps {
  readonly calls: CallStore;
  readonly now: () => number;
  /** TTL for finished records, seconds after the end. */
  readonly finishedRetentionSeconds: number;
}

/**
 * Moves the call to `ended` (single winner across duplicates and racing processes), returns its
 * concurrency slot and records the end in its history.
 *
 * @returns the ended record, or `undefined` if the call had already ended (or does not exist).
 */
export async function endCall(
  callId: string,
  reason: EndReason,
  deps: EndCallDeps,
  patch: CallPatch = {},
): Promise<CallRecord | undefined> {
  const t = deps.now();
  const ended = await deps.calls.transition(
    callId,
    { type: 'ended', reason },
    {
      endReason: reason,
      endedBy: 'bridge',
      endedAt: t,
      updatedAt: t,
      expiresAt: Math.floor(t / 1000) + deps.finishedRetentionSeconds,
      ...patch,
    },
  );
  if (!ended) return undefined;
  await releaseSlotOnce(ended, deps.calls);
  await deps.calls.appendHistory(callId, { at: t, what: 'ended', detail: { reason, by: ended.endedBy } });
  return ended;
}

/** Returns the call's concurrency slot exactly once, guarded by the record's `slotHeld` flag. */
export async function releaseSlotOnce(call: CallRecord, calls: CallStore): Promise<void> {
  if (!call.slotHeld) return;
  if (await calls.patchIf(call.callId, { slotHeld: true }, { slotHeld: false })) {
    await calls.releaseSlot(call.line.phoneNumberId);
  }
}
