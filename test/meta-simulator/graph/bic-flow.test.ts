/**
 * Business-initiated calls (meta-calling-api.md §2.8, §3.1, §4.1, §4.4): permission gating, Meta's answer
 * webhook, RINGING → ACCEPTED / REJECTED, ring timeout, auto-revocation after 4 unanswered calls.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { BusinessWebRtcPeer } from '../../helpers/business-webrtc-peer.ts';
import { callEvent, callStatusIs, type Env, stableError, startEnv, US_BUSINESS } from './harness.ts';

let env: Env | undefined;
const peers: BusinessWebRtcPeer[] = [];
afterEach(async () => {
  for (const p of peers.splice(0)) await p.close();
  await env?.close();
  env = undefined;
});

const USER = '5511955551234';
const FAST = { bicConnectDelayMs: 30, bicAcceptedStatusDelayMs: 30, bicRingTimeoutMs: 300 } as const;

async function offer(): Promise<{ peer: BusinessWebRtcPeer; sdp: string }> {
  const peer = new BusinessWebRtcPeer();
  peers.push(peer);
  return { peer, sdp: await peer.createOffer() };
}

describe('the business calls a WhatsApp user', () => {
  it('without permission → 138006 (HTTP 401); from a US number → 138013', async () => {
    env = await startEnv({ timers: FAST });
    const { sdp } = await offer();
    const body = { messaging_product: 'whatsapp', to: USER, action: 'connect', session: { sdp_type: 'offer', sdp } };
    const res = await env.graph('POST', `/${env.sim.business.phoneNumberId}/calls`, body);
    expect(res.status).toBe(401);
    expect(stableError(res.body)).toEqual({
      error: {
        message: '(#138006) No approved call permission from the recipient',
        type: 'OAuthException',
        code: 138006,
        error_data: {
          messaging_product: 'whatsapp',
          details: 'The recipient has not approved call permission for this business phone number',
        },
        fbtrace_id: 'X',
      },
    });
    await env.close();

    env = await startEnv({ business: US_BUSINESS, timers: FAST });
    env.sim.permissions.grant(USER, { permanent: true });
    const us = await env.graph('POST', `/${US_BUSINESS.phoneNumberId}/calls`, body);
    expect(us.status).toBe(400);
    expect(us.body.error.code).toBe(138013);
    expect(us.body.error.error_data.details).toBe(
      'Business initiated calling is not available for business phone numbers in US',
    );
  }, 20_000);

  it('granted → calls[0].id, connect webhook with the answer, RINGING, ACCEPTED, media, terminate with duration', async () => {
    env = await startEnv({ timers: FAST });
    const { sim, rx, graph } = env;
    sim.permissions.grant(USER, { permanent: false });
    sim.users.setScript(USER, { bicAnswer: 'accept', bicAnswerDelayMs: 150 });
    const { peer, sdp } = await offer();
    const res = await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      to: USER,
      action: 'connect',
      session: { sdp_type: 'offer', sdp },
      biz_opaque_callback_data: 'campaign-9',
    });
    expect(res.status).toBe(200);
    expect(Object.keys(res.body)).toEqual(['messaging_product', 'calls']);
    const id = res.body.calls[0].id as string;
    expect(id).toMatch(/^wacid\./);

    const connect = await rx.waitFor(callEvent('connect', id), 5000, 'connect');
    expect(connect.item).toMatchObject({
      direction: 'BUSINESS_INITIATED',
      from: '447700900123',
      to: USER,
      biz_opaque_callback_data: 'campaign-9',
      session: { sdp_type: 'answer' },
    });
    await peer.applyAnswer((connect.item.session as { sdp: string }).sdp);
    const ringing = await rx.waitFor(callStatusIs('RINGING', id));
    expect(ringing.field).toBe('calls');
    expect(ringing.item).toMatchObject({ type: 'call', recipient_id: USER, biz_opaque_callback_data: 'campaign-9' });
    await peer.waitForConnected(5000);
    peer.startTone(440, -20);
    await rx.waitFor(callStatusIs('ACCEPTED', id), 5000, 'ACCEPTED');
    const call = sim.getCall(id);
    expect(call?.state).toBe('accepted');
    // Permission bookkeeping: the connected call counts towards the 24 h limit.
    expect(sim.permissions.describe(USER).actions[1]?.limits[0]?.current_usage).toBe(1);

    await new Promise((r) => setTimeout(r, 300));
    const bye = await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      call_id: id,
      action: 'terminate',
    });
    expect(bye.body).toEqual({ messaging_product: 'whatsapp', success: true });
    const term = await rx.waitFor(callEvent('terminate', id));
    expect(term.item).toMatchObject({
      direction: 'BUSINESS_INITIATED',
      status: 'COMPLETED',
      biz_opaque_callback_data: 'campaign-9',
    });
    expect(term.item.start_time).toBeDefined();
    expect(typeof term.item.duration).toBe('number');
    // UIC-only actions are refused on a business-initiated call.
    expect(
      (
        await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
          messaging_product: 'whatsapp',
          call_id: id,
          action: 'reject',
        })
      ).status,
    ).toBe(400);
  }, 20_000);

  it('the user rejects → REJECTED status and a terminate without start_time; 138003 while a call to the user is live', async () => {
    env = await startEnv({ timers: FAST });
    const { sim, rx, graph } = env;
    sim.permissions.grant(USER, { permanent: true });
    sim.users.setScript(USER, { bicAnswer: 'reject', bicAnswerDelayMs: 200 });
    const path = `/${sim.business.phoneNumberId}/calls`;
    const first = await offer();
    const res = await graph('POST', path, {
      messaging_product: 'whatsapp',
      to: USER,
      action: 'connect',
      session: { sdp_type: 'offer', sdp: first.sdp },
    });
    const id = res.body.calls[0].id as string;
    // The phone rings only once the business has applied Meta's answer (ICE+DTLS up).
    await first.peer.applyAnswer(((await rx.waitFor(callEvent('connect', id))).item.session as { sdp: string }).sdp);
    const second = await offer();
    const dup = await graph('POST', path, {
      messaging_product: 'whatsapp',
      to: USER,
      action: 'connect',
      session: { sdp_type: 'offer', sdp: second.sdp },
    });
    expect(dup.status).toBe(400);
    expect(dup.body.error.code).toBe(138003);
    await rx.waitFor(callStatusIs('REJECTED', id), 5000, 'REJECTED');
    const term = await rx.waitFor(callEvent('terminate', id));
    expect(term.item.start_time).toBeUndefined();
    expect(term.item.duration).toBeUndefined();
    const statuses = rx.changes
      .filter((c) => c.item.id === id)
      .map((c) => `${c.kind}:${String(c.kind === 'call' ? c.item.event : c.item.status)}`);
    expect(statuses).toEqual(['call:connect', 'status:RINGING', 'status:REJECTED', 'call:terminate']);
  }, 20_000);

  it('4 unanswered calls in a row revoke the permission with a call_permission_reply reject/automatic; next connect is 138006', async () => {
    env = await startEnv({ timers: FAST });
    const { sim, rx, graph } = env;
    sim.permissions.grant(USER, { permanent: false });
    sim.users.setScript(USER, { bicAnswer: 'no_answer' });
    const path = `/${sim.business.phoneNumberId}/calls`;
    for (let i = 0; i < 4; i++) {
      const { peer, sdp } = await offer();
      const res = await graph('POST', path, {
        messaging_product: 'whatsapp',
        to: USER,
        action: 'connect',
        session: { sdp_type: 'offer', sdp },
      });
      expect(res.status).toBe(200);
      const connect = await rx.waitFor(callEvent('connect', res.body.calls[0].id), 5000, `connect #${i}`);
      await peer.applyAnswer((connect.item.session as { sdp: string }).sdp);
      const term = await rx.waitFor(callEvent('terminate', res.body.calls[0].id), 5000, `terminate #${i}`);
      expect(term.item.start_time).toBeUndefined();
    }
    const revoke = await rx.waitFor((c) => c.field === 'messages' && c.kind === 'message', 5000, 'auto-revoke');
    expect(revoke.item.interactive).toEqual({
      type: 'call_permission_reply',
      call_permission_reply: { response: 'reject', response_source: 'automatic' },
    });
    expect(revoke.item.context).toBeUndefined();
    const { sdp } = await offer();
    const res = await graph('POST', path, {
      messaging_product: 'whatsapp',
      to: USER,
      action: 'connect',
      session: { sdp_type: 'offer', sdp },
    });
    expect(res.body.error.code).toBe(138006);
  }, 20_000);

  it('while SIP is enabled every /calls action is 131055', async () => {
    env = await startEnv({ timers: FAST });
    const { sim, graph } = env;
    const set = await graph('POST', `/${sim.business.phoneNumberId}/settings`, {
      calling: { sip: { status: 'ENABLED', servers: [{ hostname: 'sbc.example.com' }] } },
    });
    expect(set).toEqual({ status: 200, body: { success: true } });
    const res = await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      call_id: 'wacid.x',
      action: 'terminate',
    });
    expect(res.status).toBe(400);
    expect(stableError(res.body)).toEqual({
      error: {
        message: '(#131055) Method not allowed',
        type: 'OAuthException',
        code: 131055,
        error_data: {
          messaging_product: 'whatsapp',
          details:
            'Calling API is not allowed on this phone number because SIP is enabled. Disable SIP in calling settings to use the Graph calling API.',
        },
        fbtrace_id: 'X',
      },
    });
    await expect(sim.placeUserCall({ user: { waId: USER } })).rejects.toMatchObject({ code: 131055 });
  }, 20_000);
});
