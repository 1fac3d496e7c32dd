/**
 * Intake of user-initiated calls: what the webhook function does with Meta's `connect` and
 * `terminate` events. Collaborators come in as arguments; nothing here knows about AWS or HTTP.
 *
 * Ordering and duplicates (meta-calling-api.md §2.4): Meta delivers at least once, in no particular
 * order. A `connect` is deduplicated by a conditional create on Meta's call id; a `terminate` that
 * arrives first leaves an `ended` tombstone, so the late `connect` finds the call over and no job
 * is created.
 */

import type { BusinessHours } from '../checks/business-hours.ts';
import { isOpen } from '../checks/business-hours.ts';
import type { SanctionsLists } from '../checks/sanctions.ts';
import { checkSanctions } from '../checks/sanctions.ts';
import { BridgeError, JobQueueError, MetaApiError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { CallOffered, CallTerminated } from '../meta/webhook.ts';
import type {
  CallJobQueue,
  CallPatch,
  CallRecord,
  CallStore,
  MetaCallControl,
  UserCallJob,
  WorkerSignals,
} from './call-record.ts';
import type { EndReason } from './call-state.ts';
import { endCall } from './lifecycle.ts';

/** The business numbers this deployment serves, keyed by Meta's phone number id. */
export interface ServedLine {
  readonly phoneNumberId: string;
  readonly businessNumber: string;
}

/** Rules applied to every offered call. */
export interface IntakePolicy {
  readonly lines: readonly ServedLine[];
  readonly sanctions?: SanctionsLists;
  /** Undefined: always open. */
  readonly businessHours?: BusinessHours;
  /** Outside business hours: route to another SIP target, or reject at Meta. */
  readonly afterHours: { readonly action: 'reject' } | { readonly action: 'route'; readonly sipTarget: string };
  /** Concurrent calls per business number. Meta's own cap is 1000 (§4.2). */
  readonly maxConcurrentCalls: number;
  /** A connect older than this is stale: Meta has given up on it (30–60 s, §3.2). */
  readonly staleAfterMs: number;
  /** How long one webhook invocation may hold an admitting call before a retry may take it over. */
  readonly admissionLeaseMs: number;
  /** TTL for finished records, seconds after the end. */
  readonly finishedRetentionSeconds: number;
}

/** Collaborators of the intake. */
export interface IntakeDeps {
  readonly calls: CallStore;
  readonly jobs: CallJobQueue;
  readonly signals: WorkerSignals;
  readonly meta: MetaCallControl;
  readonly policy: IntakePolicy;
  readonly now: () => number;
  readonly logger: Logger;
}

/** What became of an offered call. */
export type OfferOutcome =
  | { readonly result: 'queued'; readonly route: 'default' | 'after-hours' }
  | { readonly result: 'duplicate'; readonly state: string }
  | { readonly result: 'refused'; readonly reason: EndReason };

/**
 * Handles a user-initiated call offer: dedupe, checks, admission, record, one job.
 *
 * @throws {@link JobQueueError} when the job could not be enqueued; the caller answers 500 so
 *   Meta redelivers, and the lease is released so the redelivery can finish the work.
 */
export async function handleCallOffered(event: CallOffered, deps: IntakeDeps): Promise<OfferOutcome> {
  const { calls, policy, now } = deps;
  const log = deps.logger.child({ callId: event.callId });
  const t = now();
  const record: CallRecord = {
    callId: event.callId,
    direction: 'user-initiated',
    state: 'admitting',
    version: 1,
    line: event.line,
    user: event.caller,
    sdpOffer: event.sdpOffer,
    ...(event.deeplinkPayload === undefined ? {} : { deeplinkPayload: event.deeplinkPayload }),
    ...(event.ctaPayload === undefined ? {} : { ctaPayload: event.ctaPayload }),
    offeredAt: event.timestamp,
    createdAt: t,
    updatedAt: t,
    leaseUntil: t + policy.admissionLeaseMs,
  };

  const created = await calls.createIfAbsent(record);
  if (!created.created) {
    const existing = created.existing;
    if (!canTakeOver(existing, t)) {
      log.info('duplicate connect ignored', { state: existing.state });
      return { result: 'duplicate', state: existing.state };
    }
    // An earlier invocation died or failed between create and enqueue: take its lease and finish.
    const took = await calls.patchIf(
      event.callId,
      { leaseUntil: existing.leaseUntil, state: existing.state },
      { leaseUntil: t + policy.admissionLeaseMs, updatedAt: t },
    );
    if (!took) return { result: 'duplicate', state: existing.state };
    log.warn('taking over an unfinished admission', { state: existing.state });
    if (existing.state === 'queued') return enqueue(existing, deps);
  } else {
    await calls.appendHistory(event.callId, { at: t, what: 'offered' });
  }

  const refusal = refusalFor(event, deps);
  if (refusal === 'stale-connect' || refusal === 'number-not-configured') {
    // No Graph call: stale events must not trigger actions (§2.4), and an unknown number has no token.
    await end(event.callId, refusal, deps);
    log.warn('call refused without contacting Meta', { reason: refusal });
    return { result: 'refused', reason: refusal };
  }
  if (refusal) return refuse(event, refusal, deps);

  const route = isOpen(policy.businessHours, new Date(t)) ? 'default' : 'after-hours';
  if (!(await calls.acquireSlot(event.line.phoneNumberId, policy.maxConcurrentCalls))) {
    return refuse(event, 'over-capacity', deps);
  }
  const sipTarget =
    route === 'after-hours' && policy.afterHours.action === 'route' ? policy.afterHours.sipTarget : undefined;
  const queued = await calls.transition(
    event.callId,
    { type: 'admitted' },
    { slotHeld: true, route, ...(sipTarget === undefined ? {} : { sipTarget }), updatedAt: now() },
  );
  if (!queued) {
    // A terminate won the race while we checked: give the slot back, nothing to bridge.
    await calls.releaseSlot(event.line.phoneNumberId);
    const current = await calls.get(event.callId);
    return { result: 'duplicate', state: current?.state ?? 'unknown' };
  }
  return enqueue(queued, deps);
}

/** Decides whether the call may not be taken, before any side effect but the dedupe record. */
function refusalFor(event: CallOffered, deps: IntakeDeps): EndReason | undefined {
  const { policy } = deps;
  if (deps.now() - event.timestamp > policy.staleAfterMs) return 'stale-connect';
  if (!policy.lines.some((l) => l.phoneNumberId === event.line.phoneNumberId)) return 'number-not-configured';
  const verdict = checkSanctions(event.caller, policy.sanctions);
  if (verdict.sanctioned) return 'sanctioned-caller';
  if (!isOpen(policy.businessHours, new Date(deps.now())) && policy.afterHours.action === 'reject')
    return 'after-hours';
  return undefined;
}

async function enqueue(call: CallRecord, deps: IntakeDeps): Promise<OfferOutcome> {
  const t = deps.now();
  const job: UserCallJob = {
    type: 'bridge-user-call',
    callId: call.callId,
    line: call.line,
    caller: call.user,
    sdpOffer: call.sdpOffer ?? '',
    route: call.route ?? 'default',
    ...(call.sipTarget === undefined ? {} : { sipTarget: call.sipTarget }),
    ...(call.deeplinkPayload === undefined ? {} : { deeplinkPayload: call.deeplinkPayload }),
    ...(call.ctaPayload === undefined ? {} : { ctaPayload: call.ctaPayload }),
    offeredAt: call.offeredAt ?? call.createdAt,
    enqueuedAt: t,
  };
  try {
    await deps.jobs.enqueue(job);
  } catch (cause) {
    // Release the lease so Meta's redelivery can finish the admission at once.
    await deps.calls.patchIf(call.callId, { state: 'queued' }, { leaseUntil: 0 });
    throw new JobQueueError('could not enqueue the call job', { callId: call.callId, cause });
  }
  await deps.calls.patchIf(call.callId, {}, { jobEnqueuedAt: t, updatedAt: t });
  await deps.calls.appendHistory(call.callId, { at: t, what: 'queued', detail: { route: job.route } });
  deps.logger.info('call queued', { callId: call.callId, route: job.route });
  return { result: 'queued', route: job.route };
}

/** A retry may finish an admission whose invocation is gone: lease expired and no job yet. */
function canTakeOver(existing: CallRecord, now: number): boolean {
  return (
    (existing.state === 'admitting' || existing.state === 'queued') &&
    existing.jobEnqueuedAt === undefined &&
    (existing.leaseUntil ?? 0) < now
  );
}

async function refuse(event: CallOffered, reason: EndReason, deps: IntakeDeps): Promise<OfferOutcome> {
  const log = deps.logger.child({ callId: event.callId });
  const ended = await end(event.callId, reason, deps);
  if (!ended) return { result: 'duplicate', state: 'ended' };
  try {
    await deps.meta.reject(event.line.phoneNumberId, event.callId);
    log.info('call rejected at Meta', { reason });
  } catch (cause) {
    // Meta ends an unanswered call by itself after 30–60 s (§3.2); record why our reject failed.
    const detail =
      cause instanceof MetaApiError ? `${cause.status} ${cause.metaCode ?? ''} ${cause.message}` : String(cause);
    await deps.calls.patchIf(event.callId, {}, { rejectError: detail });
    log.warn('rejecting the call at Meta failed', { reason, error: detail });
  }
  return { result: 'refused', reason };
}

/** Ends a call in the store (single winner). Returns false if it had already ended. */
async function end(callId: string, reason: EndReason, deps: IntakeDeps, patch: CallPatch = {}): Promise<boolean> {
  const ended = await endCall(
    callId,
    reason,
    { calls: deps.calls, now: deps.now, finishedRetentionSeconds: deps.policy.finishedRetentionSeconds },
    patch,
  );
  return ended !== undefined;
}

/** What became of a terminate. */
export type TerminateOutcome =
  | { readonly result: 'ended' | 'ended-before-connect'; readonly reason: EndReason }
  | { readonly result: 'already-ended' };

/**
 * Handles Meta's `terminate`: finishes the record and tells the owning worker. A terminate for an
 * unknown call leaves an `ended` tombstone so a late `connect` is never bridged.
 */
export async function handleCallTerminated(event: CallTerminated, deps: IntakeDeps): Promise<TerminateOutcome> {
  const t = deps.now();
  const answered = event.startTime !== undefined || event.durationSeconds !== undefined;
  const facts = {
    metaStatus: event.status,
    ...(event.errors.length > 0 ? { metaErrors: event.errors } : {}),
    ...(event.durationSeconds === undefined ? {} : { durationSeconds: event.durationSeconds }),
    ...(event.startTime === undefined ? {} : { answeredAt: event.startTime }),
  };
  for (let attempt = 0; attempt < 3; attempt++) {
    const existing = await deps.calls.get(event.callId);
    if (!existing) {
      const tombstone: CallRecord = {
        callId: event.callId,
        direction: event.direction ?? 'user-initiated',
        state: 'ended',
        version: 1,
        line: event.line,
        user: event.user,
        createdAt: t,
        updatedAt: t,
        endedAt: t,
        endReason: 'terminated-before-connect',
        endedBy: 'whatsapp',
        expiresAt: Math.floor(t / 1000) + deps.policy.finishedRetentionSeconds,
        ...facts,
      };
      const created = await deps.calls.createIfAbsent(tombstone);
      if (created.created) {
        await deps.calls.appendHistory(event.callId, { at: t, what: 'terminated-before-connect' });
        deps.logger.info('terminate before connect: call will never be bridged', { callId: event.callId });
        return { result: 'ended-before-connect', reason: 'terminated-before-connect' };
      }
      continue; // the connect won the race: end the record it wrote
    }
    if (existing.state === 'ended') return { result: 'already-ended' };
    // Meta's samples omit `direction` in places (M-REF26, M-UIC26): the stored record knows it.
    const reason = terminateReason(event, event.direction ?? existing.direction, answered);
    const ended = await end(event.callId, reason, deps, { ...facts, endedBy: 'whatsapp' });
    if (!ended) continue;
    if (existing.owner) {
      await deps.signals.notify(existing.owner, {
        type: 'call-terminated',
        callId: event.callId,
        reason,
        answered,
        ...(event.errors.length > 0 ? { metaErrors: event.errors } : {}),
      });
    }
    deps.logger.info('call terminated by Meta', { callId: event.callId, status: event.status, answered });
    return { result: 'ended', reason };
  }
  throw new BridgeError('terminate lost every race for the call record', { callId: event.callId });
}

/**
 * The end reason of a call Meta terminated. A business-initiated call that ends without
 * `start_time` was never picked up (§2.7: the presence of `start_time`, not `status`, tells
 * answered from unanswered).
 */
function terminateReason(
  event: CallTerminated,
  direction: CallRecord['direction'] | undefined,
  answered: boolean,
): EndReason {
  const known = event.errors.map((e) => END_REASON_OF_META_ERROR[e.code]).find((r) => r !== undefined);
  if (known) return known;
  if (event.errors.length > 0 || event.status === 'FAILED') return 'meta-terminated';
  return direction === 'business-initiated' && !answered ? 'unanswered' : 'caller-hung-up';
}

/**
 * What a `terminate`'s error code says happened (M-TRB), as the call's end reason; the codes
 * themselves are kept on the record (`metaErrors`). A FAILED terminate with another code, or
 * none, ends `meta-terminated`.
 */
export const END_REASON_OF_META_ERROR: Readonly<Record<number, EndReason>> = {
  138007: 'meta-connect-timeout',
  138019: 'whatsapp-setup-failed',
  138020: 'whatsapp-setup-failed',
  138021: 'no-media-from-bridge',
  138022: 'whatsapp-media-failed',
  138023: 'whatsapp-media-failed',
};
