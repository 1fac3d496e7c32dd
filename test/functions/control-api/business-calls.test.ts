/**
 * Business-initiated calls and the call-permission ledger, as stories on the real local stack:
 * dynalite, local-aws-sqs, the HTTP gateway, and the Meta simulator as Meta (its permission
 * engine, request limits, scripted user replies and callback grant). One manual clock drives both
 * the control plane and the simulator, so 24 h / 7 d boundaries are crossed to the millisecond.
 * Every control-API answer is checked against the OpenAPI document the API serves.
 */
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallRecord } from '#core/calls/call-record.ts';
import { endCall } from '#core/calls/lifecycle.ts';
import { linkBusinessCall } from '#core/outbound/requests.ts';
import { createBusinessCallRules } from '#core/outbound/rules.ts';
import { recordConnectedCall, recordUnansweredCall, recordUserCallAnswered } from '#core/permissions/service.ts';
import { createControlApiHandler } from '#functions/control-api/handler.ts';
import { ManualClock } from '#simulator/graph/clock.ts';
import type { MetaSimulator } from '#simulator/simulator.ts';
import { permissionReply } from '#simulator/webhooks/payloads.ts';
import { eventually, startTestStack, TEST_BUSINESS, type TestStack } from '../../helpers/test-stack.ts';
import { checkResponse } from './openapi-check.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const PNID = TEST_BUSINESS.phoneNumberId;

const clock = new ManualClock(Date.UTC(2026, 0, 5, 9, 0, 0));
let stack: TestStack;
let sim: MetaSimulator;
let doc: Record<string, unknown>;
/** A JSON answer, read loosely by the assertions (its shape is checked against the OpenAPI document). */
// biome-ignore lint/suspicious/noExplicitAny: answers are asserted with toMatchObject and validated by the OpenAPI check
type Body = Record<string, any>;
/** Every control-API answer of this file, checked against the OpenAPI document at the end. */
const answers: Array<{ method: string; template: string; status: number; body: unknown }> = [];

beforeAll(async () => {
  stack = await startTestStack(
    {},
    {
      now: () => clock.now(),
      simulator: {
        clock,
        permissionsRateLimitPerSecond: 1000,
        settings: { callback_permission_status: 'ENABLED' },
      },
    },
  );
  sim = stack.simulator!;
  // A second approved permission-request template on the WABA (Meta knows it by its component, §3.4).
  sim.messages.registerTemplate({
    name: 'call_permission_followup',
    language: 'en',
    category: 'UTILITY',
    components: [{ type: 'BODY', text: 'Following up: may we call you?' }, { type: 'call_permission_request' }],
  });
  const res = await stack.api('/v1/openapi.json', { key: null });
  expect(res.status).toBe(200);
  doc = (await res.json()) as Record<string, unknown>;
});
afterAll(() => stack?.stop());

/** Calls the control API and keeps the answer for the OpenAPI check. */
async function api(
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  template: string,
  body?: unknown,
  key?: string | null,
): Promise<{ status: number; body: Body }> {
  const res = await stack.api(path, {
    method,
    ...(key === undefined ? {} : { key }),
    ...(body === undefined
      ? {}
      : {
          body: typeof body === 'string' ? body : JSON.stringify(body),
          headers: { 'content-type': 'application/json' },
        }),
  });
  const json = (await res.json()) as Body;
  answers.push({ method, template, status: res.status, body: json });
  return { status: res.status, body: json };
}

const placeCall = (to: string, extra: Record<string, unknown> = {}) =>
  api('POST', '/v1/calls', '/v1/calls', { to, ...extra });
/** A permission request; by default the configured template (PERMISSION_REQUEST_TEMPLATE), which needs no open window. */
const requestPermission = (user: string, body: unknown = { kind: 'template' }) =>
  api('POST', `/v1/permissions/${encodeURIComponent(user)}/request`, '/v1/permissions/{userId}/request', body);
const getPermission = (user: string, query = '') =>
  api('GET', `/v1/permissions/${encodeURIComponent(user)}${query}`, '/v1/permissions/{userId}');

/** Sets how a simulated user behaves, through the simulator's control API. */
async function script(user: string, patch: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${sim.baseUrl}/_sim/users/${encodeURIComponent(user)}/script`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(patch),
  });
  expect(res.status).toBe(200);
}

/** Sets Meta's side of a permission without any webhook (as when the user acts in their profile and the webhook is lost). */
async function metaPermission(user: string, status: 'temporary' | 'permanent' | 'no_permission'): Promise<void> {
  const res = await fetch(`${sim.baseUrl}/_sim/users/${encodeURIComponent(user)}/permission`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ status }),
  });
  expect(res.status).toBe(200);
}

const ledger = (phone: string) => stack.runtime.permissions.get(PNID, phone);

async function ledgerState(phone: string, state: string): Promise<NonNullable<Awaited<ReturnType<typeof ledger>>>> {
  return eventually(
    async () => {
      const entry = await ledger(phone);
      return entry?.state === state ? entry : undefined;
    },
    5000,
    `ledger of ${phone} to be ${state}`,
  );
}

/**
 * A user who asked for a permission and answered as scripted: the request goes through the API to
 * the simulator, the simulated user replies after 100 ms (simulated), the webhook moves the ledger.
 */
async function grantedUser(phone: string, reply: 'accept_temporary' | 'accept_permanent') {
  await script(phone, { permissionReply: reply, permissionReplyDelayMs: 100 });
  expect((await requestPermission(phone)).status).toBe(201);
  clock.advance(100);
  return ledgerState(phone, reply === 'accept_permanent' ? 'permanent' : 'temporary');
}

const outcome = (phone: string, callId: string) => ({ phoneNumberId: PNID, user: { phone }, callId });

describe('temporary permission: valid until 7 days after the grant, checked at use', () => {
  it('allows a call at 7 d − 1 ms and refuses it at 7 d', async () => {
    const phone = '34600111201';
    const grantedAt = clock.now();
    const entry = await grantedUser(phone, 'accept_temporary');
    const expiresAt = entry.expiresAt!;
    // Meta reports the expiry in whole seconds; it is the grant plus 7 days.
    expect(expiresAt - grantedAt).toBeGreaterThan(7 * DAY - 1000);
    expect(expiresAt - grantedAt).toBeLessThanOrEqual(7 * DAY + 100);

    clock.set(expiresAt - 1);
    const allowed = await placeCall(`+${phone}`);
    expect(allowed).toMatchObject({ status: 202, body: { status: 'queued', permission: 'temporary', expiresAt } });

    clock.set(expiresAt);
    const refused = await placeCall(phone);
    expect(refused.status).toBe(403);
    expect(refused.body.error).toMatchObject({ reason: 'permission-expired' });
    const verdict = await stack.runtime.checkBusinessCall({ phoneNumberId: PNID, user: { phone } });
    expect(verdict).toMatchObject({ allowed: false, reason: 'permission-expired', httpStatus: 403, sipStatus: 403 });
  });
});

describe('permission requests: 1 per 24 h, 2 per 7 days, reset by a connected call', () => {
  const phone = '34600111202';

  it('refuses the 2nd request within 24 h and the 3rd within 7 days before calling Meta, and says when', async () => {
    await script(phone, { permissionReply: 'none' });
    const t1 = clock.now();
    const first = await requestPermission(phone);
    expect(first).toMatchObject({
      status: 201,
      body: { status: 'sent', permission: { state: 'requested', requests: { last24h: 1, nextAllowedAt: t1 + DAY } } },
    });
    expect(first.body.messageId).toMatch(/^wamid\./);

    const sentBefore = sim.messages.sent.length;
    clock.set(t1 + DAY - 1);
    const second = await requestPermission(phone, {
      kind: 'template',
      name: 'call_permission_followup',
      language: 'en',
    });
    expect(second.status).toBe(429);
    expect(second.body.error).toMatchObject({ reason: 'request-limit', retryAt: t1 + DAY });
    expect(second.body.error.detail).toContain(new Date(t1 + DAY).toISOString());
    expect(sim.messages.sent.length).toBe(sentBefore);

    clock.set(t1 + DAY);
    expect(
      (await requestPermission(phone, { kind: 'template', name: 'call_permission_followup', language: 'en' })).status,
    ).toBe(201);
    expect(sim.messages.sent.at(-1)?.kind).toBe('template:call_permission_followup');

    clock.set(t1 + 2 * DAY);
    const third = await requestPermission(phone);
    expect(third.status).toBe(429);
    expect(third.body.error).toMatchObject({ reason: 'request-limit', retryAt: t1 + 7 * DAY });
  });

  it('allows the next request at once after a connected call', async () => {
    // The user calls the business and the call is answered: Meta resets its counters (the
    // simulator's engine is Meta's state), the worker reports the answered call to the ledger.
    sim.permissions.recordConnectedCall(phone, { businessInitiated: false });
    await recordUserCallAnswered(outcome(phone, 'wacid.uic-answered-1'), stack.runtime);
    const after = await requestPermission(phone);
    expect(after.status).toBe(201);
    expect(after.body.permission.requests).toMatchObject({ last24h: 1, last7d: 1 });
  });

  it("maps Meta's own refusals: 138009 → 429 with Meta's next time, 138017 → 409", async () => {
    const limited = '34600111203';
    sim.permissions.recordRequest(limited); // sent by another system sharing the number
    const byMeta = await requestPermission(limited);
    expect(byMeta.status).toBe(429);
    expect(byMeta.body.error.reason).toBe('request-limit');
    expect(byMeta.body.error.retryAt).toBe(Math.floor((clock.now() + DAY) / 1000) * 1000);

    const permanent = '34600111204';
    await metaPermission(permanent, 'permanent');
    const conflict = await requestPermission(permanent);
    expect(conflict.status).toBe(409);
    expect(conflict.body.error.reason).toBe('permission-exists');
    expect((await ledger(permanent))?.state).toBe('permanent');
    // Known permanent now: refused without asking Meta.
    const sentBefore = sim.messages.sent.length;
    expect((await requestPermission(permanent)).status).toBe(409);
    expect(sim.messages.sent.length).toBe(sentBefore);
  });
});

describe('free-form requests and the customer-service window (PERM26)', () => {
  it('a free-form request to a user who has not written for 24 h answers 409 "use a template", naming the setting', async () => {
    const quiet = '34600111301';
    const refused = await requestPermission(quiet, { kind: 'interactive', body: 'May we call you?' });
    expect(refused.status).toBe(409);
    expect(refused.body.error.reason).toBe('service-window-closed');
    expect(refused.body.error.detail).toContain('use a template');
    expect(refused.body.error.detail).toContain('PERMISSION_REQUEST_TEMPLATE (call_permission_request, en)');
    // Nothing was counted: the template goes out at once.
    expect((await requestPermission(quiet)).status).toBe(201);
  });

  it('after the user writes, a free-form request is sent within the 24 h window', async () => {
    const chatty = '34600111302';
    await sim.messages.userSendsText({ waId: chatty }, 'Hi, please call me back');
    clock.advance(DAY - 1);
    expect((await requestPermission(chatty, { kind: 'interactive', body: 'May we call you?' })).status).toBe(201);
  });
});

describe('template permission requests, as Meta takes them (§3.4)', () => {
  it("sends Meta's template message shape, and a template the WABA lacks answers 422 invalid-template", async () => {
    const user = '34600111303';
    const sent = await requestPermission(user, {
      kind: 'template',
      name: 'call_permission_followup',
      language: 'en',
    });
    expect(sent.status).toBe(201);
    expect(sim.messages.sent.at(-1)?.body).toEqual({
      messaging_product: 'whatsapp',
      recipient_type: 'individual',
      to: user,
      type: 'template',
      template: { name: 'call_permission_followup', language: { code: 'en' } },
    });
    const missing = await requestPermission('34600111304', { kind: 'template', name: 'cpr_missing', language: 'en' });
    expect(missing.status).toBe(422);
    expect(missing.body.error.reason).toBe('invalid-template');
    expect(missing.body.error.detail).toContain('132001');
  });
});

describe('connected calls: at most 100 per pair per rolling 24 h', () => {
  it('allows the 100th call and refuses the 101st until the oldest is 24 h old', async () => {
    const phone = '34600111205';
    await grantedUser(phone, 'accept_permanent');
    const first = clock.now();
    for (let i = 0; i < 99; i++) {
      await recordConnectedCall(outcome(phone, `wacid.daily-${i}`), stack.runtime);
      clock.advance(1000);
    }
    expect((await placeCall(phone)).status).toBe(202); // the 100th
    await recordConnectedCall(outcome(phone, 'wacid.daily-99'), stack.runtime);
    // A report repeated for the same call counts once.
    await recordConnectedCall(outcome(phone, 'wacid.daily-99'), stack.runtime);

    const refused = await placeCall(phone); // the 101st
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ reason: 'daily-limit', retryAt: first + DAY });
    const verdict = await stack.runtime.checkBusinessCall({ phoneNumberId: PNID, user: { phone } });
    expect(verdict).toMatchObject({ allowed: false, sipStatus: 480, retryAt: first + DAY });

    clock.set(first + DAY - 1);
    expect((await placeCall(phone)).status).toBe(429);
    clock.set(first + DAY);
    expect((await placeCall(phone)).status).toBe(202);
  });
});

describe('unanswered calls: the 4th in a row revokes the permission', () => {
  it('keeps the permission after 3, revokes it at the 4th, and a connected call breaks the streak', async () => {
    const phone = '34600111206';
    await grantedUser(phone, 'accept_temporary');
    for (const n of [1, 2, 3]) {
      expect((await recordUnansweredCall(outcome(phone, `wacid.miss-${n}`), stack.runtime)).revoked).toBe(false);
    }
    expect((await placeCall(phone)).status).toBe(202);
    await recordConnectedCall(outcome(phone, 'wacid.answered'), stack.runtime);
    for (const n of [4, 5, 6]) await recordUnansweredCall(outcome(phone, `wacid.miss-${n}`), stack.runtime);
    expect((await ledger(phone))?.consecutiveUnanswered).toBe(3);
    expect((await placeCall(phone)).status).toBe(202);

    const fourth = await recordUnansweredCall(outcome(phone, 'wacid.miss-7'), stack.runtime);
    expect(fourth).toMatchObject({ revoked: true, entry: { state: 'revoked', source: 'automatic' } });
    const refused = await placeCall(phone);
    expect(refused.status).toBe(403);
    expect(refused.body.error.reason).toBe('permission-revoked');
  });
});

describe('ledger writes', () => {
  it('counts concurrent reports for one pair exactly once each (optimistic concurrency)', async () => {
    const phone = '34600111217';
    await Promise.all(
      Array.from({ length: 8 }, (_, i) => recordConnectedCall(outcome(phone, `wacid.parallel-${i}`), stack.runtime)),
    );
    const entry = await ledger(phone);
    expect(entry?.connectedCalls).toHaveLength(8);
    expect(entry?.version).toBe(8);
    expect(await stack.runtime.permissions.history(PNID, phone)).toHaveLength(8);
  });
});

describe('countries', () => {
  it('refuses sanctioned users by number, region and BSUID', async () => {
    for (const to of ['+5352345678', '380652123456', 'IR.13491208655302741918']) {
      const refused = await placeCall(to);
      expect(refused.status).toBe(403);
      expect(refused.body.error.reason).toBe('sanctioned-user');
    }
    expect((await requestPermission('5352345678')).body.error.reason).toBe('sanctioned-user');
  });

  it('refuses a business number in a blocked country, from the configurable list', async () => {
    const phone = '34600111207';
    await grantedUser(phone, 'accept_permanent');
    const rules = (blockedCountries: string[]) =>
      createBusinessCallRules({
        permissions: stack.runtime.permissions,
        calls: stack.runtime.calls,
        lines: [stack.runtime.config.line],
        blockedCountries,
        maxConcurrentCalls: 1000,
        now: () => clock.now(),
      });
    expect(await rules(['US', 'GB'])({ phoneNumberId: PNID, user: { phone } })).toMatchObject({
      allowed: false,
      reason: 'business-country-blocked',
      httpStatus: 422,
      sipStatus: 403,
    });
    expect(await rules([])({ phoneNumberId: PNID, user: { phone } })).toMatchObject({ allowed: true });
    // The default list (US, CA, EG, VN, NG: Meta's Jun 2026 list) lets this UK number call.
    expect(stack.runtime.config.businessCalls.blockedCountries).toEqual(['US', 'CA', 'EG', 'VN', 'NG']);
    expect((await placeCall(phone)).status).toBe(202);
  });

  it('refuses calls and permission requests from a US business number', async () => {
    const us = await startTestStack({ META_BUSINESS_NUMBER: '13175551399' });
    try {
      const call = await us.api('/v1/calls', { method: 'POST', body: JSON.stringify({ to: '34600111208' }) });
      expect(call.status).toBe(422);
      expect(((await call.json()) as { error: { reason: string } }).error.reason).toBe('business-country-blocked');
      const request = await us.api('/v1/permissions/34600111208/request', {
        method: 'POST',
        body: JSON.stringify({ kind: 'interactive' }),
      });
      expect(request.status).toBe(422);
      expect(us.simulator!.messages.sent).toHaveLength(0);
    } finally {
      await us.stop();
    }
  });
});

describe('reply webhooks move the ledger', () => {
  it('a user who declines is refused at once', async () => {
    const phone = '34600111209';
    await script(phone, { permissionReply: 'reject', permissionReplyDelayMs: 100 });
    expect((await requestPermission(phone)).status).toBe(201);
    clock.advance(100);
    await ledgerState(phone, 'rejected');
    const refused = await placeCall(phone);
    expect(refused.status).toBe(403);
    expect(refused.body.error.reason).toBe('permission-revoked');
  });

  it("Meta's automatic revocation takes effect at once; a redelivered reply changes nothing", async () => {
    const phone = '34600111210';
    await grantedUser(phone, 'accept_permanent');
    expect((await placeCall(phone)).status).toBe(202);
    const revoke = permissionReply({
      business: sim.business,
      user: { waId: phone },
      response: 'reject',
      source: 'automatic',
      messageId: 'wamid.auto-revoke-1',
      timestamp: Math.floor(clock.now() / 1000),
    });
    sim.permissions.revoke(phone);
    expect((await sim.emitter.send([revoke], { duplicates: 2 })).outcome).toBe('delivered');
    await ledgerState(phone, 'revoked');
    const refused = await placeCall(phone);
    expect(refused.status).toBe(403);
    expect(refused.body.error.reason).toBe('permission-revoked');
    const history = await stack.runtime.permissions.history(PNID, phone);
    expect(history.filter((h) => h.event === 'auto-revoke')).toHaveLength(1);
    expect(history.map((h) => h.to)).toEqual(['requested', 'permanent', 'revoked']);
  });

  it('a user calling a number with callback permission on grants a temporary permission', async () => {
    const phone = '34600111211';
    const call = await sim.placeUserCall({ user: { waId: phone, name: 'Lucía' } });
    const entry = await ledgerState(phone, 'temporary');
    expect(entry).toMatchObject({ source: 'callback-grant' });
    // The history line is written just after the entry (the entry is the truth), and the call goes on
    // and may add its own lines: wait for the grant's line rather than reading the last one at once.
    const grant = await eventually(
      async () => (await stack.runtime.permissions.history(PNID, phone)).find((h) => h.event === 'callback-grant'),
      5000,
      'the callback-grant line in the ledger history',
    );
    expect(grant).toMatchObject({ detail: { callId: call.id } });
    expect((await placeCall(phone)).status).toBe(202);
  });
});

describe("reconciliation with Meta's call_permissions", () => {
  it('adopts what Meta holds when the entry is stale or on ?refresh=true', async () => {
    const phone = '34600111212';
    await metaPermission(phone, 'permanent');
    const first = await getPermission(phone);
    expect(first).toMatchObject({ status: 200, body: { state: 'permanent', source: 'reconcile', callable: true } });
    expect(first.body.reconciledAt).toBe(clock.now());

    await metaPermission(phone, 'no_permission');
    const cached = await getPermission(phone);
    expect(cached.body).toMatchObject({ state: 'permanent', reconciledAt: first.body.reconciledAt });
    const refreshed = await getPermission(phone, '?refresh=true');
    expect(refreshed.body).toMatchObject({ state: 'revoked', source: 'reconcile', callable: false });

    await metaPermission(phone, 'temporary');
    clock.advance(300_000);
    const stale = await getPermission(phone);
    expect(stale.body).toMatchObject({ state: 'temporary', effectiveState: 'temporary', callable: true });
    expect(stale.body.history.map((h: { to: string }) => h.to)).toEqual(['permanent', 'revoked', 'temporary']);
  });

  it('shows a user the ledger has never seen as none', async () => {
    const fresh = await getPermission('US.13491208655302741999');
    expect(fresh.body).toMatchObject({
      state: 'none',
      effectiveState: 'none',
      callable: false,
      userKey: 'US.13491208655302741999',
    });
  });
});

describe('POST /v1/calls and GET /v1/calls/{id}', () => {
  it('queues one bridge-business-call job and resolves the request id, then the Meta call', async () => {
    const phone = '34600111213';
    await grantedUser(phone, 'accept_permanent');
    const queued = await placeCall(`+${phone}`, {
      mode: 'agent-first',
      sipTarget: 'sip:1000@127.0.0.3:5060',
      callbackData: 'ticket-4711',
    });
    expect(queued).toMatchObject({ status: 202, body: { status: 'queued', permission: 'permanent' } });
    const requestId = queued.body.requestId as string;
    expect(requestId).toMatch(/^bcr\./);

    const jobs = await eventually(async () => {
      const received = await stack.receiveJobs();
      return received.find((j) => j.requestId === requestId) ?? false;
    });
    expect(jobs).toEqual({
      type: 'bridge-business-call',
      requestId,
      line: { phoneNumberId: PNID, businessNumber: TEST_BUSINESS.displayPhoneNumber, accountId: '' },
      user: { phone },
      mode: 'agent-first',
      sipTarget: 'sip:1000@127.0.0.3:5060',
      callbackData: 'ticket-4711',
      enqueuedAt: clock.now(),
    });

    const request = await api('GET', `/v1/calls/${requestId}`, '/v1/calls/{callId}');
    expect(request).toMatchObject({
      status: 200,
      body: { callId: requestId, requestId, direction: 'business-initiated', state: 'queued', slotHeld: true },
    });
    expect(request.body.history.map((h: { what: string }) => h.what)).toEqual(['requested', 'queued']);

    // The worker places the call at Meta and links Meta's call id to the request.
    const metaCall: CallRecord = {
      callId: 'wacid.linked-1',
      direction: 'business-initiated',
      state: 'ringing',
      version: 1,
      line: { phoneNumberId: PNID, businessNumber: TEST_BUSINESS.displayPhoneNumber, accountId: TEST_BUSINESS.wabaId },
      user: { phone },
      createdAt: clock.now(),
      updatedAt: clock.now(),
    };
    const slots = await stack.runtime.calls.slotsInUse(PNID);
    await stack.runtime.calls.createIfAbsent({ ...metaCall, slotHeld: true, requestId });
    expect(await linkBusinessCall(stack.runtime.calls, requestId, 'wacid.linked-1', clock.now())).toBe(true);
    // The slot passed to Meta's call record: ending it returns the slot once.
    expect(await stack.runtime.calls.get(requestId)).toMatchObject({ metaCallId: 'wacid.linked-1', slotHeld: false });
    await endCall('wacid.linked-1', 'agent-hung-up', {
      calls: stack.runtime.calls,
      now: () => clock.now(),
      finishedRetentionSeconds: 60,
    });
    expect(await stack.runtime.calls.slotsInUse(PNID)).toBe(slots - 1);
    expect(await linkBusinessCall(stack.runtime.calls, requestId, 'wacid.other', clock.now())).toBe(false);
    const resolved = await api('GET', `/v1/calls/${requestId}`, '/v1/calls/{callId}');
    expect(resolved.body).toMatchObject({ callId: 'wacid.linked-1', requestId, state: 'ended' });
    expect(resolved.body.history.map((h: { what: string }) => h.what)).toEqual(['requested', 'queued', 'ended']);
  });

  it('answers 4xx with a machine-readable reason', async () => {
    const noPermission = await placeCall('34600111214');
    expect(noPermission).toMatchObject({ status: 403, body: { error: { reason: 'no-permission' } } });
    const requested = '34600111215';
    await script(requested, { permissionReply: 'none' });
    await requestPermission(requested);
    expect((await placeCall(requested)).body.error.reason).toBe('no-permission');

    expect(await placeCall('34600111214', { from: '999999999' })).toMatchObject({
      status: 404,
      body: { error: { reason: 'number-not-configured' } },
    });
    expect(await placeCall('34600111214', { mode: 'whenever' })).toMatchObject({
      status: 422,
      body: { error: { reason: 'invalid-request' } },
    });
    expect(await placeCall('not-a-user')).toMatchObject({
      status: 422,
      body: { error: { reason: 'invalid-request' } },
    });
    expect(await api('POST', '/v1/calls', '/v1/calls', '{"to":')).toMatchObject({
      status: 400,
      body: { error: { reason: 'invalid-request' } },
    });
    expect(await api('POST', '/v1/calls', '/v1/calls', { to: '34600111214' }, null)).toMatchObject({
      status: 401,
      body: { error: { reason: 'unauthorized' } },
    });
    expect(await api('GET', '/v1/calls/wacid.nope', '/v1/calls/{callId}')).toMatchObject({
      status: 404,
      body: { error: { reason: 'call-not-found' } },
    });
    expect(await getPermission('bad user')).toMatchObject({
      status: 422,
      body: { error: { reason: 'invalid-request' } },
    });
    expect(await requestPermission('34600111214', { kind: 'sms' })).toMatchObject({
      status: 422,
      body: { error: { reason: 'invalid-request' } },
    });
  });
});

describe('per-number concurrency cap', () => {
  it('refuses a call over the cap and allows one again when a call ends', async () => {
    const capped = await startTestStack({ MAX_CONCURRENT_CALLS: '1' });
    try {
      const phone = '34600111216';
      await capped.runtime.permissions.put(
        {
          phoneNumberId: PNID,
          userKey: phone,
          user: { phone },
          state: 'permanent',
          source: 'user-action',
          stateSince: Date.now(),
          requests: [],
          connectedCalls: [],
          consecutiveUnanswered: 0,
          appliedIds: [],
          version: 1,
          updatedAt: Date.now(),
        },
        0,
        { at: Date.now(), event: 'reply-accept', from: 'none', to: 'permanent' },
      );
      const post = () => capped.api('/v1/calls', { method: 'POST', body: JSON.stringify({ to: phone }) });
      const first = await post();
      expect(first.status).toBe(202);
      const { requestId } = (await first.json()) as { requestId: string };
      const second = await post();
      expect(second.status).toBe(429);
      expect(((await second.json()) as { error: { reason: string } }).error.reason).toBe('over-capacity');
      expect(await capped.runtime.checkBusinessCall({ phoneNumberId: PNID, user: { phone } })).toMatchObject({
        allowed: false,
        reason: 'over-capacity',
        sipStatus: 503,
      });
      // The worker ends the request's call: the slot comes back.
      await endCall(requestId, 'agent-hung-up', {
        calls: capped.runtime.calls,
        now: Date.now,
        finishedRetentionSeconds: 60,
      });
      expect((await post()).status).toBe(202);
    } finally {
      await capped.stop();
    }
  });
});

describe('OpenAPI document', () => {
  it('describes the whole control API', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths as object).sort()).toEqual([
      '/healthz',
      '/openapi.json',
      '/v1/calls',
      '/v1/calls/{callId}',
      '/v1/permissions/{userId}',
      '/v1/permissions/{userId}/request',
      '/v1/workers',
    ]);
  });

  it('is served at /openapi.json without a key', async () => {
    const handler = createControlApiHandler(stack.runtime);
    const event = { rawPath: '/openapi.json', requestContext: { http: { method: 'GET' } } } as APIGatewayProxyEventV2;
    const res = (await handler(event, {} as Context)) as { statusCode: number; body: string };
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body)).toEqual(doc);
  });

  it('matches every answer the API gave in this file', async () => {
    const health = await api('GET', '/healthz', '/healthz', undefined, null);
    expect(health.status).toBe(200);
    expect(answers.length).toBeGreaterThan(40);
    const statuses = new Set(answers.map((a) => a.status));
    for (const s of [200, 201, 202, 400, 401, 403, 404, 409, 422, 429]) expect(statuses).toContain(s);
    const problems = answers.flatMap((a) =>
      checkResponse(doc, a.method, a.template, a.status, a.body).map(
        (p) => `${a.method} ${a.template} ${a.status}: ${p}`,
      ),
    );
    expect(problems).toEqual([]);
  });

  it('would catch a response that drifts from the document', () => {
    expect(checkResponse(doc, 'POST', '/v1/calls', 202, { requestId: 'bcr.1', status: 'queued' })).toContain(
      '$: missing permission',
    );
    expect(
      checkResponse(doc, 'POST', '/v1/calls', 202, {
        requestId: 'bcr.1',
        status: 'queued',
        permission: 'permanent',
        extra: 1,
      }),
    ).not.toEqual([]);
    expect(checkResponse(doc, 'POST', '/v1/calls', 418, {})).toEqual([
      'POST /v1/calls answered 418, which is not documented',
    ]);
  });
});

describe('Idempotency-Key on POST /v1/calls', () => {
  it('answers retries with the first request: one request, one job, one slot — also when retries race', async () => {
    const phone = '5511977700001';
    await grantedUser(phone, 'accept_permanent');
    const slotsBefore = await stack.runtime.calls.slotsInUse(PNID);
    const jobsBefore = await stack.jobCount();
    const post = () =>
      stack.api('/v1/calls', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': 'crm-ticket-4711' },
        body: JSON.stringify({ to: phone }),
      });
    const first = await post();
    expect(first.status).toBe(202);
    const { requestId } = (await first.json()) as { requestId: string };
    const retries = await Promise.all([post(), post(), post()]);
    for (const retry of retries) {
      expect(retry.status).toBe(202);
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      expect(((await retry.json()) as { requestId: string }).requestId).toBe(requestId);
    }
    expect(await stack.jobCount()).toBe(jobsBefore + 1);
    expect(await stack.runtime.calls.slotsInUse(PNID)).toBe(slotsBefore + 1);

    const other = await stack.api('/v1/calls', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'crm-ticket-4712' },
      body: JSON.stringify({ to: phone }),
    });
    const otherId = ((await other.json()) as { requestId: string }).requestId;
    expect(otherId).not.toBe(requestId);
    const bad = await stack.api('/v1/calls', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'x'.repeat(129) },
      body: JSON.stringify({ to: phone }),
    });
    expect(bad.status).toBe(422);
    // Leave no request holding a slot for the other stories.
    for (const id of [requestId, otherId]) {
      await endCall(id, 'bridge-error', {
        calls: stack.runtime.calls,
        now: () => clock.now(),
        finishedRetentionSeconds: 60,
      });
    }
    expect(await stack.runtime.calls.slotsInUse(PNID)).toBe(slotsBefore);
  });
});
