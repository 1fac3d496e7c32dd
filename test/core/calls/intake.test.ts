/**
 * Meta's `terminate` of a business-initiated call (meta-calling-api.md §2.7): the end reason comes from
 * `start_time`/`duration` and the call's direction — from the stored record when Meta's payload omits
 * `direction` (REF26 and UIC26 samples do) — and the owning worker learns whether Meta counts the call as
 * answered, which is what the permission ledger's "4 unanswered in a row" counts.
 */
import { describe, expect, it } from 'vitest';
import type { CallHistoryEntry, CallPatch, CallRecord, CallStore, WorkerSignal } from '#core/calls/call-record.ts';
import { transition } from '#core/calls/call-state.ts';
import { handleCallTerminated, type IntakeDeps } from '#core/calls/intake.ts';
import type { Logger } from '#core/logger.ts';
import type { CallTerminated } from '#core/meta/webhook.ts';

/** A call store in memory, with the store's conditional semantics. */
class MemoryCallStore implements CallStore {
  readonly records = new Map<string, CallRecord>();
  readonly histories = new Map<string, CallHistoryEntry[]>();
  async createIfAbsent(record: CallRecord) {
    const existing = this.records.get(record.callId);
    if (existing) return { created: false as const, existing };
    this.records.set(record.callId, record);
    return { created: true as const };
  }
  async get(callId: string) {
    return this.records.get(callId);
  }
  async transition(callId: string, event: Parameters<CallStore['transition']>[1], patch: CallPatch = {}) {
    const r = this.records.get(callId);
    const t = transition(r?.state ?? 'ended', event);
    if (!r || !t?.from.includes(r.state)) return undefined;
    const next = { ...r, ...patch, state: t.to, version: r.version + 1 } as CallRecord;
    this.records.set(callId, next);
    return next;
  }
  async patchIf(callId: string, expect: Partial<Record<keyof CallRecord, unknown>>, patch: CallPatch) {
    const r = this.records.get(callId);
    if (!r || Object.entries(expect).some(([k, v]) => r[k as keyof CallRecord] !== v)) return false;
    this.records.set(callId, { ...r, ...patch } as CallRecord);
    return true;
  }
  async acquireSlot() {
    return true;
  }
  async releaseSlot() {}
  async slotsInUse() {
    return 0;
  }
  async appendHistory(callId: string, entry: CallHistoryEntry) {
    this.histories.set(callId, [...(this.histories.get(callId) ?? []), entry]);
  }
  async history(callId: string) {
    return this.histories.get(callId) ?? [];
  }
}

const silent: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };
const line = { phoneNumberId: '436666719526789', businessNumber: '447700900123', accountId: '366634483210360' };
const owner = { workerId: 'worker-1', controlQueueUrl: 'http://queue/worker-1' };

function setUp() {
  const calls = new MemoryCallStore();
  const signals: WorkerSignal[] = [];
  const deps: IntakeDeps = {
    calls,
    jobs: { enqueue: async () => {} },
    signals: { notify: async (_owner, s) => void signals.push(s) },
    meta: { reject: async () => {} },
    policy: {
      lines: [line],
      afterHours: { action: 'reject' },
      maxConcurrentCalls: 10,
      staleAfterMs: 30_000,
      admissionLeaseMs: 10_000,
      finishedRetentionSeconds: 3600,
    },
    now: () => 1_764_000_100_000,
    logger: silent,
  };
  return { calls, signals, deps };
}

/** A business-initiated call ringing on worker-1. */
function ringingBusinessCall(callId: string): CallRecord {
  return {
    callId,
    direction: 'business-initiated',
    state: 'ringing',
    version: 3,
    line,
    user: { phone: '5511955551234' },
    createdAt: 1_764_000_000_000,
    updatedAt: 1_764_000_000_000,
    owner,
  };
}

/** Meta's terminate as REF26's sample has it: no `direction`. */
function terminateWithoutDirection(callId: string, answered: boolean): CallTerminated {
  return {
    kind: 'call-terminated',
    callId,
    line,
    user: { phone: '5511955551234' },
    status: 'COMPLETED',
    errors: [],
    timestamp: 1_764_000_090,
    ...(answered ? { startTime: 1_764_000_010, endTime: 1_764_000_090, durationSeconds: 80 } : {}),
  };
}

describe('Meta’s terminate of a business-initiated call without `direction`', () => {
  it('never picked up (no start_time): ends `unanswered` by the stored direction, and the worker hears it unanswered', async () => {
    const { calls, signals, deps } = setUp();
    await calls.createIfAbsent(ringingBusinessCall('wacid.bic-unanswered'));
    const outcome = await handleCallTerminated(terminateWithoutDirection('wacid.bic-unanswered', false), deps);
    expect(outcome).toEqual({ result: 'ended', reason: 'unanswered' });
    expect(await calls.get('wacid.bic-unanswered')).toMatchObject({ state: 'ended', endReason: 'unanswered' });
    expect(signals).toEqual([
      { type: 'call-terminated', callId: 'wacid.bic-unanswered', reason: 'unanswered', answered: false },
    ]);
  });

  it('picked up (start_time, duration): the user hung up, and the worker hears it answered', async () => {
    const { calls, signals, deps } = setUp();
    await calls.createIfAbsent({ ...ringingBusinessCall('wacid.bic-answered'), state: 'answered' });
    const outcome = await handleCallTerminated(terminateWithoutDirection('wacid.bic-answered', true), deps);
    expect(outcome).toEqual({ result: 'ended', reason: 'caller-hung-up' });
    expect(await calls.get('wacid.bic-answered')).toMatchObject({ endReason: 'caller-hung-up', durationSeconds: 80 });
    expect(signals).toEqual([
      { type: 'call-terminated', callId: 'wacid.bic-answered', reason: 'caller-hung-up', answered: true },
    ]);
  });
});
