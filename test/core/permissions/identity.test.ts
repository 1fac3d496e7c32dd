/**
 * One WhatsApp user, one ledger entry — whichever identifiers Meta sends this time (D4, BSUID-F):
 * the ledger is keyed on the BSUID with the phone as an alias, `""` is no identifier, and entries
 * stored by phone before BSUIDs existed are still found.
 */
import { describe, expect, it } from 'vitest';
import type { PermissionReply, WhatsAppUser } from '#core/meta/webhook.ts';
import { emptyEntry } from '#core/permissions/ledger.ts';
import {
  applyPermissionReply,
  findPermission,
  type LedgerDeps,
  recordConnectedCall,
  recordUnansweredCall,
} from '#core/permissions/service.ts';
import { MemoryPermissionStore } from '../../helpers/memory-permission-store.ts';

const PNID = '436666719526789';
const line = { phoneNumberId: PNID, businessNumber: '447700900123', accountId: '366634483210360' };
const T0 = Date.UTC(2026, 3, 1, 9, 0, 0);

function deps(): LedgerDeps & { permissions: MemoryPermissionStore } {
  return { permissions: new MemoryPermissionStore(), now: () => T0 };
}

function grant(user: WhatsAppUser, messageId: string): PermissionReply {
  return {
    kind: 'permission-reply',
    line,
    user,
    response: 'accept',
    permanent: true,
    source: 'user_action',
    messageId,
    timestamp: T0,
  };
}

describe('ledger identity', () => {
  it('gives two unrelated username users with "" phone fields an entry each', async () => {
    // Before: both were keyed "", so the second user's reply landed on the first user's entry.
    const d = deps();
    await applyPermissionReply(grant({ phone: '', userId: 'US.111' }, 'wamid.a'), d);
    await recordUnansweredCall({ phoneNumberId: PNID, user: { phone: '', userId: 'US.222' }, callId: 'wacid.x' }, d);
    expect([...d.permissions.entries.keys()].sort()).toEqual([`${PNID}#US.111`, `${PNID}#US.222`]);
    expect((await findPermission(d.permissions, PNID, { userId: 'US.222' })).entry).toMatchObject({
      state: 'none',
      consecutiveUnanswered: 1,
    });
    expect((await findPermission(d.permissions, PNID, { userId: 'US.111' })).entry?.state).toBe('permanent');
  });

  it('keeps one entry for a user seen first with phone and BSUID, later with the BSUID only', async () => {
    // Before: the key was phone ?? BSUID, so the BSUID-only sighting opened a second, empty entry.
    const d = deps();
    await applyPermissionReply(grant({ phone: '16315553602', userId: 'US.134912' }, 'wamid.b'), d);
    await recordConnectedCall({ phoneNumberId: PNID, user: { userId: 'US.134912' }, callId: 'wacid.c' }, d);
    expect(d.permissions.entries.size).toBe(1);
    const { entry } = await findPermission(d.permissions, PNID, { userId: 'US.134912' });
    expect(entry).toMatchObject({
      userKey: 'US.134912',
      state: 'permanent',
      user: { phone: '16315553602', userId: 'US.134912' },
      connectedCalls: [T0],
    });
    // The phone is an alias: a phone-only request (the control API's `to`) finds the same entry.
    expect((await findPermission(d.permissions, PNID, { phone: '16315553602' })).entry?.userKey).toBe('US.134912');
  });

  it('still finds an entry stored by phone before BSUIDs, and links the BSUID to it without moving it', async () => {
    const d = deps();
    const legacy = { ...emptyEntry(PNID, '16315553602', { phone: '16315553602' }, T0), state: 'permanent' as const };
    await d.permissions.put({ ...legacy, version: 1 }, 0, {
      at: T0,
      event: 'reply-accept',
      from: 'none',
      to: 'permanent',
    });
    await recordConnectedCall(
      { phoneNumberId: PNID, user: { phone: '16315553602', userId: 'US.134912' }, callId: 'wacid.d' },
      d,
    );
    await recordConnectedCall({ phoneNumberId: PNID, user: { userId: 'US.134912' }, callId: 'wacid.e' }, d);
    expect(d.permissions.entries.size).toBe(1);
    expect(d.permissions.aliases.get(`${PNID}#US.134912`)).toBe('16315553602');
    expect((await d.permissions.get(PNID, '16315553602'))?.connectedCalls).toEqual([T0, T0]);
  });

  it('does not hand a recycled phone number the previous owner’s entry', async () => {
    const d = deps();
    await applyPermissionReply(grant({ phone: '16315553602', userId: 'US.1' }, 'wamid.f'), d);
    const other = await findPermission(d.permissions, PNID, { phone: '16315553602', userId: 'US.2' });
    expect(other).toEqual({ key: 'US.2' });
  });
});
