/**
 * Call permissions (meta-calling-api.md §3.3, §3.4, §4.1, §2.9): limits at their exact boundaries on a manual
 * clock, the GET shape and rate limit, permission-request messages and the scripted replies.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { bicBlockedCountry } from '#simulator/graph/call-engine.ts';
import { ManualClock } from '#simulator/graph/clock.ts';
import { GraphError } from '#simulator/graph/errors.ts';
import { PermissionEngine } from '#simulator/graph/permissions.ts';
import { callEvent, type Env, startEnv, US_BUSINESS } from './harness.ts';

const H = 3_600_000;
const D = 24 * H;
const U = '5511955551234';

function codeOf(fn: () => void): number | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (e instanceof GraphError) return e.code;
    throw e;
  }
}

describe('permission engine (manual clock)', () => {
  it('temporary permission lasts exactly 7 days; expiry sends nothing and drops to no_permission', () => {
    const clock = new ManualClock();
    const p = new PermissionEngine({ clock });
    expect(p.status(U)).toEqual({ status: 'no_permission' });
    expect(codeOf(() => p.assertCanStartCall(U))).toBe(138006);
    const { expiresAt } = p.grant(U, { permanent: false });
    expect(expiresAt).toBe(clock.now() + 7 * D);
    clock.advance(7 * D - 1);
    expect(p.status(U).status).toBe('temporary');
    expect(codeOf(() => p.assertCanStartCall(U))).toBeUndefined();
    clock.advance(1);
    expect(p.status(U)).toEqual({ status: 'no_permission' });
    expect(codeOf(() => p.assertCanStartCall(U))).toBe(138006);
  });

  it('requests: 1 per 24 h and 2 per 7 days (138009 with next_allowed_time), reset by any connected call; 138017 with permanent', () => {
    const clock = new ManualClock();
    const p = new PermissionEngine({ clock });
    const t0 = clock.now();
    p.assertCanRequest(U);
    p.recordRequest(U);
    clock.advance(D - 1);
    let e: unknown;
    try {
      p.assertCanRequest(U);
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(GraphError);
    expect((e as GraphError).code).toBe(138009);
    expect((e as GraphError).data).toEqual({ next_allowed_time: Math.floor((t0 + D) / 1000) });
    clock.advance(1); // exactly 24 h later: allowed again
    p.assertCanRequest(U);
    p.recordRequest(U);
    clock.advance(D); // 48 h: the 24 h window is clear, but 2 in 7 days are used
    expect(codeOf(() => p.assertCanRequest(U))).toBe(138009);
    expect(p.describe(U).actions[0]).toEqual({
      action_name: 'send_call_permission_request',
      can_perform_action: false,
      limits: [
        { time_period: 'PT24H', max_allowed: 1, current_usage: 0 },
        {
          time_period: 'P7D',
          max_allowed: 2,
          current_usage: 2,
          limit_expiration_time: Math.floor((t0 + 7 * D) / 1000),
        },
      ],
    });
    // Any connected call resets the request limits (§4.1).
    p.recordConnectedCall(U, { businessInitiated: false });
    expect(codeOf(() => p.assertCanRequest(U))).toBeUndefined();
    p.grant(U, { permanent: true });
    expect(codeOf(() => p.assertCanRequest(U))).toBe(138017);
  });

  it('first request outside 7 days of the oldest is allowed again', () => {
    const clock = new ManualClock();
    const p = new PermissionEngine({ clock });
    p.recordRequest(U);
    clock.advance(D);
    p.recordRequest(U);
    clock.advance(6 * D - 1);
    expect(codeOf(() => p.assertCanRequest(U))).toBe(138009);
    clock.advance(1);
    expect(codeOf(() => p.assertCanRequest(U))).toBeUndefined();
  });

  it('100 connected BICs per rolling 24 h: the 101st is 138012 with limit_expiration_time; the permission stays', () => {
    const clock = new ManualClock();
    const p = new PermissionEngine({ clock });
    p.grant(U, { permanent: true });
    const t0 = clock.now();
    for (let i = 0; i < 100; i++) {
      expect(codeOf(() => p.assertCanStartCall(U))).toBeUndefined();
      p.recordConnectedCall(U, { businessInitiated: true });
      clock.advance(60_000);
    }
    let e: GraphError | undefined;
    try {
      p.assertCanStartCall(U);
    } catch (err) {
      e = err as GraphError;
    }
    expect(e?.code).toBe(138012);
    expect(e?.data).toEqual({ limit_expiration_time: Math.floor((t0 + D) / 1000) });
    expect(p.describe(U).actions[1]).toEqual({
      action_name: 'start_call',
      can_perform_action: false,
      limits: [
        {
          time_period: 'PT24H',
          max_allowed: 100,
          current_usage: 100,
          limit_expiration_time: Math.floor((t0 + D) / 1000),
        },
      ],
    });
    expect(p.status(U).status).toBe('permanent');
    clock.set(t0 + D); // the oldest leaves the window
    expect(codeOf(() => p.assertCanStartCall(U))).toBeUndefined();
  });

  it('unanswered streak: nudge at 2, revoke at 4; a connected call breaks the streak; sandbox revokes at 10', () => {
    const clock = new ManualClock();
    const p = new PermissionEngine({ clock });
    p.grant(U, { permanent: true });
    expect(p.recordUnansweredCall(U)).toBe('counted');
    expect(p.recordUnansweredCall(U)).toBe('nudged');
    p.recordConnectedCall(U, { businessInitiated: true });
    expect(p.consecutiveUnanswered(U)).toBe(0);
    expect([1, 2, 3, 4].map(() => p.recordUnansweredCall(U))).toEqual(['counted', 'nudged', 'counted', 'revoked']);
    expect(p.status(U).status).toBe('no_permission');

    const sb = new PermissionEngine({ clock, sandbox: true });
    sb.grant(U, { permanent: false });
    const outcomes = Array.from({ length: 10 }, () => sb.recordUnansweredCall(U));
    expect(outcomes[4]).toBe('nudged');
    expect(outcomes[8]).toBe('counted');
    expect(outcomes[9]).toBe('revoked');
  });
});

describe('where business-initiated calling is available (OVR26, Jun 26 2026)', () => {
  it('blocks only US, CA, EG, VN and NG business numbers; Turkey only when the older list is asked for', () => {
    expect(bicBlockedCountry('13175551399', false)).toBe('US');
    expect(bicBlockedCountry('14165550123', false)).toBe('CA');
    expect(bicBlockedCountry('201001234567', false)).toBe('EG');
    expect(bicBlockedCountry('84912345678', false)).toBe('VN');
    expect(bicBlockedCountry('2348031234567', false)).toBe('NG');
    expect(bicBlockedCountry('905321234567', false)).toBeUndefined();
    expect(bicBlockedCountry('905321234567', true)).toBe('TR');
    expect(bicBlockedCountry('447700900123', false)).toBeUndefined();
  });
});

describe('permissions over HTTP', () => {
  let env: Env | undefined;
  afterEach(async () => {
    await env?.close();
    env = undefined;
  });

  it('GET call_permissions has the documented shape and is rate-limited (613, HTTP 429)', async () => {
    env = await startEnv({ permissionsRateLimitPerSecond: 3 });
    const path = `/${env.sim.business.phoneNumberId}/call_permissions?user_wa_id=${U}`;
    const first = await env.graph('GET', path);
    expect(first).toEqual({
      status: 200,
      body: {
        messaging_product: 'whatsapp',
        permission: { status: 'no_permission' },
        actions: [
          {
            action_name: 'send_call_permission_request',
            can_perform_action: true,
            limits: [
              { time_period: 'PT24H', max_allowed: 1, current_usage: 0 },
              { time_period: 'P7D', max_allowed: 2, current_usage: 0 },
            ],
          },
          {
            action_name: 'start_call',
            can_perform_action: false,
            limits: [{ time_period: 'PT24H', max_allowed: 100, current_usage: 0 }],
          },
        ],
      },
    });
    await env.graph('GET', path);
    await env.graph('GET', path);
    const limited = await env.graph('GET', path);
    expect(limited.status).toBe(429);
    expect(limited.body.error).toMatchObject({
      code: 613,
      type: 'OAuthException',
      message: '(#613) Calls to this api have exceeded the rate limit.',
    });
    await new Promise((r) => setTimeout(r, 1050));
    expect((await env.graph('GET', path)).status).toBe(200);
    const missing = await env.graph('GET', `/${env.sim.business.phoneNumberId}/call_permissions`);
    expect(missing.body.error.error_data.details).toBe('The parameter user_wa_id is required.');
  });

  it('GET call_permissions answers 138000 while calling is disabled on the number (REF26)', async () => {
    env = await startEnv({ settings: { status: 'DISABLED' } });
    const res = await env.graph('GET', `/${env.sim.business.phoneNumberId}/call_permissions?user_wa_id=${U}`);
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe(138000);
  });

  it('a recipient must be a BSUID (country prefix, dot, up to 128 alphanumerics) on call_permissions, messages and connect', async () => {
    env = await startEnv({ permissionsRateLimitPerSecond: 1000 });
    const pnid = env.sim.business.phoneNumberId;
    const ask = (recipient: string) =>
      env!.graph('GET', `/${pnid}/call_permissions?recipient=${encodeURIComponent(recipient)}`);
    expect((await ask('US.13491208655302741918')).status).toBe(200);
    expect((await ask('US.ENT.11815799212886844830')).status).toBe(200);
    expect((await ask(`BR.${'a1'.repeat(64)}`)).status).toBe(200);
    for (const bad of [
      '13491208655302741918',
      'US13491208655302741918',
      'us.1349',
      'US.',
      `US.${'a'.repeat(129)}`,
      'US.12-34',
    ]) {
      const res = await ask(bad);
      expect(res.status, bad).toBe(400);
      expect(res.body.error.code, bad).toBe(100);
    }
    const message = await env.graph('POST', `/${pnid}/messages`, {
      messaging_product: 'whatsapp',
      recipient: 'not-a-bsuid',
      type: 'interactive',
      interactive: { type: 'call_permission_request', action: { name: 'call_permission_request' } },
    });
    expect(message.body.error.code).toBe(100);
    expect(message.body.error.error_data.details).toBe(
      "Invalid parameter recipient: 'not-a-bsuid' is not a business-scoped user ID.",
    );
    const connect = await env.graph('POST', `/${pnid}/calls`, {
      messaging_product: 'whatsapp',
      recipient: '',
      action: 'connect',
      session: { sdp_type: 'offer', sdp: 'v=0' },
    });
    expect(connect.body.error.code).toBe(100);
    expect(connect.body.error.error_data.details).toBe(
      "Invalid parameter recipient: '' is not a business-scoped user ID.",
    );
  });

  it('a permission request message returns a wamid and the scripted user accepts (temporary, context = wamid)', async () => {
    env = await startEnv();
    const { sim, rx, graph } = env;
    sim.users.setScript(U, { permissionReply: 'accept_temporary', permissionReplyDelayMs: 20 });
    sim.permissions.openServiceWindow(U); // the user wrote to the business (free-form needs the window)
    const res = await graph('POST', `/${sim.business.phoneNumberId}/messages`, {
      messaging_product: 'whatsapp',
      recipient_type: 'individual',
      to: U,
      type: 'interactive',
      interactive: {
        type: 'call_permission_request',
        action: { name: 'call_permission_request' },
        body: { text: 'May we call?' },
      },
    });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      messaging_product: 'whatsapp',
      contacts: [{ input: U, wa_id: U }],
      messages: [{ id: expect.stringMatching(/^wamid\./) }],
    });
    const wamid = res.body.messages[0].id as string;
    const reply = await rx.waitFor((c) => c.field === 'messages', 5000, 'permission reply');
    expect(reply.signatureOk).toBe(true);
    expect(reply.item.context).toEqual({ from: U, id: wamid });
    const cpr = (reply.item.interactive as { call_permission_reply: Record<string, unknown> }).call_permission_reply;
    expect(cpr).toMatchObject({ response: 'accept', is_permanent: false, response_source: 'user_action' });
    expect(typeof cpr.expiration_timestamp).toBe('string');
    expect(sim.permissions.status(U).status).toBe('temporary');

    // Second request within 24 h → 138009.
    const again = await graph('POST', `/${sim.business.phoneNumberId}/messages`, {
      messaging_product: 'whatsapp',
      to: U,
      type: 'template',
      template: { name: 'call_permission_request', language: { code: 'en' } },
    });
    expect(again.status).toBe(400);
    expect(again.body.error.code).toBe(138009);
    expect(typeof again.body.error.error_data.next_allowed_time).toBe('number');

    // A voice_call button is validated (display_text ≤ 20).
    const button = await graph('POST', `/${sim.business.phoneNumberId}/messages`, {
      messaging_product: 'whatsapp',
      to: U,
      type: 'interactive',
      interactive: {
        type: 'voice_call',
        body: { text: 'Call us' },
        action: { name: 'voice_call', parameters: { display_text: 'x'.repeat(21) } },
      },
    });
    expect(button.body.error.error_data.details).toBe('display_text must be a string of at most 20 characters.');
  });

  it('permanent grant from a request, then 138017; reject script revokes; BIC countries cannot request (138013)', async () => {
    env = await startEnv();
    const { sim, rx, graph } = env;
    const send = (to: string) =>
      graph('POST', `/${sim.business.phoneNumberId}/messages`, {
        messaging_product: 'whatsapp',
        to,
        type: 'interactive',
        interactive: { type: 'call_permission_request', action: { name: 'call_permission_request' } },
      });
    sim.users.setScript(U, { permissionReply: 'accept_permanent', permissionReplyDelayMs: 10 });
    sim.permissions.openServiceWindow(U);
    await send(U);
    const reply = await rx.waitFor((c) => c.field === 'messages', 5000, 'reply');
    expect((reply.item.interactive as { call_permission_reply: unknown }).call_permission_reply).toEqual({
      response: 'accept',
      is_permanent: true,
      response_source: 'user_action',
    });
    expect((await send(U)).body.error.code).toBe(138017);

    const other = '5511955550001';
    sim.users.setScript(other, { permissionReply: 'reject', permissionReplyDelayMs: 10 });
    sim.permissions.openServiceWindow(other);
    await send(other);
    const rej = await rx.waitFor((c) => c.field === 'messages' && c.item.from === other, 5000, 'reject');
    expect((rej.item.interactive as { call_permission_reply: unknown }).call_permission_reply).toEqual({
      response: 'reject',
      response_source: 'user_action',
    });
    await env.close();

    env = await startEnv({ business: US_BUSINESS });
    env.sim.permissions.openServiceWindow(U);
    const us = await env.graph('POST', `/${US_BUSINESS.phoneNumberId}/messages`, {
      messaging_product: 'whatsapp',
      to: U,
      type: 'interactive',
      interactive: { type: 'call_permission_request', action: { name: 'call_permission_request' } },
    });
    expect(us.body.error.code).toBe(138013);
  });

  it('callback_permission_status ENABLED: a user calling grants a temporary permission (automatic, context = wacid)', async () => {
    env = await startEnv({ settings: { callback_permission_status: 'ENABLED' } });
    const { sim, rx } = env;
    const call = await sim.placeUserCall({ user: { waId: U } });
    await rx.waitFor(callEvent('connect', call.id));
    const grant = await rx.waitFor((c) => c.field === 'messages', 5000, 'auto grant');
    expect(grant.item.context).toEqual({ from: U, id: call.id });
    expect(
      (grant.item.interactive as { call_permission_reply: Record<string, unknown> }).call_permission_reply,
    ).toMatchObject({
      response: 'accept',
      is_permanent: false,
      response_source: 'automatic',
    });
    expect(sim.permissions.status(U).status).toBe('temporary');
  });
});
