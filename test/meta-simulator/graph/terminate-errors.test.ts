/**
 * Meta's calling error codes beyond the Graph answers (M-TRB): the terminate's `errors[]` when the user's WhatsApp
 * client fails (138019–138023, an injected per-call fault), and the number's account faults (131030 a test
 * number's allow list, 131044 no payment method, 138014 calling paused).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { BusinessWebRtcPeer } from '../../helpers/business-webrtc-peer.ts';
import { callEvent, callStatusIs, type Env, stableError, startEnv } from './harness.ts';

let env: Env | undefined;
const peers: BusinessWebRtcPeer[] = [];
afterEach(async () => {
  for (const p of peers.splice(0)) await p.close();
  await env?.close();
  env = undefined;
});

const USER = '5511955551234';
const HREF = 'https://developers.facebook.com/documentation/business-messaging/whatsapp/calling/troubleshooting';

function businessPeer(): BusinessWebRtcPeer {
  const p = new BusinessWebRtcPeer();
  peers.push(p);
  return p;
}

/** A user call the business has answered (pre_accept + accept), so Meta counts it connected. */
async function acceptedUserCall(e: Env, waId = USER) {
  const call = await e.sim.placeUserCall({ user: { waId } });
  const connect = await e.rx.waitFor(callEvent('connect', call.id), 5000, 'connect');
  const answer = await businessPeer().answer((connect.item.session as { sdp: string }).sdp);
  const res = await e.graph('POST', `/${e.sim.business.phoneNumberId}/calls`, {
    messaging_product: 'whatsapp',
    call_id: call.id,
    action: 'accept',
    session: { sdp_type: 'answer', sdp: answer },
  });
  expect(res.status).toBe(200);
  return call;
}

describe('the user’s WhatsApp client fails: terminate FAILED with errors[] (REF26 shape)', () => {
  it.each([
    [138020, 'Client to relay connection failed', "The WhatsApp client could not connect to Meta's media relay"],
    [138021, 'Client received no media for too long', 'The WhatsApp client received no media for too long'],
    [138022, 'Client could not transmit media', 'The WhatsApp client could not transmit media'],
    [
      138023,
      'Accepted but no media signals',
      'The call was accepted but no media signals arrived; connectivity unknown',
    ],
  ])(
    '%i during a connected call: FAILED, with start_time and errors[] carrying the code',
    async (code, message, details) => {
      env = await startEnv();
      const call = await acceptedUserCall(env);
      const res = await env.ctl('POST', `/calls/${call.id}/fail`, { code });
      expect(res.status).toBe(200);
      const term = await env.rx.waitFor(callEvent('terminate', call.id));
      expect(term.item).toMatchObject({ status: 'FAILED', start_time: expect.any(String) });
      expect(term.value.errors).toEqual([{ code, message, href: HREF, error_data: { details } }]);
      expect(call.record.endReason).toBe('client_failure');
    },
  );

  it('138019 while the call is being set up: FAILED without start_time; refused once connected', async () => {
    env = await startEnv();
    const call = await env.sim.placeUserCall({ user: { waId: USER } });
    await env.rx.waitFor(callEvent('connect', call.id));
    expect((await env.ctl('POST', `/calls/${call.id}/fail`, { code: 138019 })).status).toBe(200);
    const term = await env.rx.waitFor(callEvent('terminate', call.id));
    expect(term.item.status).toBe('FAILED');
    expect(term.item.start_time).toBeUndefined();
    expect(term.value.errors).toEqual([
      {
        code: 138019,
        message: 'Client call setup failed',
        href: HREF,
        error_data: { details: 'The WhatsApp client could not set the call up' },
      },
    ]);

    const connected = await acceptedUserCall(env, '5511955550002');
    const late = await env.ctl('POST', `/calls/${connected.id}/fail`, { code: 138019 });
    expect(late.status).toBe(409);
    expect(late.body.error.message).toMatch(/before the call is connected/);
    expect((await env.ctl('POST', `/calls/${connected.id}/fail`, { code: 138006 })).status).toBe(409);
    expect(connected.state).toBe('accepted');
  });

  it('a business-initiated call whose client fails while ringing is not counted as unanswered', async () => {
    env = await startEnv({ timers: { bicConnectDelayMs: 30 } });
    const { sim, rx, graph } = env;
    sim.permissions.grant(USER, { permanent: true });
    sim.users.setScript(USER, { bicAnswer: 'no_answer' });
    const peer = businessPeer();
    const res = await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      to: USER,
      action: 'connect',
      session: { sdp_type: 'offer', sdp: await peer.createOffer() },
    });
    const id = res.body.calls[0].id as string;
    const connect = await rx.waitFor(callEvent('connect', id));
    await peer.applyAnswer((connect.item.session as { sdp: string }).sdp);
    await rx.waitFor(callStatusIs('RINGING', id));
    expect((await env.ctl('POST', `/calls/${id}/fail`, { code: 138020 })).status).toBe(200);
    const term = await rx.waitFor(callEvent('terminate', id));
    expect(term.value.errors).toMatchObject([{ code: 138020 }]);
    expect(sim.permissions.consecutiveUnanswered(USER)).toBe(0);
  });
});

describe('the number’s account faults', () => {
  it('131030: a test number calls only the numbers on its allow list', async () => {
    env = await startEnv();
    const { sim, graph } = env;
    sim.permissions.grant(USER, { permanent: true });
    expect((await env.ctl('POST', '/number/faults', { testAllowList: ['447700900999'] })).body).toEqual({
      faults: { testAllowList: ['447700900999'] },
    });
    const res = await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      to: USER,
      action: 'connect',
      session: { sdp_type: 'offer', sdp: await businessPeer().createOffer() },
    });
    expect(res.status).toBe(400);
    expect(stableError(res.body)).toEqual({
      error: {
        message: '(#131030) Recipient phone number not in allowed list',
        type: 'OAuthException',
        code: 131030,
        error_data: { messaging_product: 'whatsapp', details: `${USER} is not in the test number's allowed list` },
        fbtrace_id: 'X',
      },
    });
    expect(sim.calls).toHaveLength(0);
  });

  it('138014: calling paused — connect refused; a paused user-initiated side hides the button (no webhook)', async () => {
    env = await startEnv();
    const { sim, graph } = env;
    sim.permissions.grant(USER, { permanent: true });
    await env.ctl('POST', '/number/faults', { callingPaused: 'all' });
    const res = await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      to: USER,
      action: 'connect',
      session: { sdp_type: 'offer', sdp: await businessPeer().createOffer() },
    });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 138014, message: '(#138014) Calling temporarily disabled' });
    await expect(sim.placeUserCall({ user: { waId: USER } })).rejects.toMatchObject({ code: 138014 });
    await env.ctl('POST', '/number/faults', { callingPaused: null });
    expect((await env.ctl('GET', '/number/faults')).body).toEqual({ faults: {} });
  });

  it('131044: without a payment method a user’s call becomes an errors-only calls webhook, no connect', async () => {
    env = await startEnv();
    const { sim, rx } = env;
    sim.engine.setNumberFaults({ paymentIssue: true });
    await expect(sim.placeUserCall({ user: { waId: USER } })).rejects.toMatchObject({ code: 131044 });
    const change = await rx.waitFor((c) => c.field === 'calls' && Array.isArray(c.value.errors), 5000, '131044');
    expect(change.value.calls).toBeUndefined();
    expect(change.value.errors).toEqual([
      {
        code: 131044,
        message: 'Payment issue',
        href: HREF,
        error_data: {
          details: 'The business has no valid payment method attached; the user-initiated call was not connected',
        },
      },
    ]);
    expect(sim.calls).toHaveLength(0);
  });
});
