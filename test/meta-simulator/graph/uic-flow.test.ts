/**
 * User-initiated calls end to end: a real RelayPeer (Meta's side) and a real werift business peer
 * (the bridge's side), real HTTP for Graph and webhooks on 127.0.0.1.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../../helpers/async.ts';
import { BusinessWebRtcPeer } from '../../helpers/business-webrtc-peer.ts';
import { SdesBusiness } from '../../helpers/sdes-business.ts';
import { callEvent, type Env, stableError, startEnv } from './harness.ts';

let env: Env | undefined;
const peers: BusinessWebRtcPeer[] = [];
afterEach(async () => {
  for (const p of peers.splice(0)) await p.close();
  await env?.close();
  env = undefined;
});

function businessPeer(): BusinessWebRtcPeer {
  const p = new BusinessWebRtcPeer();
  peers.push(p);
  return p;
}

describe('a WhatsApp user calls the business', () => {
  it('connect (signed, with offer) → pre_accept → accept → media → user hangs up → terminate with start/end/duration', async () => {
    env = await startEnv();
    const { sim, rx, graph } = env;
    const call = await sim.placeUserCall({
      user: { waId: '5511955551234', userId: 'BR.1234567890', name: 'Zoë' },
      ctaPayload: 'order-42',
    });
    const connect = await rx.waitFor(callEvent('connect', call.id), 5000, 'connect');
    expect(rx.handshakes).toBe(1);
    expect(connect.signatureOk).toBe(true);
    expect(connect.item).toMatchObject({
      id: call.id,
      from: '5511955551234',
      to: '447700900123',
      direction: 'USER_INITIATED',
      cta_payload: 'order-42',
      session: { sdp_type: 'offer' },
    });
    expect(typeof connect.item.timestamp).toBe('string');
    const offer = (connect.item.session as { sdp: string }).sdp;
    expect(offer).toContain('a=ice-lite');

    const biz = businessPeer();
    const answer = await biz.answer(offer);
    const pre = await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      call_id: call.id,
      action: 'pre_accept',
      session: { sdp_type: 'answer', sdp: answer },
    });
    expect(pre).toEqual({ status: 200, body: { messaging_product: 'whatsapp', success: true } });
    expect(call.state).toBe('pre_accepted');

    const acc = await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      call_id: call.id,
      action: 'accept',
      session: { sdp_type: 'answer', sdp: answer },
      biz_opaque_callback_data: 'agent-7',
    });
    expect(acc).toEqual({ status: 200, body: { messaging_product: 'whatsapp', success: true } });
    expect(call.state).toBe('accepted');

    await biz.waitForConnected(5000);
    biz.startTone(440, -20);
    const deadline = Date.now() + 5000;
    while (call.relay.firstBusinessMediaAt === undefined && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    expect(call.relay.firstBusinessMediaAt).toBeDefined();

    await new Promise((r) => setTimeout(r, 1100)); // so duration ≥ 1 s
    call.hangUp();
    const term = await rx.waitFor(callEvent('terminate', call.id), 5000, 'terminate');
    expect(term.signatureOk).toBe(true);
    expect(term.item).toMatchObject({
      id: call.id,
      event: 'terminate',
      direction: 'USER_INITIATED',
      status: 'COMPLETED',
      biz_opaque_callback_data: 'agent-7',
      cta_payload: 'order-42',
    });
    const start = Number(term.item.start_time);
    const end = Number(term.item.end_time);
    expect(end).toBeGreaterThanOrEqual(start);
    expect(term.item.duration).toBe(Math.round((call.record.endedAt! - call.record.startedAt!) / 1000));
    expect(term.item.duration).toBeGreaterThanOrEqual(1);
    expect(call.state).toBe('ended');

    // The call log shows the whole story.
    const detail = await env.ctl('GET', `/calls/${encodeURIComponent(call.id)}`);
    expect(detail.body.history).toEqual(['offered', 'pre_accepted', 'accepted', 'ended']);
    // Media only after accept: the caller's client took the accept as the answer.
    expect(detail.body.caller).toMatchObject({ answeredBy: 'accept', businessPacketsBeforeAccept: 0 });
    expect(detail.body.caller.answeredAt).toBe(detail.body.caller.acceptedAt);
    expect(detail.body.log.map((e: { kind: string; name: string }) => `${e.kind}:${e.name}`)).toEqual(
      expect.arrayContaining([
        'webhook:connect',
        'action:pre_accept',
        'action:accept',
        'user:hangup',
        'webhook:terminate',
      ]),
    );
  }, 20_000);

  it('rejects accept whose SDP differs from pre_accept, sdp_type "offer", reject once pre-accepted, and any action once the call ended', async () => {
    env = await startEnv();
    const { sim, rx, graph } = env;
    const call = await sim.placeUserCall({ user: { waId: '5511955551234' } });
    const offer = ((await rx.waitFor(callEvent('connect', call.id))).item.session as { sdp: string }).sdp;
    const answer = await businessPeer().answer(offer);
    const path = `/${sim.business.phoneNumberId}/calls`;

    // The parameter tables say "offer"; the API wants "answer" (§3.2, whatsapp-api-js#522).
    const wrongType = await graph('POST', path, {
      messaging_product: 'whatsapp',
      call_id: call.id,
      action: 'pre_accept',
      session: { sdp_type: 'offer', sdp: answer },
    });
    expect(wrongType.status).toBe(400);
    expect(stableError(wrongType.body)).toEqual({
      error: {
        message: '(#100) Invalid parameter',
        type: 'OAuthException',
        code: 100,
        error_data: {
          messaging_product: 'whatsapp',
          details: "Invalid session.sdp_type 'offer' for action pre_accept: expected 'answer'.",
        },
        fbtrace_id: 'X',
      },
    });

    expect(
      (
        await graph('POST', path, {
          messaging_product: 'whatsapp',
          call_id: call.id,
          action: 'pre_accept',
          session: { sdp_type: 'answer', sdp: answer },
        })
      ).status,
    ).toBe(200);
    const altered = answer.replace(/a=ice-pwd:(\S+)/, 'a=ice-pwd:$1x');
    const mismatch = await graph('POST', path, {
      messaging_product: 'whatsapp',
      call_id: call.id,
      action: 'accept',
      session: { sdp_type: 'answer', sdp: altered },
    });
    expect(mismatch.status).toBe(400);
    expect(stableError(mismatch.body).error).toEqual({
      message: '(#100) Invalid parameter',
      type: 'OAuthException',
      code: 100,
      error_data: {
        messaging_product: 'whatsapp',
        details: 'The SDP answer in accept must be the same as the SDP answer sent in pre_accept.',
      },
      fbtrace_id: 'X',
    });
    expect(call.state).toBe('pre_accepted');

    // A pre-accepted call is in progress: reject is refused, terminate ends it (M-TRB, REF26).
    const reject = await graph('POST', path, { messaging_product: 'whatsapp', call_id: call.id, action: 'reject' });
    expect(reject.status).toBe(400);
    expect(reject.body.error.error_data.details).toBe(
      `Accept/Reject an already In Progress call: call ${call.id} is pre_accepted; end it with action terminate.`,
    );
    expect(
      (await graph('POST', path, { messaging_product: 'whatsapp', call_id: call.id, action: 'terminate' })).body,
    ).toEqual({
      messaging_product: 'whatsapp',
      success: true,
    });
    const term = await rx.waitFor(callEvent('terminate', call.id));
    expect(term.item.start_time).toBeUndefined();
    expect(term.item.duration).toBeUndefined();

    const late = await graph('POST', path, { messaging_product: 'whatsapp', call_id: call.id, action: 'terminate' });
    expect(late.status).toBe(400);
    expect(late.body.error.code).toBe(100);
    expect(late.body.error.error_data.details).toBe(
      `Call ${call.id} has already ended (COMPLETED); action terminate is not allowed.`,
    );

    const unknown = await graph('POST', path, {
      messaging_product: 'whatsapp',
      call_id: 'wacid.nope',
      action: 'accept',
      session: { sdp_type: 'answer', sdp: answer },
    });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.error_data.details).toBe(
      'Invalid call_id: no call with id wacid.nope for this phone number',
    );
  }, 20_000);

  it('validates the business SDP like Meta (multiple fingerprints → 100 SDP Validation error)', async () => {
    env = await startEnv();
    const { sim, rx, graph } = env;
    const call = await sim.placeUserCall({ user: { waId: '5511955551234' } });
    const offer = ((await rx.waitFor(callEvent('connect', call.id))).item.session as { sdp: string }).sdp;
    const answer = await businessPeer().answer(offer);
    const twoFingerprints = answer.replace(/(a=fingerprint:[^\r\n]+\r\n)/, '$1a=fingerprint:sha-512 AA:BB\r\n');
    const res = await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      call_id: call.id,
      action: 'accept',
      session: { sdp_type: 'answer', sdp: twoFingerprints },
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe(100);
    expect(res.body.error.error_data.details).toMatch(/^SDP Validation error: /);
    expect(call.state).toBe('offered');
  }, 20_000);

  it('terminates an unanswered call after the configured timeout, without start_time (Meta: 30–60 s)', async () => {
    env = await startEnv({ timers: { unansweredMs: 300 } });
    const { sim, rx } = env;
    const call = await sim.placeUserCall({ user: { waId: '5511955551234' } });
    const term = await rx.waitFor(callEvent('terminate', call.id), 5000, 'terminate');
    expect(term.item.status).toBe('COMPLETED');
    expect(term.item.start_time).toBeUndefined();
    expect(term.item.end_time).toBeUndefined();
    expect(term.item.duration).toBeUndefined();
    expect(call.record.endReason).toBe('unanswered');
    expect(call.log.some((e) => e.kind === 'timer' && e.name === 'unanswered_timeout')).toBe(true);
  }, 20_000);

  it('media watchdog: accepted but the business never sends media → terminate FAILED with errors[138021]', async () => {
    env = await startEnv({ timers: { firstMediaTimeoutMs: 400, watchdogPollMs: 50 } });
    const { sim, rx, graph } = env;
    const call = await sim.placeUserCall({ user: { waId: '5511955551234' } });
    const offer = ((await rx.waitFor(callEvent('connect', call.id))).item.session as { sdp: string }).sdp;
    const answer = await businessPeer().answer(offer); // connects, but never sends RTP
    expect(
      (
        await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
          messaging_product: 'whatsapp',
          call_id: call.id,
          action: 'accept',
          session: { sdp_type: 'answer', sdp: answer },
        })
      ).status,
    ).toBe(200);
    const term = await rx.waitFor(callEvent('terminate', call.id), 5000, 'terminate');
    expect(term.item.status).toBe('FAILED');
    expect(term.item.start_time).toBeDefined();
    expect(term.value.errors).toEqual([
      expect.objectContaining({
        code: 138021,
        error_data: { details: 'No media received from the business within 400 ms of call start' },
      }),
    ]);
    expect(call.record.endReason).toBe('no_media');
  }, 20_000);

  it('media watchdog: a gap in business media during the call → 138021', async () => {
    env = await startEnv({ timers: { firstMediaTimeoutMs: 5000, mediaGapTimeoutMs: 400, watchdogPollMs: 50 } });
    const { sim, rx, graph } = env;
    const call = await sim.placeUserCall({ user: { waId: '5511955551234' } });
    const offer = ((await rx.waitFor(callEvent('connect', call.id))).item.session as { sdp: string }).sdp;
    const biz = businessPeer();
    const answer = await biz.answer(offer);
    await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      call_id: call.id,
      action: 'accept',
      session: { sdp_type: 'answer', sdp: answer },
    });
    await biz.waitForConnected(5000);
    biz.startTone(300, -20);
    await new Promise((r) => setTimeout(r, 600));
    expect(call.state).toBe('accepted');
    biz.stopSending();
    const term = await rx.waitFor(callEvent('terminate', call.id), 5000, 'terminate');
    expect(term.value.errors).toEqual([expect.objectContaining({ code: 138021 })]);
    expect(call.record.endReason).toBe('media_gap');
  }, 20_000);

  it('one active call per business↔user pair (138003) and the concurrency cap (138002) refuse new user calls', async () => {
    env = await startEnv({ maxConcurrentCalls: 2 });
    const { sim } = env;
    const first = await sim.placeUserCall({ user: { waId: '5511955551234' } });
    await expect(sim.placeUserCall({ user: { waId: '5511955551234' } })).rejects.toMatchObject({
      name: 'SimCallRefusedError',
      code: 138003,
    });
    await sim.placeUserCall({ user: { waId: '5511955550000' } });
    await expect(sim.placeUserCall({ user: { waId: '5511955551111' } })).rejects.toMatchObject({ code: 138002 });
    // Via the control API too.
    const dup = await env.ctl('POST', '/calls', { from: '5511955551234' });
    expect(dup.status).toBe(409);
    expect(dup.body.error.code).toBe(138003);
    first.hangUp();
    await expect(sim.placeUserCall({ user: { waId: '5511955551234' } })).resolves.toBeDefined();
  }, 20_000);

  it('control API: start a call, send DTMF in-band to the business, list and hang up', async () => {
    env = await startEnv();
    const { sim, rx, graph, ctl } = env;
    const created = await ctl('POST', '/calls', { from: '+5511955551234', name: 'Ana', deeplinkPayload: 'dl-1' });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const connect = await rx.waitFor(callEvent('connect', id));
    expect(connect.item.deeplink_payload).toBe('dl-1');
    const biz = businessPeer();
    const answer = await biz.answer((connect.item.session as { sdp: string }).sdp);
    await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      call_id: id,
      action: 'accept',
      session: { sdp_type: 'answer', sdp: answer },
    });
    await biz.waitForConnected(5000);
    biz.startTone(440, -20);
    const dtmf = await ctl('POST', `/calls/${encodeURIComponent(id)}/dtmf`, { digits: '12#' });
    expect(dtmf.status).toBe(202);
    const deadline = Date.now() + 5000;
    while (biz.digits.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(biz.digits).toBe('12#');
    expect((await ctl('POST', `/calls/${encodeURIComponent(id)}/tone`, { hz: 1000, dbfs: -10 })).status).toBe(200);
    const list = await ctl('GET', '/calls');
    expect(list.body.calls).toEqual([expect.objectContaining({ id, state: 'accepted', direction: 'USER_INITIATED' })]);
    expect((await ctl('POST', `/calls/${encodeURIComponent(id)}/hangup`)).status).toBe(200);
    await rx.waitFor(callEvent('terminate', id));
    expect((await ctl('POST', `/calls/${encodeURIComponent(id)}/hangup`)).status).toBe(409);
    expect((await ctl('GET', '/calls/wacid.unknown')).status).toBe(404);
  }, 20_000);
});

/** Places a user call, answers the relay's offer with a werift peer and pre-accepts it. */
async function preAcceptedCall(e: Env) {
  const { sim, rx, graph } = e;
  const call = await sim.placeUserCall({ user: { waId: '5511955551234' } });
  const offer = ((await rx.waitFor(callEvent('connect', call.id))).item.session as { sdp: string }).sdp;
  const biz = businessPeer();
  const answer = await biz.answer(offer);
  const path = `/${sim.business.phoneNumberId}/calls`;
  const pre = await graph('POST', path, {
    messaging_product: 'whatsapp',
    call_id: call.id,
    action: 'pre_accept',
    session: { sdp_type: 'answer', sdp: answer },
  });
  expect(pre.status).toBe(200);
  await biz.waitForConnected(5000);
  const accept = (extra: Record<string, unknown> = {}) =>
    graph('POST', path, {
      messaging_product: 'whatsapp',
      call_id: call.id,
      action: 'accept',
      session: { sdp_type: 'answer', sdp: answer },
      ...extra,
    });
  return { call, biz, path, accept };
}

describe("the caller's WhatsApp client takes the first business media as the answer (M-FAQ)", () => {
  it('media after pre_accept and before accept: the call is answered by media, and the history says so', async () => {
    env = await startEnv();
    const { call, biz, accept } = await preAcceptedCall(env);
    biz.sendOneSilentFrame();
    await until(() => call.state === 'answered_by_media', 5000);

    const detail = await env.ctl('GET', `/calls/${encodeURIComponent(call.id)}`);
    expect(detail.body.history).toEqual(['offered', 'pre_accepted', 'answered_by_media']);
    expect(detail.body.caller).toMatchObject({ answeredBy: 'media', answeredAt: expect.any(String) });
    expect(detail.body.caller.answeredAt).toBe(detail.body.caller.firstBusinessMediaAt);
    expect(detail.body.caller.acceptedAt).toBeUndefined();
    expect(detail.body.log.map((e: { kind: string; name: string }) => `${e.kind}:${e.name}`)).toContain(
      'error:media_before_accept',
    );

    // Meta still takes the accept; the caller's timer had started before it.
    expect((await accept()).status).toBe(200);
    expect(call.state).toBe('accepted');
    const r = call.record;
    expect(r.answeredBy).toBe('media');
    expect(r.callerAnsweredAt).toBeLessThanOrEqual(r.acceptedAt!);
    expect(r.businessPacketsBeforeAccept).toBeGreaterThan(0);
    expect(call.record.history).toEqual(['offered', 'pre_accepted', 'answered_by_media', 'accepted']);
  }, 20_000);

  it('answered by media but never accepted: the caller saw a connected call that Meta then ends unanswered', async () => {
    env = await startEnv({ timers: { unansweredMs: 2000 } });
    const { call, biz } = await preAcceptedCall(env);
    biz.startTone(440, -20);
    await until(() => call.state === 'answered_by_media', 5000);
    const term = await env.rx.waitFor(callEvent('terminate', call.id), 5000, 'terminate');
    expect(term.item.start_time).toBeUndefined();
    expect(call.record).toMatchObject({ endReason: 'unanswered', answeredBy: 'media' });
  }, 20_000);

  it('no reject once answered by media either: the call is in progress, terminate ends it', async () => {
    env = await startEnv();
    const { call, biz, path } = await preAcceptedCall(env);
    biz.sendOneSilentFrame();
    await until(() => call.state === 'answered_by_media', 5000);
    const reject = await env.graph('POST', path, { messaging_product: 'whatsapp', call_id: call.id, action: 'reject' });
    expect(reject.status).toBe(400);
    expect(stableError(reject.body).error).toEqual({
      message: '(#100) Invalid parameter',
      type: 'OAuthException',
      code: 100,
      error_data: {
        messaging_product: 'whatsapp',
        details: `Accept/Reject an already In Progress call: call ${call.id} is answered_by_media; end it with action terminate.`,
      },
      fbtrace_id: 'X',
    });
    const end = await env.graph('POST', path, { messaging_product: 'whatsapp', call_id: call.id, action: 'terminate' });
    expect(end.status).toBe(200);
    expect(call.record.endReason).toBe('business_terminate');
  }, 20_000);

  it('a delayed accept response (far-away Graph) is stamped: Meta applies the accept, the 200 OK leaves later', async () => {
    env = await startEnv();
    const { sim, rx, graph } = env;
    const call = await sim.placeUserCall({ user: { waId: '5511955551234' }, faults: { acceptResponseDelayMs: 300 } });
    const offer = ((await rx.waitFor(callEvent('connect', call.id))).item.session as { sdp: string }).sdp;
    const answer = await businessPeer().answer(offer);
    const sentAt = Date.now();
    const acc = await graph('POST', `/${sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      call_id: call.id,
      action: 'accept',
      session: { sdp_type: 'answer', sdp: answer },
    });
    expect(acc.status).toBe(200);
    // A 300 ms timer measured on Date.now() may read 299 (millisecond rounding, Node fires timers up to
    // 1 ms early against the wall clock): lower bounds allow 5 ms for that, no upper bound (a loaded machine).
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(295);
    expect(call.record.acceptRespondedAt! - call.record.acceptedAt!).toBeGreaterThanOrEqual(295);
    expect(call.record.answeredBy).toBe('accept');
  }, 20_000);
});

describe('a number set to SDES (srtp_key_exchange_protocol: "SDES", M-SET)', () => {
  it('offers RTP/SAVP + a=crypto, refuses a DTLS answer, and connects an SDES answer with SRTP both ways', async () => {
    env = await startEnv({ timers: { firstMediaTimeoutMs: 1500, watchdogPollMs: 50 } });
    const { sim, rx, graph } = env;
    const settings = await graph('POST', `/${sim.business.phoneNumberId}/settings`, {
      calling: { srtp_key_exchange_protocol: 'SDES' },
    });
    expect(settings.status).toBe(200);
    const call = await sim.placeUserCall({ user: { waId: '5511955551234' } });
    const offer = ((await rx.waitFor(callEvent('connect', call.id))).item.session as { sdp: string }).sdp;
    expect(offer).toMatch(/^m=audio \d+ RTP\/SAVP 111 126$/m);
    expect(offer).toMatch(/^a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:/m);
    expect(offer).not.toMatch(/^a=(ice-ufrag|fingerprint|candidate)/m);

    const path = `/${sim.business.phoneNumberId}/calls`;
    const answerWith = (action: 'pre_accept' | 'accept', sdp: string) =>
      graph('POST', path, {
        messaging_product: 'whatsapp',
        call_id: call.id,
        action,
        session: { sdp_type: 'answer', sdp },
      });
    const biz = new SdesBusiness();
    try {
      const answer = await biz.sdp(offer);
      // A bridge that ignores the setting answers with DTLS: Meta's SDP validation refuses it.
      const refused = await answerWith('pre_accept', answer.replace('RTP/SAVP', 'UDP/TLS/RTP/SAVPF'));
      expect(refused.status).toBe(400);
      expect(stableError(refused.body).error.error_data.details).toBe(
        'SDP Validation error: SDES requires protocol RTP/SAVP, found UDP/TLS/RTP/SAVPF',
      );
      expect((await answerWith('pre_accept', answer)).status).toBe(200);
      expect((await answerWith('accept', answer)).status).toBe(200);
      expect(call.state).toBe('accepted');
      for (let i = 0; i < 5; i++) biz.sendFrame();
      await until(() => biz.received.length > 0, 3000, { what: "the user's SRTP at the business" });
      expect(call.record.firstBusinessMediaAt).toBeDefined();
    } finally {
      await biz.close();
    }
  }, 20_000);
});
