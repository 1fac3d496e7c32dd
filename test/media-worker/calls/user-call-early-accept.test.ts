/**
 * EARLY_MEDIA_ACCEPT=true: a user-initiated call is accepted at Meta when the agent's side sends a
 * 183 with SDP, so the PBX's early media (ringback, an announcement) reaches the WhatsApp caller.
 * The documented trade-off: the caller's call timer starts at the 183, not when the agent answers.
 * Still nothing reaches Meta before that `accept` has returned (M-FAQ).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { SipAgent } from '#local/sip-agent.ts';
import { measureTone } from '#simulator/media/audio.ts';
import { sleep, until } from '../../helpers/async.ts';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';

let stack: TestStack;
let agent: SipAgent;

beforeAll(async () => {
  stack = await startTestStack({ EARLY_MEDIA_ACCEPT: 'true', SIP_RING_TIMEOUT_SECONDS: '5' }, { bridge: true });
  agent = stack.agent!;
});
afterAll(() => stack?.stop());

it('accepts at the 183 so the caller hears the early media, then connects the agent at the 200', async () => {
  agent.configure({ codecs: ['PCMU'], audio: 'tone', earlyMedia: true, answerDelayMs: 2000 });
  const next = agent.nextCall(10_000);
  const call = await stack.simulator!.placeUserCall({
    user: { waId: '5511900000301' },
    faults: { acceptResponseDelayMs: 200 },
  });
  call.relay.startRecording();
  await call.waitFor('accepted', 5000);
  const r = call.record;
  expect(r.history).toEqual(['offered', 'pre_accepted', 'accepted']);
  expect(r.answeredBy).toBe('accept');
  expect(r.businessPacketsBeforeAccept).toBe(0);
  await until(() => r.firstBusinessMediaAt !== undefined, 5000, { what: 'the maiden packet' });
  expect(r.firstBusinessMediaAt).toBeGreaterThanOrEqual(r.acceptRespondedAt!);

  // The agent has not answered yet: what the caller hears is the PBX's early media.
  await sleep(800);
  expect(agent.calls.at(-1)?.answeredAt).toBe(0);
  const early = measureTone(call.relay.stopRecording().slice(-24_000), 48_000);
  expect(Math.abs(early.hz - 1000)).toBeLessThan(10);

  const agentCall = await next;
  const live = await eventually(
    async () => {
      const rec = (await (await stack.api(`/v1/calls/${encodeURIComponent(call.id)}`)).json()) as Record<
        string,
        unknown
      >;
      return rec.state === 'answered' && rec;
    },
    5000,
    'the record to be answered',
  );
  expect(live).toMatchObject({ sip: { answeredTarget: agent.uri } });
  expect(agentCall.answeredAt).toBeGreaterThan(r.acceptedAt!);
  call.hangUp();
  await agentCall.ended;
}, 30_000);
