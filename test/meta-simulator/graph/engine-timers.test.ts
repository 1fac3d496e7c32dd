/**
 * Call-engine behaviour on an injected manual clock (Meta's default timers without waiting for them), fault
 * injection through the control API, BSUID-only users, and the webhook handshake gate.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '#simulator/graph/clock.ts';
import { sleep, until } from '../../helpers/async.ts';
import { BusinessWebRtcPeer } from '../../helpers/business-webrtc-peer.ts';
import { callEvent, callStatusIs, type Env, startEnv } from './harness.ts';

let env: Env | undefined;
const peers: BusinessWebRtcPeer[] = [];
afterEach(async () => {
  for (const p of peers.splice(0)) await p.close();
  await env?.close();
  env = undefined;
});

const settle = (ms = 150) => new Promise((r) => setTimeout(r, ms));

describe('Meta timers on a manual clock', () => {
  it('the default unanswered timer is Meta’s earliest (30 s of "about 30 to 60 seconds") and fires exactly then', async () => {
    const clock = new ManualClock();
    env = await startEnv({ clock });
    const call = await env.sim.placeUserCall({ user: { waId: '5511955551234' } });
    await env.rx.waitFor(callEvent('connect', call.id));
    clock.advance(29_999);
    await settle();
    expect(call.state).toBe('offered');
    clock.advance(1);
    const term = await env.rx.waitFor(callEvent('terminate', call.id));
    expect(term.item.timestamp).toBe(String(Math.floor(clock.now() / 1000)));
    expect(term.item.start_time).toBeUndefined();
  });

  it('Meta’s latest, 60 s, can be configured instead', async () => {
    const clock = new ManualClock();
    env = await startEnv({ clock, timers: { unansweredMs: 60_000 } });
    const call = await env.sim.placeUserCall({ user: { waId: '5511955551234' } });
    await env.rx.waitFor(callEvent('connect', call.id));
    clock.advance(59_999);
    await settle();
    expect(call.state).toBe('offered');
    clock.advance(1);
    await env.rx.waitFor(callEvent('terminate', call.id));
    expect(call.record.endReason).toBe('unanswered');
  });

  it('a pre-accepted call that is never accepted also ends at the deadline', async () => {
    const clock = new ManualClock();
    env = await startEnv({ clock, timers: { unansweredMs: 30_000 } });
    const call = await env.sim.placeUserCall({ user: { waId: '5511955551234' } });
    const offer = ((await env.rx.waitFor(callEvent('connect', call.id))).item.session as { sdp: string }).sdp;
    const peer = new BusinessWebRtcPeer();
    peers.push(peer);
    const answer = await peer.answer(offer);
    const res = await env.graph('POST', `/${env.sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      call_id: call.id,
      action: 'pre_accept',
      session: { sdp_type: 'answer', sdp: answer },
    });
    expect(res.status).toBe(200);
    clock.advance(30_000);
    await env.rx.waitFor(callEvent('terminate', call.id));
    expect(call.record.endReason).toBe('unanswered');
  });

  it('answered by media: the caller’s call has started, so Meta’s 20 s no-media rule runs from that packet (138021)', async () => {
    const clock = new ManualClock();
    env = await startEnv({ clock, timers: { unansweredMs: 60_000 } });
    const call = await env.sim.placeUserCall({ user: { waId: '5511955551234' } });
    const offer = ((await env.rx.waitFor(callEvent('connect', call.id))).item.session as { sdp: string }).sdp;
    const peer = new BusinessWebRtcPeer();
    peers.push(peer);
    const answer = await peer.answer(offer);
    const pre = await env.graph('POST', `/${env.sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      call_id: call.id,
      action: 'pre_accept',
      session: { sdp_type: 'answer', sdp: answer },
    });
    expect(pre.status).toBe(200);
    await peer.waitForConnected(5000);
    // One business packet before any accept, then nothing: the caller's timer runs over silence.
    peer.sendOneSilentFrame();
    await until(() => call.state === 'answered_by_media', 5000);
    clock.advance(250); // the watchdog's first look sees that one packet
    clock.advance(19_999);
    await settle();
    expect(call.state).toBe('answered_by_media');
    clock.advance(1);
    const term = await env.rx.waitFor(callEvent('terminate', call.id));
    expect(term.item).toMatchObject({ status: 'FAILED' });
    expect(term.item.start_time, 'Meta never established the call').toBeUndefined();
    expect((term.value.errors as Array<{ code: number }>)[0]?.code).toBe(138021);
    expect(call.record).toMatchObject({ endReason: 'no_media', answeredBy: 'media' });
    expect(call.record.history).toEqual(['offered', 'pre_accepted', 'answered_by_media', 'ended']);
  }, 20_000);

  it('BIC: ring timeout on the manual clock; the user declining via hangUp() sends REJECTED + terminate', async () => {
    const clock = new ManualClock();
    env = await startEnv({ clock, timers: { bicRingTimeoutMs: 60_000 } });
    const { sim, rx, graph } = env;
    const user = 'BR.5511955551234'; // a BSUID-only user (no phone number, §2.6)
    sim.users.upsert({ userId: user, username: 'ana.b' });
    sim.permissions.grant(user, { permanent: true });
    sim.users.setScript(user, { bicAnswer: 'no_answer' });
    const peer = new BusinessWebRtcPeer();
    peers.push(peer);
    const connect = async () =>
      graph('POST', `/${sim.business.phoneNumberId}/calls`, {
        messaging_product: 'whatsapp',
        recipient: user,
        action: 'connect',
        session: { sdp_type: 'offer', sdp: await peer.createOffer() },
      });
    const first = await connect();
    const id = first.body.calls[0].id as string;
    clock.advance(1000); // Meta's ~1 s until the connect (answer) webhook
    const answer = await rx.waitFor(callEvent('connect', id));
    expect(answer.item.to).toBeUndefined();
    expect(answer.item.to_user_id).toBe(user);
    await peer.applyAnswer((answer.item.session as { sdp: string }).sdp);
    const ringing = await rx.waitFor(callStatusIs('RINGING', id));
    expect(ringing.item.recipient_id).toBeUndefined();
    expect(ringing.item.recipient_user_id).toBe(user);
    clock.advance(60_000);
    const term = await rx.waitFor(callEvent('terminate', id));
    expect(term.item.start_time).toBeUndefined();
    expect(sim.getCall(id)?.record.endReason).toBe('ring_timeout');

    const peer2 = new BusinessWebRtcPeer();
    peers.push(peer2);
    const second = await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      recipient: user,
      action: 'connect',
      session: { sdp_type: 'offer', sdp: await peer2.createOffer() },
    });
    const id2 = second.body.calls[0].id as string;
    const call2 = sim.getCall(id2);
    expect(() => call2?.hangUp()).toThrow(/not ringing yet/);
    clock.advance(1000);
    await peer2.applyAnswer(((await rx.waitFor(callEvent('connect', id2))).item.session as { sdp: string }).sdp);
    await rx.waitFor(callStatusIs('RINGING', id2));
    call2?.hangUp();
    await rx.waitFor(callStatusIs('REJECTED', id2));
    await rx.waitFor(callEvent('terminate', id2));
    expect(sim.permissions.consecutiveUnanswered(user)).toBe(2);
  });

  it('BIC initiate attempts are capped per rolling 24 h (138005, HTTP 429)', async () => {
    const clock = new ManualClock();
    env = await startEnv({ clock, maxCallAttemptsPer24h: 1 });
    const { sim, graph } = env;
    sim.permissions.grant('5511955551234', { permanent: true });
    sim.permissions.grant('5511955550000', { permanent: true });
    const dial = async (to: string) => {
      const peer = new BusinessWebRtcPeer();
      peers.push(peer);
      return graph('POST', `/${sim.business.phoneNumberId}/calls`, {
        messaging_product: 'whatsapp',
        to,
        action: 'connect',
        session: { sdp_type: 'offer', sdp: await peer.createOffer() },
      });
    };
    expect((await dial('5511955551234')).status).toBe(200);
    const limited = await dial('5511955550000');
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe(138005);
    clock.advance(24 * 3_600_000);
    expect((await dial('5511955550000')).status).toBe(200);
  });
});

describe('a business-initiated call on a manual clock: Meta’s answer, pickup and the ACCEPTED status', () => {
  const USER = '5511955551234';

  /** The business dials USER; Meta's connect webhook (with its answer) goes out after Meta's ~1 s. */
  async function dial(clock: ManualClock) {
    const { sim, rx, graph } = env!;
    sim.permissions.grant(USER, { permanent: true });
    const peer = new BusinessWebRtcPeer();
    peers.push(peer);
    const res = await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      to: USER,
      action: 'connect',
      session: { sdp_type: 'offer', sdp: await peer.createOffer() },
    });
    const id = res.body.calls[0].id as string;
    clock.advance(1000);
    const connect = await rx.waitFor(callEvent('connect', id));
    return { id, peer, answer: (connect.item.session as { sdp: string }).sdp };
  }

  it('a business that never applies Meta’s answer: no ringing, terminate FAILED with 138007 at the deadline', async () => {
    const clock = new ManualClock();
    env = await startEnv({ clock });
    const { id } = await dial(clock);
    clock.advance(19_999);
    await settle();
    expect(env.sim.getCall(id)?.state).toBe('dialing');
    clock.advance(1);
    const term = await env.rx.waitFor(callEvent('terminate', id));
    expect(term.item).toMatchObject({ status: 'FAILED', direction: 'BUSINESS_INITIATED' });
    expect((term.value.errors as Array<{ code: number }>)[0]?.code).toBe(138007);
    expect(term.item.start_time).toBeUndefined();
    expect(env.rx.changes.filter((c) => c.kind === 'status' && c.item.id === id)).toEqual([]);
    expect(env.sim.getCall(id)?.record.endReason).toBe('connect_timeout');
    // The user never saw the call: it is not one of "4 unanswered in a row".
    expect(env.sim.permissions.consecutiveUnanswered(USER)).toBe(0);
  });

  it('rings once ICE+DTLS are up, sends no user audio while ringing, and ACCEPTED comes 2 s after pickup', async () => {
    const clock = new ManualClock();
    env = await startEnv({ clock });
    env.sim.users.setScript(USER, { bicAnswer: 'accept', bicAnswerDelayMs: 5000 });
    const { id, peer, answer } = await dial(clock);
    await settle();
    expect(env.rx.changes.some(callStatusIs('RINGING', id)), 'no ringing before the answer is applied').toBe(false);
    await peer.applyAnswer(answer);
    await peer.waitForConnected(5000);
    await env.rx.waitFor(callStatusIs('RINGING', id));
    peer.startTone(440, -20); // the business's maiden packet and more
    await until(() => (env?.sim.getCall(id)?.relay.stats().packetsReceived ?? 0) > 10, 5000);
    await sleep(200);
    expect(peer.received, 'no user audio while the phone rings').toHaveLength(0);

    clock.advance(5000); // the user picks up
    expect(env.sim.getCall(id)?.state).toBe('accepted');
    await until(() => peer.received.length > 0, 5000, { what: 'the user’s audio after pickup' });
    const call = env.sim.getCall(id)!;
    expect(call.relay.firstUserMediaSentAt).toBeGreaterThanOrEqual(call.relay.firstBusinessMediaAt ?? 0);
    clock.advance(1999);
    await settle();
    expect(env.rx.changes.some(callStatusIs('ACCEPTED', id)), 'ACCEPTED comes after the call is up').toBe(false);
    clock.advance(1);
    await env.rx.waitFor(callStatusIs('ACCEPTED', id));
  });

  it.each([
    ['lost', { lost: true }, 2000, 0],
    ['duplicated', { duplicates: 1 }, 2000, 2],
    ['late (3 s)', { delayMs: 3000 }, 3000, 1],
  ] as const)('the ACCEPTED status %s, injected through the control API', async (_, acceptedStatus, dueMs, copies) => {
    const clock = new ManualClock();
    env = await startEnv({ clock });
    const scripted = await env.ctl('POST', `/users/${USER}/script`, { bicAnswerDelayMs: 300, acceptedStatus });
    expect(scripted.body.script.acceptedStatus).toEqual(acceptedStatus);
    const { id, peer, answer } = await dial(clock);
    await peer.applyAnswer(answer);
    await env.rx.waitFor(callStatusIs('RINGING', id));
    peer.startTone(440, -20);
    clock.advance(300);
    expect(env.sim.getCall(id)?.state).toBe('accepted');
    clock.advance(dueMs - 1);
    await settle();
    expect(env.rx.changes.filter(callStatusIs('ACCEPTED', id))).toHaveLength(0);
    clock.advance(1);
    await settle(300);
    expect(env.rx.changes.filter(callStatusIs('ACCEPTED', id))).toHaveLength(copies);
  });
});

describe('webhook faults and handshake', () => {
  it('control API faults: the connect webhook is POSTed with 2 duplicates', async () => {
    env = await startEnv();
    const created = await env.ctl('POST', '/calls', { from: '5511955551234', faults: { connect: { duplicates: 2 } } });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    await env.rx.waitFor(callEvent('connect', id));
    await settle(200);
    expect(env.rx.changes.filter(callEvent('connect', id))).toHaveLength(3);
  });

  it('terminate before connect: a held connect is overtaken by the terminate, then released', async () => {
    env = await startEnv({ timers: { webhookOrderWaitMs: 100 } });
    const isConnect = (c: { value: Record<string, unknown> }) =>
      (c.value.calls as Array<{ event?: string }> | undefined)?.[0]?.event === 'connect';
    const hold = env.sim.emitter.hold(isConnect);
    const call = await env.sim.placeUserCall({ user: { waId: '5511955551234' } });
    call.hangUp();
    await env.rx.waitFor(callEvent('terminate', call.id));
    expect(env.rx.changes.filter(callEvent('connect', call.id))).toHaveLength(0);
    await hold.release();
    await env.rx.waitFor(callEvent('connect', call.id));
    expect(env.rx.changes.filter((c) => c.item.id === call.id).map((c) => c.item.event)).toEqual([
      'terminate',
      'connect',
    ]);
  });

  it('a callback that fails the GET handshake receives nothing; the call log records why', async () => {
    env = await startEnv({ verifyToken: 'not-the-receivers-token' });
    const call = await env.sim.placeUserCall({ user: { waId: '5511955551234' } });
    const deadline = Date.now() + 3000;
    while (!call.log.some((e) => e.kind === 'error') && Date.now() < deadline) await settle(20);
    expect(call.log.find((e) => e.kind === 'error')?.name).toBe(
      'webhook connect not sent (callback not verified or emitter closed)',
    );
    expect(env.rx.changes).toHaveLength(0);
  });
});
