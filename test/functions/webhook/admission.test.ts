/**
 * Admission rules of user-initiated calls, end to end: the Meta simulator places real calls
 * (signed connect webhooks, Graph API) and the bridge's webhook function decides.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { realClock, type SimClock } from '#simulator/graph/clock.ts';
import type { MetaSimulator } from '#simulator/simulator.ts';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';

/**
 * The after-hours stories run on a clock that reads Wednesday 1 January 2025, 12:00 UTC when the
 * stack starts and then moves with real time, shared by the bridge and the simulator (so the
 * connect webhook is not stale). The business is open on Saturdays only: closed all of that
 * Wednesday, whatever today's date is.
 */
function wednesdayNoon(): SimClock {
  const offset = Date.UTC(2025, 0, 1, 12) - Date.now();
  return { ...realClock, now: () => Date.now() + offset };
}
const closedOnWednesdays = JSON.stringify({
  timeZone: 'UTC',
  weekly: [{ day: 'SATURDAY', open: '0000', close: '2359' }],
});
/** A stack whose business is closed now (see {@link wednesdayNoon}). */
function startClosedStack(env: Record<string, string> = {}): Promise<TestStack> {
  const clock = wednesdayNoon();
  return startTestStack({ BUSINESS_HOURS: closedOnWednesdays, ...env }, { now: clock.now, simulator: { clock } });
}

async function record(stack: TestStack, callId: string): Promise<Record<string, unknown>> {
  return (await (await stack.api(`/v1/calls/${encodeURIComponent(callId)}`)).json()) as Record<string, unknown>;
}

describe('admission with default settings (always open, 1000 calls)', () => {
  let stack: TestStack;
  let sim: MetaSimulator;
  beforeAll(async () => {
    stack = await startTestStack();
    sim = stack.simulator!;
  });
  afterAll(() => stack.stop());

  it('queues a call from an ordinary number', async () => {
    const call = await sim.placeUserCall({ user: { waId: '4915112345678', name: 'Jonas' } });
    const r = await eventually(async () => {
      const x = await record(stack, call.id);
      return x.state === 'queued' && x;
    });
    expect(r).toMatchObject({ route: 'default', slotHeld: true });
  });

  it.each([
    ['Cuba', { waId: '5352345678' }],
    ['Crimea', { waId: '380652123456' }],
    ['Iran, BSUID only', { userId: 'IR.13491208655302741918' }],
  ])('rejects a caller from %s at Meta and never queues the call', async (_where, user) => {
    const jobs = await stack.jobCount();
    const call = await sim.placeUserCall({ user });
    await eventually(() => call.state === 'ended', 5000, 'the simulated call to end');
    expect(call.record.endReason).toBe('business_reject');
    expect(await record(stack, call.id)).toMatchObject({
      state: 'ended',
      endReason: 'sanctioned-caller',
      endedBy: 'bridge',
    });
    expect(await stack.jobCount()).toBe(jobs);
  });
});

describe('admission outside business hours', () => {
  it('rejects the call at Meta when no after-hours target is configured', async () => {
    const stack = await startClosedStack();
    try {
      const call = await stack.simulator!.placeUserCall({ user: { waId: '4915112345678' } });
      await eventually(() => call.state === 'ended', 5000, 'the simulated call to end');
      expect(call.record.endReason).toBe('business_reject');
      expect(await record(stack, call.id)).toMatchObject({ state: 'ended', endReason: 'after-hours' });
      expect(await stack.jobCount()).toBe(0);
    } finally {
      await stack.stop();
    }
  });

  it('routes the call to the after-hours SIP target when one is configured', async () => {
    const stack = await startClosedStack({ AFTER_HOURS_SIP_TARGET: 'sip:voicemail@127.0.0.3:5090' });
    try {
      const call = await stack.simulator!.placeUserCall({ user: { waId: '4915112345678' } });
      await eventually(async () => (await record(stack, call.id)).state === 'queued', 5000, 'the call to be queued');
      expect(await record(stack, call.id)).toMatchObject({
        route: 'after-hours',
        sipTarget: 'sip:voicemail@127.0.0.3:5090',
      });
      const [job] = await stack.receiveJobs();
      expect(job).toMatchObject({ callId: call.id, route: 'after-hours', sipTarget: 'sip:voicemail@127.0.0.3:5090' });
      expect(call.state).toBe('offered');
    } finally {
      await stack.stop();
    }
  });
});

describe('per-number concurrency cap', () => {
  it('refuses the call over the cap and admits again once a call ends', async () => {
    const stack = await startTestStack({ MAX_CONCURRENT_CALLS: '1' });
    try {
      const sim = stack.simulator!;
      const first = await sim.placeUserCall({ user: { waId: '4915110000001' } });
      await eventually(async () => (await record(stack, first.id)).state === 'queued', 5000, 'first call queued');

      const second = await sim.placeUserCall({ user: { waId: '4915110000002' } });
      await eventually(() => second.state === 'ended', 5000, 'second call rejected');
      expect(await record(stack, second.id)).toMatchObject({ state: 'ended', endReason: 'over-capacity' });

      first.hangUp();
      await eventually(async () => (await record(stack, first.id)).state === 'ended', 5000, 'first call ended');
      expect(await stack.runtime.calls.slotsInUse(stack.runtime.config.line.phoneNumberId)).toBe(0);

      const third = await sim.placeUserCall({ user: { waId: '4915110000003' } });
      await eventually(async () => (await record(stack, third.id)).state === 'queued', 5000, 'third call queued');
    } finally {
      await stack.stop();
    }
  });
});

describe('control API', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(() => stack.stop());

  it('refuses requests without the bearer key', async () => {
    expect((await stack.api('/v1/calls/wacid.x', { key: null })).status).toBe(401);
    expect((await stack.api('/v1/calls/wacid.x', { key: 'wrong-key-wrong-key' })).status).toBe(401);
  });

  it('answers 404 for an unknown call and for unknown routes', async () => {
    expect((await stack.api('/v1/calls/wacid.unknown')).status).toBe(404);
    expect((await stack.api('/v1/nothing')).status).toBe(404);
  });

  it('reports health without a key', async () => {
    const res = await stack.api('/healthz', { key: null });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok', activeCalls: 0 });
  });

  it('shows an ended call with its end reason and history', async () => {
    const call = await stack.simulator!.placeUserCall({ user: { waId: '4915112345678' } });
    await eventually(async () => (await record(stack, call.id)).state === 'queued');
    call.hangUp();
    // The record's state and its history are separate writes: wait for both.
    const r = await eventually(async () => {
      const x = await record(stack, call.id);
      return x.state === 'ended' && (x.history as Array<{ what: string }>).some((h) => h.what === 'ended') && x;
    });
    expect(r).toMatchObject({ state: 'ended', endReason: 'caller-hung-up', direction: 'user-initiated' });
    expect((r.history as Array<{ what: string }>).map((h) => h.what)).toEqual(['offered', 'queued', 'ended']);
    expect(r).not.toHaveProperty('sdpOffer');
  });
});
