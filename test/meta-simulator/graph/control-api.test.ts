/**
 * The `/_sim` control API beyond placing calls: user scripts and permissions, waiting on states, BSUID-only
 * callers, uncallable users, and the message/webhook logs.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { BusinessWebRtcPeer } from '../../helpers/business-webrtc-peer.ts';
import { callEvent, type Env, startEnv } from './harness.ts';

let env: Env | undefined;
const peers: BusinessWebRtcPeer[] = [];
afterEach(async () => {
  for (const p of peers.splice(0)) await p.close();
  await env?.close();
  env = undefined;
});

describe('/_sim control API', () => {
  it('a username-only caller (BSUID, no phone) produces a connect without from/wa_id; /wait resolves on accept', async () => {
    env = await startEnv();
    const { ctl, rx, graph, sim } = env;
    const created = await ctl('POST', '/calls', { userId: 'US.13491208655302741918', username: 'zoe.w', name: 'Zoë' });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const connect = await rx.waitFor(callEvent('connect', id));
    expect(connect.item.from).toBeUndefined();
    expect(connect.item.from_user_id).toBe('US.13491208655302741918');
    expect(connect.value.contacts).toEqual([
      { profile: { name: 'Zoë', username: 'zoe.w' }, user_id: 'US.13491208655302741918' },
    ]);
    const waiting = ctl('POST', `/calls/${encodeURIComponent(id)}/wait`, { state: 'accepted', timeoutMs: 5000 });
    const peer = new BusinessWebRtcPeer();
    peers.push(peer);
    const answer = await peer.answer((connect.item.session as { sdp: string }).sdp);
    await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      call_id: id,
      action: 'accept',
      session: { sdp_type: 'answer', sdp: answer },
    });
    const waited = await waiting;
    expect(waited.status).toBe(200);
    expect(waited.body.state).toBe('accepted');
    await expect(sim.getCall(id)?.waitFor('accepted', 10)).resolves.toBeDefined();
    const bad = await ctl('POST', `/calls/${encodeURIComponent(id)}/wait`, { state: 'flying' });
    expect(bad.status).toBe(400);
  }, 20_000);

  it('scripts and permissions per user; an uncallable user makes connect fail with 138001', async () => {
    env = await startEnv();
    const { ctl, graph, sim } = env;
    const script = await ctl('POST', '/users/5511955551234/script', {
      permissionReply: 'reject',
      bicAnswer: 'no_answer',
      uncallable: true,
    });
    expect(script.body).toEqual({
      user: '5511955551234',
      script: {
        permissionReply: 'reject',
        permissionReplyDelayMs: 100,
        bicAnswer: 'no_answer',
        bicAnswerDelayMs: 300,
        acceptedStatus: {},
        uncallable: true,
      },
    });
    expect((await ctl('POST', '/users/5511955551234/script', { bicAnswer: 'maybe' })).status).toBe(400);
    expect((await ctl('POST', '/users/5511955551234/script', { acceptedStatus: { lost: 'yes' } })).status).toBe(400);
    const granted = await ctl('POST', '/users/5511955551234/permission', { status: 'permanent' });
    expect(granted.body.permission).toEqual({ status: 'permanent' });
    expect((await ctl('GET', '/users/5511955551234/permission')).body.permission.status).toBe('permanent');
    const peer = new BusinessWebRtcPeer();
    peers.push(peer);
    const res = await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      to: '5511955551234',
      action: 'connect',
      session: { sdp_type: 'offer', sdp: await peer.createOffer() },
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe(138001);
    const users = await ctl('GET', '/users');
    expect(users.body.users).toEqual([expect.objectContaining({ identity: { waId: '5511955551234' } })]);
  });

  it('messages and webhook deliveries are listed; unknown routes are 404', async () => {
    env = await startEnv();
    const { ctl, graph, sim, rx } = env;
    await graph('POST', `/${sim.business.phoneNumberId}/messages`, {
      messaging_product: 'whatsapp',
      to: '5511955551234',
      type: 'text',
      text: { body: 'hello' },
    });
    const msgs = await ctl('GET', '/messages');
    expect(msgs.body.messages).toEqual([expect.objectContaining({ to: '5511955551234', type: 'text', kind: 'text' })]);
    const call = await sim.placeUserCall({ user: { waId: '5511955551234' } });
    await rx.waitFor(callEvent('connect', call.id));
    const hooks = await ctl('GET', '/webhooks');
    expect(hooks.body.deliveries).toEqual([expect.objectContaining({ outcome: 'delivered', fields: ['calls'] })]);
    expect((await ctl('GET', '/nope')).status).toBe(404);
    expect((await ctl('GET', '/health')).body).toMatchObject({ ok: true, activeCalls: 1 });
  });
});
