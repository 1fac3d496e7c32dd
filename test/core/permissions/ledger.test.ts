/**
 * The ledger's pure state function: every event, duplicates, stale replies, and the boundaries of
 * Meta's limits (meta-calling-api.md §4.1) on an explicit timeline.
 */
import { describe, expect, it } from 'vitest';
import {
  applyPermissionEvent,
  connectedCallsInWindow,
  effectivePermission,
  emptyEntry,
  nextRequestAllowedAt,
  type PermissionEntry,
  type PermissionEvent,
  permissionLimitsFor,
  SANDBOX_PERMISSION_LIMITS,
} from '#core/permissions/ledger.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 0, 1);

function run(
  events: PermissionEvent[],
  start: PermissionEntry = emptyEntry('pnid', '34600111222', { phone: '34600111222' }, T0),
) {
  let entry = start;
  for (const e of events) entry = applyPermissionEvent(entry, e).entry;
  return entry;
}

describe('permission states', () => {
  it('request → temporary accept → lapses exactly 7 days later, checked at use', () => {
    const entry = run([
      { type: 'request-sent', at: T0, id: 'wamid.r1', kind: 'interactive' },
      { type: 'reply-accept', at: T0 + 1000, id: 'wamid.a1', permanent: false },
    ]);
    expect(entry).toMatchObject({ state: 'temporary', source: 'user-action', expiresAt: T0 + 1000 + 7 * DAY });
    expect(effectivePermission(entry, T0 + 1000 + 7 * DAY - 1).state).toBe('temporary');
    expect(effectivePermission(entry, T0 + 1000 + 7 * DAY).state).toBe('expired');
  });

  it("uses Meta's expiry when the reply carries one", () => {
    const entry = run([{ type: 'reply-accept', at: T0, id: 'wamid.a', permanent: false, expiresAt: T0 + 3 * DAY }]);
    expect(entry.expiresAt).toBe(T0 + 3 * DAY);
  });

  it('a permanent grant survives a later callback grant; a user reject ends it at once', () => {
    const permanent = run([
      { type: 'reply-accept', at: T0, id: 'wamid.p', permanent: true },
      { type: 'callback-grant', at: T0 + 1000, id: 'wamid.cb', callId: 'wacid.1', expiresAt: T0 + 7 * DAY },
    ]);
    expect(permanent).toMatchObject({ state: 'permanent' });
    expect(permanent.expiresAt).toBeUndefined();
    const rejected = run([{ type: 'reply-reject', at: T0 + 2000, id: 'wamid.r' }], permanent);
    expect(rejected).toMatchObject({ state: 'rejected', source: 'user-action' });
  });

  it("Meta's automatic reject revokes", () => {
    const entry = run([
      { type: 'callback-grant', at: T0, id: 'wamid.cb', callId: 'wacid.1' },
      { type: 'auto-revoke', at: T0 + 1000, id: 'wamid.rv' },
    ]);
    expect(entry).toMatchObject({ state: 'revoked', source: 'automatic' });
  });

  it('ignores a duplicate message id and a reply older than the newest applied', () => {
    const granted = run([{ type: 'reply-accept', at: T0 + 5000, id: 'wamid.a', permanent: true }]);
    const dup = applyPermissionEvent(granted, { type: 'reply-accept', at: T0 + 5000, id: 'wamid.a', permanent: true });
    expect(dup).toMatchObject({ changed: false, why: 'duplicate' });
    const stale = applyPermissionEvent(granted, { type: 'reply-reject', at: T0 + 4000, id: 'wamid.old' });
    expect(stale).toMatchObject({ changed: false, why: 'stale' });
  });

  it("reconciles with Meta's status", () => {
    const temp = run([{ type: 'reconcile', at: T0, status: 'temporary', expiresAt: T0 + DAY }]);
    expect(temp).toMatchObject({ state: 'temporary', source: 'reconcile', reconciledAt: T0 });
    expect(run([{ type: 'reconcile', at: T0 + 1, status: 'no_permission' }], temp).state).toBe('revoked');
    expect(run([{ type: 'reconcile', at: T0 + DAY, status: 'no_permission' }], temp).state).toBe('none');
    expect(run([{ type: 'reconcile', at: T0, status: 'no_permission' }]).state).toBe('none');
  });
});

describe("Meta's limits at their boundaries", () => {
  it('requests: the 2nd within 24 h and the 3rd within 7 days are refused; a connected call resets both', () => {
    let entry = run([{ type: 'request-sent', at: T0, id: 'wamid.1', kind: 'interactive' }]);
    expect(nextRequestAllowedAt(entry, T0 + DAY - 1)).toBe(T0 + DAY);
    expect(nextRequestAllowedAt(entry, T0 + DAY)).toBeUndefined();
    entry = run([{ type: 'request-sent', at: T0 + DAY, id: 'wamid.2', kind: 'template' }], entry);
    expect(nextRequestAllowedAt(entry, T0 + 3 * DAY)).toBe(T0 + 7 * DAY);
    expect(nextRequestAllowedAt(entry, T0 + 7 * DAY)).toBeUndefined();
    entry = run([{ type: 'call-connected', at: T0 + 3 * DAY, callId: 'wacid.u', direction: 'user-initiated' }], entry);
    expect(nextRequestAllowedAt(entry, T0 + 3 * DAY)).toBeUndefined();
  });

  it('connected calls: 99 leave room for the 100th, 100 block the 101st until the oldest is 24 h old', () => {
    let entry = emptyEntry('pnid', 'u', { phone: '34600111222' }, T0);
    for (let i = 0; i < 99; i++) {
      entry = run(
        [{ type: 'call-connected', at: T0 + i * 1000, callId: `wacid.${i}`, direction: 'business-initiated' }],
        entry,
      );
    }
    expect(connectedCallsInWindow(entry, T0 + 100_000)).toEqual({ count: 99 });
    entry = run(
      [{ type: 'call-connected', at: T0 + 99_000, callId: 'wacid.99', direction: 'business-initiated' }],
      entry,
    );
    expect(connectedCallsInWindow(entry, T0 + 100_000)).toEqual({ count: 100, nextAllowedAt: T0 + DAY });
    expect(connectedCallsInWindow(entry, T0 + DAY)).toEqual({ count: 99 });
    // The same call reported twice counts once.
    expect(
      applyPermissionEvent(entry, {
        type: 'call-connected',
        at: T0 + 200_000,
        callId: 'wacid.99',
        direction: 'business-initiated',
      }).changed,
    ).toBe(false);
  });

  it('unanswered: 3 in a row keep the permission, the 4th revokes; a connected call breaks the streak', () => {
    const granted = run([{ type: 'reply-accept', at: T0, id: 'wamid.a', permanent: true }]);
    const miss = (n: number, from: number): PermissionEvent[] =>
      Array.from({ length: n }, (_, i) => ({
        type: 'call-unanswered',
        at: T0 + from + i,
        callId: `wacid.m${from + i}`,
      }));
    const three = run(miss(3, 10), granted);
    expect(three).toMatchObject({ state: 'permanent', consecutiveUnanswered: 3 });
    const broken = run(
      [{ type: 'call-connected', at: T0 + 20, callId: 'wacid.c', direction: 'business-initiated' }, ...miss(3, 30)],
      three,
    );
    expect(broken).toMatchObject({ state: 'permanent', consecutiveUnanswered: 3 });
    const four = run(miss(1, 40), broken);
    expect(four).toMatchObject({ state: 'revoked', source: 'automatic' });
  });
});

describe('sandbox and public test numbers: relaxed limits (OVR26)', () => {
  const sandbox = permissionLimitsFor('sandbox');

  it('are 25 requests per 24 h, 100 per 7 days and revocation after 10 unanswered; production keeps 1, 2 and 4', () => {
    expect(sandbox).toBe(SANDBOX_PERMISSION_LIMITS);
    expect(sandbox).toMatchObject({ requestsPer24h: 25, requestsPer7d: 100, revokeAfterUnanswered: 10 });
    expect(sandbox.connectedCallsPer24h).toBe(100);
    expect(permissionLimitsFor('production')).toMatchObject({
      requestsPer24h: 1,
      requestsPer7d: 2,
      revokeAfterUnanswered: 4,
    });
  });

  it('allow the 25th request within 24 h and refuse the 26th; the 101st within 7 days waits for the oldest', () => {
    let entry = emptyEntry('pnid', 'u', { phone: '34600111222' }, T0);
    const send = (at: number, i: number) =>
      applyPermissionEvent(entry, { type: 'request-sent', at, id: `wamid.s${i}`, kind: 'template' }, sandbox).entry;
    for (let i = 0; i < 24; i++) entry = send(T0 + i, i);
    expect(nextRequestAllowedAt(entry, T0 + 100, sandbox)).toBeUndefined();
    expect(nextRequestAllowedAt(entry, T0 + 100)).toBeGreaterThan(T0 + 6 * DAY); // production: refused for days
    entry = send(T0 + 24, 24);
    expect(nextRequestAllowedAt(entry, T0 + 100, sandbox)).toBe(T0 + DAY);
    // 25 a day for four days: the 101st waits for the first to be 7 days old.
    for (let d = 1; d < 4; d++) for (let i = 0; i < 25; i++) entry = send(T0 + d * DAY + i, d * 100 + i);
    expect(entry.requests).toHaveLength(100);
    expect(nextRequestAllowedAt(entry, T0 + 5 * DAY, sandbox)).toBe(T0 + 7 * DAY);
  });

  it('revoke after the 10th unanswered call in a row, not the 4th', () => {
    let entry = run([{ type: 'reply-accept', at: T0, id: 'wamid.a', permanent: true }]);
    for (let i = 0; i < 9; i++) {
      entry = applyPermissionEvent(
        entry,
        { type: 'call-unanswered', at: T0 + 10 + i, callId: `wacid.m${i}` },
        sandbox,
      ).entry;
    }
    expect(entry).toMatchObject({ state: 'permanent', consecutiveUnanswered: 9 });
    entry = applyPermissionEvent(entry, { type: 'call-unanswered', at: T0 + 30, callId: 'wacid.m9' }, sandbox).entry;
    expect(entry).toMatchObject({ state: 'revoked', source: 'automatic' });
  });
});
