/**
 * Business-initiated call requests from the control API (`POST /v1/calls`): run the rules, take a
 * concurrency slot, write a request record, enqueue one `bridge-business-call` job.
 *
 * Meta's call id exists only once the worker has called Meta `connect` (§3.1), so the API answers
 * with a request id (`bcr.<uuid>`). The request record is an ordinary call record keyed by that id
 * (direction `business-initiated`, state `queued`, `slotHeld: true`). The worker, once Meta's
 * `connect` has returned the call id, calls {@link linkBusinessCall}: the slot passes to Meta's call
 * record. If the worker cannot place the call, it ends the request record with
 * `endCall(requestId, reason)`, which returns the slot. `GET /v1/calls/{id}` accepts either id
 * ({@link resolveCall}).
 */
import { createHash, randomUUID } from 'node:crypto';
import type { BusinessCallJob, CallHistoryEntry, CallJobQueue, CallRecord, CallStore } from '../calls/call-record.ts';
import { endCall } from '../calls/lifecycle.ts';
import { JobQueueError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { WhatsAppUser } from '../meta/webhook.ts';
import type { CheckBusinessCall, Refusal } from './contract.ts';
import { refusal } from './rules.ts';

/** A call the API client asks for. */
export interface BusinessCallInput {
  readonly line: { readonly phoneNumberId: string; readonly businessNumber: string };
  readonly user: WhatsAppUser;
  readonly sipTarget?: string;
  readonly mode: 'customer-first' | 'agent-first';
  readonly callbackData?: string;
  /**
   * The client's `Idempotency-Key`: a retry with the same key (for the same business number) gets
   * the first request's answer instead of a second call.
   */
  readonly idempotencyKey?: string;
}

/** Collaborators of {@link requestBusinessCall}. */
export interface BusinessCallRequestDeps {
  readonly check: CheckBusinessCall;
  readonly calls: CallStore;
  readonly jobs: CallJobQueue;
  readonly maxConcurrentCalls: number;
  readonly finishedRetentionSeconds: number;
  readonly now: () => number;
  readonly logger: Logger;
  /** Request ids; default `bcr.<uuid>`. */
  readonly newRequestId?: () => string;
}

/** An accepted request. */
export interface QueuedBusinessCall {
  readonly allowed: true;
  readonly requestId: string;
  readonly permission: 'temporary' | 'permanent';
  readonly expiresAt?: number;
  /** True when this answers a retry of an earlier request with the same idempotency key. */
  readonly replayed?: boolean;
}

/** The request id of an idempotency key: stable per business number and key, so retries meet the first request. */
export function requestIdForKey(phoneNumberId: string, key: string): string {
  return `bcr.${createHash('sha256').update(`${phoneNumberId}\n${key}`).digest('hex').slice(0, 32)}`;
}

function replay(existing: CallRecord): QueuedBusinessCall {
  return { allowed: true, requestId: existing.callId, permission: existing.permission ?? 'temporary', replayed: true };
}

/**
 * Checks and queues a business-initiated call.
 *
 * @returns the request id, or the refusal with its reason and statuses.
 * @throws {@link JobQueueError} when the job could not be enqueued (the slot is returned and the
 *   request record ended with `bridge-error`).
 */
export async function requestBusinessCall(
  input: BusinessCallInput,
  deps: BusinessCallRequestDeps,
): Promise<QueuedBusinessCall | Refusal> {
  const keyed =
    input.idempotencyKey === undefined ? undefined : requestIdForKey(input.line.phoneNumberId, input.idempotencyKey);
  if (keyed) {
    const existing = await deps.calls.get(keyed);
    if (existing) return replay(existing);
  }
  const verdict = await deps.check({ phoneNumberId: input.line.phoneNumberId, user: input.user });
  if (!verdict.allowed) return verdict;
  // The rules only read the slot count; taking the slot is the conditional write that decides.
  if (!(await deps.calls.acquireSlot(input.line.phoneNumberId, deps.maxConcurrentCalls))) {
    return refusal('over-capacity', `all ${deps.maxConcurrentCalls} concurrent calls of this number are in use`);
  }
  const requestId = keyed ?? (deps.newRequestId ?? (() => `bcr.${randomUUID()}`))();
  const t = deps.now();
  const record: CallRecord = {
    callId: requestId,
    direction: 'business-initiated',
    state: 'queued',
    version: 1,
    line: { ...input.line, accountId: '' },
    user: input.user,
    mode: input.mode,
    ...(input.sipTarget === undefined ? {} : { sipTarget: input.sipTarget }),
    ...(input.callbackData === undefined ? {} : { callbackData: input.callbackData }),
    permission: verdict.permission,
    createdAt: t,
    updatedAt: t,
    slotHeld: true,
  };
  const created = await deps.calls.createIfAbsent(record);
  if (!created.created) {
    // A concurrent retry with the same key won: give our slot back and answer as it did.
    await deps.calls.releaseSlot(input.line.phoneNumberId);
    return replay(created.existing);
  }
  await deps.calls.appendHistory(requestId, {
    at: t,
    what: 'requested',
    detail: { permission: verdict.permission, mode: input.mode },
  });
  const job: BusinessCallJob = {
    type: 'bridge-business-call',
    requestId,
    line: record.line,
    user: input.user,
    mode: input.mode,
    ...(input.sipTarget === undefined ? {} : { sipTarget: input.sipTarget }),
    ...(input.callbackData === undefined ? {} : { callbackData: input.callbackData }),
    enqueuedAt: t,
  };
  try {
    await deps.jobs.enqueue(job);
  } catch (cause) {
    await endCall(requestId, 'bridge-error', {
      calls: deps.calls,
      now: deps.now,
      finishedRetentionSeconds: deps.finishedRetentionSeconds,
    });
    throw new JobQueueError('could not enqueue the business call job', { callId: requestId, cause });
  }
  await deps.calls.patchIf(requestId, {}, { jobEnqueuedAt: t, updatedAt: t });
  await deps.calls.appendHistory(requestId, { at: t, what: 'queued' });
  deps.logger.info('business-initiated call queued', { requestId, mode: input.mode });
  return {
    allowed: true,
    requestId,
    permission: verdict.permission,
    ...(verdict.expiresAt === undefined ? {} : { expiresAt: verdict.expiresAt }),
  };
}

/**
 * Records Meta's call id on the request record once the worker's `connect` returned it, and hands
 * the request's concurrency slot to Meta's call record (which the worker writes with
 * `slotHeld: true` and ends with `endCall`, returning the slot once). The request record is then
 * only a pointer, kept for `retentionSeconds`. Returns false if the request already has a Meta
 * call id (a duplicate job) or does not exist.
 */
export async function linkBusinessCall(
  calls: CallStore,
  requestId: string,
  metaCallId: string,
  now: number,
  retentionSeconds = 30 * 86_400,
): Promise<boolean> {
  return calls.patchIf(
    requestId,
    { metaCallId: undefined },
    { metaCallId, slotHeld: false, updatedAt: now, expiresAt: Math.floor(now / 1000) + retentionSeconds },
  );
}

/**
 * A call by Meta's call id or by request id: a request linked to a Meta call resolves to that call's
 * record (with `requestId`); an unlinked request resolves to the request record itself.
 */
export async function resolveCall(
  calls: CallStore,
  id: string,
): Promise<{ record: CallRecord; history: CallHistoryEntry[]; requestId?: string } | undefined> {
  const record = await calls.get(id);
  if (!record) return undefined;
  if (record.metaCallId !== undefined) {
    const call = await calls.get(record.metaCallId);
    if (call) {
      const history = [...(await calls.history(id)), ...(await calls.history(call.callId))].sort((a, b) => a.at - b.at);
      return { record: call, history, requestId: id };
    }
  }
  return {
    record,
    history: await calls.history(id),
    ...(record.callId.startsWith('bcr.') ? { requestId: record.callId } : {}),
  };
}
