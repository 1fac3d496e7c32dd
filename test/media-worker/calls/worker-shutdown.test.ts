/**
 * Stopping the media worker under a live call (Ctrl-C on the local stack, or SIGTERM past the
 * drain) ends the call everywhere, and its record says so: `bridge-shutdown`, a planned stop, not
 * `bridge-error` (which trips the failed-calls alarm and sends whoever reads the record hunting
 * for a bug).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';

let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack({ SIP_RING_TIMEOUT_SECONDS: '5' }, { bridge: true });
});
afterAll(() => stack?.stop());

describe('a worker stopped while it bridges a call', () => {
  it('ends the call at Meta and at the PBX, and records bridge-shutdown', async () => {
    const agent = stack.agent!;
    agent.configure({ behaviour: 'answer', codecs: ['PCMU'], audio: 'silence', earlyMedia: false, answerDelayMs: 0 });
    const next = agent.nextCall(10_000);
    const call = await stack.simulator!.placeUserCall({ user: { waId: '5511977770001', name: 'Rui' } });
    const agentCall = await next;
    await call.waitFor('accepted', 5000);

    await stack.worker!.stop(); // what Ctrl-C does to the local stack's worker: stop without drain

    await agentCall.ended;
    await eventually(() => call.state === 'ended', 5000, 'the WhatsApp leg to end');
    expect(call.record.endReason).toBe('business_terminate');
    const record = await eventually(
      async () => {
        const r = (await (await stack.api(`/v1/calls/${encodeURIComponent(call.id)}`)).json()) as Record<
          string,
          unknown
        >;
        return r.state === 'ended' && r;
      },
      5000,
      'the record to end',
    );
    expect(record).toMatchObject({ state: 'ended', endReason: 'bridge-shutdown', endedBy: 'bridge' });
  });
});
