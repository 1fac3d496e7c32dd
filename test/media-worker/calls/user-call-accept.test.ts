/**
 * User-initiated calls and Meta's answer rule, end to end on loopback (the real local stack: Meta
 * simulator with its relay, webhook function, media worker, SIP agent on 127.0.0.2).
 *
 * A WhatsApp client treats "a media packet or an accept signal, whichever comes first" as the
 * answer (M-FAQ): any packet the bridge sends before its `accept` has returned shows the caller a
 * connected call, timer running, while the agent's phone still rings. So the bridge sends nothing
 * to Meta until `accept` has returned 200 OK, then the maiden packet at once; what the PBX sends
 * during the accept round trip (the agent's first words) is held and delivered, not lost
 * (meta-calling-api.md Corrections 1, M-UIC "flow the call media only after you receive a 200 OK").
 *
 * The simulator's own timestamps tell the story: `acceptRespondedAt` is when the accept's 200 OK
 * left Meta (delayed here by 300 ms, like a far-away Graph API), `firstBusinessMediaAt` when the
 * bridge's first packet reached the relay, `answeredBy` what the caller's client took as the answer.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { SipAgent } from '#local/sip-agent.ts';
import { measureTone } from '#simulator/media/audio.ts';
import type { SimCall } from '#simulator/simulator.ts';
import { sleep, until } from '../../helpers/async.ts';
import { startTestStack, type TestStack } from '../../helpers/test-stack.ts';

let stack: TestStack;
let agent: SipAgent;

/** The round trip of the accept as the bridge sees it: Graph in the US, the bridge elsewhere. */
const ACCEPT_RESPONSE_DELAY_MS = 300;

beforeAll(async () => {
  stack = await startTestStack({ SIP_RING_TIMEOUT_SECONDS: '5' }, { bridge: true });
  agent = stack.agent!;
});
afterAll(() => stack?.stop());
beforeEach(() =>
  agent.configure({
    behaviour: 'answer',
    codecs: ['PCMU'],
    audio: 'tone',
    earlyMedia: false,
    answerDelayMs: 1000,
    greetingMs: 0,
  }),
);

async function placeCall(waId: string): Promise<SimCall> {
  const call = await stack.simulator!.placeUserCall({
    user: { waId },
    faults: { acceptResponseDelayMs: ACCEPT_RESPONSE_DELAY_MS },
  });
  call.relay.startRecording();
  return call;
}

/** The first stretch of audible audio in what the relay heard (the simulated caller's ear), if any. */
function firstWords(pcm: Int16Array): Int16Array | undefined {
  const start = pcm.findIndex((s) => Math.abs(s) > 1000);
  return start < 0 ? undefined : pcm.subarray(start, start + 0.15 * 48_000);
}

/** The caller's client took the accept, not media, as the answer: nothing reached it before. */
function expectAnsweredByAccept(call: SimCall): void {
  const r = call.record;
  expect(r.history, 'no media reached the caller before accept').not.toContain('answered_by_media');
  expect(r.answeredBy).toBe('accept');
  expect(r.callerAnsweredAt).toBe(r.acceptedAt);
  expect(r.businessPacketsBeforeAccept).toBe(0);
  // The first packet came after the accept's 200 OK left Meta, i.e. after the bridge had it.
  expect(r.firstBusinessMediaAt).toBeGreaterThanOrEqual(r.acceptRespondedAt!);
}

describe('a user-initiated call answered by the agent', () => {
  it('sends nothing before accept returned, then the maiden packet at once, and the agent’s first words reach the caller', async () => {
    // The agent greets for 200 ms from its 200 OK on, then is silent: all of it falls inside the
    // accept round trip, so only a bridge that holds and then delivers it lets the caller hear it.
    agent.configure({ greetingMs: 200 });
    const call = await placeCall('5511900000101');
    await call.waitFor('pre_accepted', 5000);
    await call.waitFor('accepted', 8000);
    await until(() => call.record.firstBusinessMediaAt !== undefined, 5000, { what: 'the maiden packet' });
    expectAnsweredByAccept(call);
    const r = call.record;
    // The simulator's timer, read on Date.now(), may fire a millisecond early: allow 5 ms.
    expect(r.acceptRespondedAt! - r.acceptedAt!).toBeGreaterThanOrEqual(ACCEPT_RESPONSE_DELAY_MS - 5);
    // The maiden packet follows the accept promptly (a wide bound on the simulator's own clock).
    expect(r.firstBusinessMediaAt! - r.acceptRespondedAt!).toBeLessThan(1000);

    await sleep(800); // the greeting and some silence after it
    const words = firstWords(call.relay.stopRecording());
    expect(words, 'the agent’s greeting reached the caller').toBeDefined();
    const tone = measureTone(words!, 48_000);
    expect(Math.abs(tone.hz - 1000)).toBeLessThan(10);
    expect(call.relay.firstAudibleBusinessMediaAt).toBeGreaterThanOrEqual(r.acceptRespondedAt!);
    call.hangUp();
  });

  it('keeps the PBX’s early media (183) from the caller: WhatsApp’s own ringing until the 200 and the accept', async () => {
    agent.configure({ earlyMedia: true, answerDelayMs: 1500 });
    const before = agent.calls.length;
    const call = await placeCall('5511900000102');
    await until(() => agent.calls.length > before, 5000, { what: 'the agent to ring' });
    await sleep(800); // the PBX plays its early media meanwhile
    expect(call.state).toBe('pre_accepted');
    expect(call.relay.stats().packetsReceived, 'packets at the relay while the agent rings').toBe(0);

    await call.waitFor('accepted', 8000);
    await until(() => call.record.firstBusinessMediaAt !== undefined, 5000, { what: 'the maiden packet' });
    expectAnsweredByAccept(call);
    await sleep(1000);
    const heard = measureTone(call.relay.stopRecording().slice(-48_000), 48_000);
    expect(Math.abs(heard.hz - 1000), 'the agent is heard once the call is accepted').toBeLessThan(10);
    call.hangUp();
  });
});
