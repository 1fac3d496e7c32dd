/**
 * The business-call rules ask Meta's `call_permissions` before refusing on a ledger miss (D6, REF26),
 * within a timeout; when Meta cannot be asked they refuse as the ledger says, and say why.
 */
import { describe, expect, it } from 'vitest';
import { MetaApiError } from '#core/errors.ts';
import { createBusinessCallRules, type MetaPermissionCheck } from '#core/outbound/rules.ts';
import type { MetaPermissionView } from '#core/permissions/meta-permissions.ts';
import { findPermission, recordMetaRefusal, updatePermission } from '#core/permissions/service.ts';
import { MemoryPermissionStore } from '../../helpers/memory-permission-store.ts';

const PNID = '436666719526789';
const T0 = Date.UTC(2026, 3, 1, 9, 0, 0);
const user = { phone: '4915100000200', userId: 'DE.200' };

function rules(meta?: MetaPermissionCheck, permissions = new MemoryPermissionStore()) {
  const check = createBusinessCallRules({
    permissions,
    ...(meta ? { meta } : {}),
    calls: { slotsInUse: async () => 0 },
    lines: [{ phoneNumberId: PNID, businessNumber: '447700900123' }],
    blockedCountries: [],
    maxConcurrentCalls: 10,
    now: () => T0,
  });
  return { check, permissions };
}

function metaSays(answer: () => Promise<MetaPermissionView>): MetaPermissionCheck & { asked: number } {
  const m = {
    asked: 0,
    timeoutMs: 50,
    staleAfterMs: 300_000,
    api: {
      getCallPermissions: async () => {
        m.asked++;
        return answer();
      },
    },
  };
  return m;
}

describe('business-call rules on a ledger miss', () => {
  it('ask Meta and allow the call when Meta holds a permission the ledger never saw, recording it', async () => {
    // Before: refused 'no-permission' from the empty ledger; Meta was never asked.
    const meta = metaSays(async () => ({ status: 'permanent', canCall: true, canRequest: false }));
    const { check, permissions } = rules(meta);
    expect(await check({ phoneNumberId: PNID, user })).toEqual({ allowed: true, permission: 'permanent' });
    expect(meta.asked).toBe(1);
    expect((await findPermission(permissions, PNID, user)).entry).toMatchObject({
      state: 'permanent',
      source: 'reconcile',
      reconciledAt: T0,
    });
    // The ledger now knows: the next call is decided locally.
    expect(await check({ phoneNumberId: PNID, user })).toMatchObject({ allowed: true });
    expect(meta.asked).toBe(1);
  });

  it('refuse when Meta confirms there is no permission, saying Meta was asked', async () => {
    const meta = metaSays(async () => ({ status: 'no_permission', canCall: false, canRequest: true }));
    const verdict = await rules(meta).check({ phoneNumberId: PNID, user });
    expect(verdict).toMatchObject({ allowed: false, reason: 'no-permission', httpStatus: 403, sipStatus: 403 });
    expect((verdict as { detail: string }).detail).toBe(
      "the user has not granted call permission (Meta's call_permissions says no_permission)",
    );
  });

  it('refuse as the ledger says when Meta does not answer in time, and say so', async () => {
    const meta = metaSays(() => new Promise<MetaPermissionView>(() => undefined));
    const verdict = await rules(meta).check({ phoneNumberId: PNID, user });
    expect(verdict).toMatchObject({ allowed: false, reason: 'no-permission' });
    expect((verdict as { detail: string }).detail).toBe(
      "the user has not granted call permission (Meta's call_permissions did not answer within 50 ms; the ledger decided)",
    );
  });

  it('refuse as the ledger says when Meta answers an error, naming it', async () => {
    const meta = metaSays(async () => {
      throw new MetaApiError('Calls to this api have exceeded the rate limit.', { status: 429, metaCode: 613 });
    });
    const verdict = await rules(meta).check({ phoneNumberId: PNID, user });
    expect((verdict as { detail: string }).detail).toBe(
      "the user has not granted call permission (Meta's call_permissions could not be asked (429 613 Calls to this api have exceeded the rate limit.); the ledger decided)",
    );
  });

  it('refuse until Meta’s next allowed time after a 138012 recorded in the ledger', async () => {
    const { check, permissions } = rules();
    const deps = { permissions, now: () => T0 };
    await updatePermission(PNID, user, { type: 'reconcile', at: T0, status: 'permanent' }, deps);
    // The worker reports Meta's 138012 with its next allowed time (api-business-call's connect refusal).
    await recordMetaRefusal(PNID, user, { code: 138012, nextAllowedAt: T0 + 3_600_000 }, deps);
    expect(await check({ phoneNumberId: PNID, user })).toMatchObject({
      allowed: false,
      reason: 'daily-limit',
      retryAt: T0 + 3_600_000,
    });
  });
});
