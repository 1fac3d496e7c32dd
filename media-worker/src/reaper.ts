/**
 * Survives the loss of a worker. Every worker heartbeats its active calls into the workers table;
 * a worker whose heartbeat is older than the grace period is dead, and whichever live worker sees
 * it first ends the dead worker's calls — in the store (a conditional write, so only one reaper
 * acts) and at Meta — and removes its control queue and entry. Media of a dead worker cannot be
 * recovered (it lived in that process); what must not happen is a call left "answered" forever,
 * its concurrency slot held, or the WhatsApp user waiting on silence until Meta's watchdog.
 */
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { Logger } from 'pino';
import type { DynamoWorkerRegistry } from '#adapters/aws/dynamo-workers.ts';
import { deleteControlQueue } from '#adapters/aws/sqs-queues.ts';
import type { CallRecord, CallStore } from '#core/calls/call-record.ts';
import { endCall } from '#core/calls/lifecycle.ts';
import type { MetaGraphClient } from '#core/meta/graph-client.ts';

/** Collaborators of the reaper. */
export interface ReaperDeps {
  readonly selfId: string;
  readonly registry: DynamoWorkerRegistry;
  readonly calls: CallStore;
  readonly meta: Pick<MetaGraphClient, 'reject' | 'terminate'>;
  readonly sqs: SQSClient;
  readonly logger: Logger;
  readonly now: () => number;
  /** A worker silent this long is dead. */
  readonly graceMs: number;
  readonly finishedRetentionSeconds: number;
}

/** One reaping pass. Returns the ids of the calls it ended. */
export async function reapDeadWorkers(d: ReaperDeps): Promise<string[]> {
  const ended: string[] = [];
  const cutoff = d.now() - d.graceMs;
  for (const worker of await d.registry.list()) {
    if (worker.workerId === d.selfId || worker.heartbeatAt >= cutoff) continue;
    const log = d.logger.child({ deadWorker: worker.workerId });
    log.warn({ heartbeatAt: worker.heartbeatAt, calls: worker.callIds?.length ?? 0 }, 'reaping a dead worker');
    for (const callId of worker.callIds ?? []) {
      const call = await d.calls.get(callId);
      if (!call || call.state === 'ended' || call.owner?.workerId !== worker.workerId) continue;
      // `worker-lost`, not `bridge-error`: nothing went wrong in this call's handling that the record
      // could name; the process carrying its media vanished without a word.
      const done = await endCall(
        callId,
        'worker-lost',
        { calls: d.calls, now: d.now, finishedRetentionSeconds: d.finishedRetentionSeconds },
        { endedBy: 'bridge' },
      );
      if (!done) continue; // another reaper, or the webhook, got there first
      ended.push(callId);
      const action = metaEndAction(call);
      await d.meta[action](call.line.phoneNumberId, callId).catch((error: unknown) =>
        log.warn({ callId, err: error, action }, 'telling Meta about a reaped call failed'),
      );
    }
    if (await d.registry.remove(worker.workerId, worker.heartbeatAt)) {
      await deleteControlQueue(d.sqs, worker.controlQueueUrl).catch(() => undefined);
    }
  }
  return ended;
}

/**
 * How to end a reaped call at Meta: `reject` only a user-initiated call Meta has heard nothing of
 * yet (queued or claimed); once pre-accepted, Meta's rule is `terminate` (M-TRB: "If the SIP UA
 * rejects the call instead of returning a 200 OK, use the terminate Graph API"), and a
 * business-initiated call is never rejected by the business.
 */
export function metaEndAction(call: Pick<CallRecord, 'state' | 'direction'>): 'reject' | 'terminate' {
  return call.direction === 'user-initiated' && (call.state === 'queued' || call.state === 'claimed')
    ? 'reject'
    : 'terminate';
}
