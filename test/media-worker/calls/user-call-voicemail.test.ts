/**
 * Story (Corrections item 4, review F5): with Meta's voicemail on (TIMEOUT after 5 s, pushed to Meta by the
 * settings sync from VOICEMAIL, which the worker reads too), an agent who does not pick up is given up on by the
 * bridge — SIP CANCEL, `terminate` at Meta — before Meta would divert the caller to voicemail. Without the bound
 * the agent would ring for the configured 45 s (capped at Meta's 30 s window), Meta would take the caller to
 * voicemail at 5 s and an answer after that would meet a call Meta has already ended.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';

let stack: TestStack;
const VOICEMAIL = JSON.stringify({ triggers: ['TIMEOUT'], announcementMediaId: '24680', timeoutSeconds: 5 });

beforeAll(async () => {
  stack = await startTestStack(
    { SIP_RING_TIMEOUT_SECONDS: '45', VOICEMAIL },
    { bridge: true, agent: { behaviour: 'no-answer' }, syncCallSettings: true },
  );
});
afterAll(() => stack?.stop());

it('the bridge stops ringing the agent and terminates before Meta diverts the caller to voicemail', async () => {
  const sim = stack.simulator!;
  expect(sim.settings.calling.voicemail).toMatchObject({ status: 'ENABLED', triggers: ['TIMEOUT'] });
  const call = await sim.placeUserCall({ user: { waId: '5511900000301' } });
  await eventually(() => call.state === 'ended', 10_000, 'the WhatsApp call to end');
  expect(call.record.endReason, 'ended by the business, not diverted to voicemail').toBe('business_terminate');
  const record = await eventually(
    async () => {
      const r = (await (await stack.api(`/v1/calls/${encodeURIComponent(call.id)}`)).json()) as Record<string, unknown>;
      return r.state === 'ended' && r;
    },
    8000,
    'the record to end',
  );
  expect(record).toMatchObject({ endReason: 'unanswered' });
  // The order, on the simulator's own log: the business's terminate came before the voicemail deadline fired.
  const names = call.record.log.map((e) => e.name);
  expect(names).toContain('terminate');
  expect(names).not.toContain('voicemail_timeout');
});
