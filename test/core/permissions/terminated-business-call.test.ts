/**
 * The webhook counts every business-initiated call from Meta's terminate (Corrections §3), the
 * worker may report the same call; the ledger counts each call once.
 */
import { describe, expect, it } from 'vitest';
import {
  findPermission,
  type LedgerDeps,
  recordTerminatedBusinessCall,
  recordUnansweredCall,
} from '#core/permissions/service.ts';
import { MemoryPermissionStore } from '../../helpers/memory-permission-store.ts';

const PNID = '436666719526789';
const user = { phone: '5511900000028' };
const deps = (): LedgerDeps => ({ permissions: new MemoryPermissionStore(), now: () => Date.UTC(2026, 3, 1, 9) });
const streak = async (d: LedgerDeps) => (await findPermission(d.permissions, PNID, user)).entry?.consecutiveUnanswered;

describe('a business-initiated call counted from its terminate', () => {
  const terminate = { callId: 'wacid.1', phoneNumberId: PNID, user, answered: false, errorCodes: [] };

  it('counts an unanswered call once, however many reports of it arrive', async () => {
    const d = deps();
    expect(await recordTerminatedBusinessCall(terminate, d)).toBe('unanswered');
    await recordTerminatedBusinessCall(terminate, d); // Meta's redelivery
    await recordUnansweredCall({ phoneNumberId: PNID, user, callId: 'wacid.1' }, d); // the worker's report
    expect(await streak(d)).toBe(1);
  });

  it('counts a terminate with start_time as connected, and ends the streak', async () => {
    const d = deps();
    await recordTerminatedBusinessCall(terminate, d);
    expect(await recordTerminatedBusinessCall({ ...terminate, callId: 'wacid.2', answered: true }, d)).toBe(
      'connected',
    );
    expect((await findPermission(d.permissions, PNID, user)).entry).toMatchObject({ consecutiveUnanswered: 0 });
  });

  it.each([
    [138007, 'the business did not apply Meta’s answer in time: the phone never rang'],
    [138019, 'the user’s client could not set the call up'],
    [138020, 'the user’s client could not reach Meta’s relay'],
  ])('does not count a call that failed unanswered with %i (%s)', async (code) => {
    const d = deps();
    expect(await recordTerminatedBusinessCall({ ...terminate, errorCodes: [code] }, d)).toBe('not-counted');
    expect(await streak(d)).toBeUndefined();
  });
});
