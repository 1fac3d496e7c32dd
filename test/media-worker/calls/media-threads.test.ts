/**
 * Every core used (issue 13 item 2): with MEDIA_THREADS=2 each call's media runs on one of two
 * media threads, pinned there, while SIP and the call scripts stay on the main thread. Each kind of
 * call (user-initiated, PBX-started, API-started) is told end to end against the Meta simulator and
 * the local SIP agent — audio both ways, DTMF, hang-up — calls are spread over both threads, a
 * thread's calls leave nothing behind on it, and a thread that dies ends its calls `bridge-error`
 * and comes back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentCall } from '#local/sip-agent.ts';
import { measureTone } from '#simulator/media/audio.ts';
import type { SimCall } from '#simulator/simulator.ts';
import type { MediaThreadPool } from '#worker/threads/pool.ts';
import { sleep, until } from '../../helpers/async.ts';
import { grantPermission } from '../../helpers/permissions.ts';
import { RecordingMetrics } from '../../helpers/recording-metrics.ts';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';

let stack: TestStack;
let threads: MediaThreadPool;
const metrics = new RecordingMetrics();
let bridgeUri: (number: string) => string;

beforeAll(async () => {
  stack = await startTestStack(
    { SIP_RING_TIMEOUT_SECONDS: '5' },
    { bridge: true, workerMetrics: metrics, workerEnv: { MEDIA_THREADS: '2', MAX_CALLS_PER_WORKER: '10' } },
  );
  threads = stack.worker!.running!.mediaThreads!;
  const contact = stack.worker!.sipContact;
  bridgeUri = (number) => `sip:+${number}@${contact.slice(contact.indexOf('@') + 1)}`;
  stack.agent!.configure({ behaviour: 'answer', codecs: ['PCMU'], audio: 'tone', earlyMedia: false, answerDelayMs: 0 });
});
afterAll(() => stack?.stop());

/** Calls pinned to each thread now. */
const callsPerThread = () => threads.threads().map((t) => t.calls);

async function endedRecord(callId: string): Promise<Record<string, unknown>> {
  return eventually(
    async () => {
      const r = await stack.runtime.calls.get(callId);
      return r?.state === 'ended' && r.media !== undefined && (r as unknown as Record<string, unknown>);
    },
    8000,
    `call ${callId} to end with its media statistics`,
  );
}

/** A 1 kHz tone from WhatsApp and from the agent: each side hears the other's within 10 Hz. */
async function expectToneBothWays(call: SimCall, agentCall: AgentCall): Promise<void> {
  call.relay.startRecording();
  call.relay.playTone(1000, -12);
  await sleep(1500); // the measurement window
  const atWhatsApp = measureTone(call.relay.stopRecording().slice(-48000), 48000);
  const atSip = measureTone(agentCall.recording().slice(-agentCall.sampleRate), agentCall.sampleRate);
  expect(Math.abs(atWhatsApp.hz - 1000), 'the agent is heard on WhatsApp').toBeLessThan(10);
  expect(Math.abs(atSip.hz - 1000), 'the WhatsApp user is heard by the agent').toBeLessThan(10);
}

async function userCall(waId: string): Promise<{ call: SimCall; agentCall: AgentCall }> {
  const next = stack.agent!.nextCall(10_000);
  const call = await stack.simulator!.placeUserCall({ user: { waId, name: 'Thread' } });
  const agentCall = await next;
  await call.waitFor('accepted', 8000);
  return { call, agentCall };
}

describe('user-initiated calls on two media threads', () => {
  it('pins two calls to different threads, carries audio and DTMF both ways, and ends both everywhere', async () => {
    const first = await userCall('5511900000101');
    const second = await userCall('5511900000102');
    expect(callsPerThread(), 'one call on each thread').toEqual([1, 1]);

    await expectToneBothWays(first.call, first.agentCall);
    await expectToneBothWays(second.call, second.agentCall);
    await first.call.relay.sendDtmf('19#');
    await eventually(() => first.agentCall.receivedDigits === '19#', 15_000, 'DTMF at the SIP agent');
    await stack.agent!.sendDtmf(second.agentCall, '7*');
    await eventually(() => second.call.relay.receivedDigits === '7*', 15_000, 'DTMF at WhatsApp');

    first.call.hangUp();
    await first.agentCall.ended;
    await second.agentCall.hangUp();
    await eventually(() => second.call.state === 'ended', 5000, 'the WhatsApp leg of the second call to end');
    expect(await endedRecord(first.call.id)).toMatchObject({
      endReason: 'caller-hung-up',
      media: { mode: 'transcode', whatsapp: { srtpRejected: 0 } },
    });
    expect(await endedRecord(second.call.id)).toMatchObject({ endReason: 'agent-hung-up', endedBy: 'sip' });
    await eventually(() => callsPerThread().every((n) => n === 0), 5000, 'both threads to let their calls go');
  });
});

describe('a PBX-started call on a media thread', () => {
  it('bridges audio both ways and ends at Meta when the PBX hangs up', async () => {
    const number = '5511900000103';
    await grantPermission(stack, number);
    const agentCall = await stack.agent!.dial(bridgeUri(number));
    const call = await eventually(
      () => stack.simulator!.calls.find((c) => c.user.waId === number && c.state === 'accepted'),
      8000,
      'the WhatsApp user to pick up',
    );
    expect(callsPerThread().reduce((a, b) => a + b)).toBe(1);
    await expectToneBothWays(call, agentCall);
    await agentCall.hangUp();
    await eventually(() => call.state === 'ended', 5000, 'the WhatsApp leg to end');
    expect(await endedRecord(call.id)).toMatchObject({ direction: 'business-initiated', endReason: 'agent-hung-up' });
  });
});

describe('an API-started call on a media thread', () => {
  it('rings the user then the agent, bridges audio both ways, and ends everywhere on hang-up', async () => {
    const number = '5511900000104';
    await grantPermission(stack, number);
    const nextAgentCall = stack.agent!.nextCall(10_000);
    const res = await stack.api('/v1/calls', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ to: number, mode: 'customer-first' }),
    });
    expect(res.status).toBe(202);
    const agentCall = await nextAgentCall;
    const call = await eventually(
      () => stack.simulator!.calls.find((c) => c.user.waId === number && c.state === 'accepted'),
      8000,
      'the WhatsApp user to pick up',
    );
    expect(callsPerThread().reduce((a, b) => a + b)).toBe(1);
    await expectToneBothWays(call, agentCall);
    call.hangUp();
    await agentCall.ended;
    expect(await endedRecord(call.id)).toMatchObject({ endReason: 'caller-hung-up', endedBy: 'whatsapp' });
  });
});

describe('what the threads hold after their calls', () => {
  it('leaves every thread with an empty call registry and no UDP socket open', async () => {
    await eventually(
      async () => (await threads.inspect()).every((t) => t.calls === 0 && t.udpSockets === 0),
      5000,
      'every thread to let its calls and sockets go',
    );
    expect((await threads.inspect()).map((t) => t.index)).toEqual([0, 1]);
  });

  it('reports each thread’s event-loop delay, and the main thread’s, as EventLoopLag', async () => {
    // Every 5 s; the stories above took longer than that.
    await until(() => new Set(metrics.points.map((p) => p.dimensions.MediaThread)).size >= 3, 8000);
    const seen = new Set(metrics.since(0, 'EventLoopLag').map((p) => p.dimensions.MediaThread));
    expect([...seen].sort()).toEqual(['0', '1', 'main']);
    for (const p of metrics.since(0, 'EventLoopLag')) expect(p.value).toBeGreaterThanOrEqual(0);
  });
});

describe('a media thread that dies', () => {
  it('ends its call bridge-error at Meta and at the PBX, and is started again for the next call', async () => {
    const { call, agentCall } = await userCall('5511900000105');
    const index = callsPerThread().indexOf(1);
    await threads.kill(index);
    await agentCall.ended;
    await eventually(() => call.state === 'ended', 5000, 'the WhatsApp leg to end');
    expect(call.record.endReason).toBe('business_terminate');
    const record = await eventually(async () => {
      const r = await stack.runtime.calls.get(call.id);
      return r?.state === 'ended' && r;
    });
    expect(record).toMatchObject({ endReason: 'bridge-error', endedBy: 'bridge' });
    await eventually(
      () => threads.threads().every((t) => t.alive) && threads.threads()[index]!.restarts === 1,
      10_000,
      'the thread to be started again',
    );
    const next = await userCall('5511900000106');
    await expectToneBothWays(next.call, next.agentCall);
    next.call.hangUp();
    await next.agentCall.ended;
  });
});
