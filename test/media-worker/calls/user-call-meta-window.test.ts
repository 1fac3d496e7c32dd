/**
 * Meta ends a user-initiated call the business has not accepted "about 30 to 60 seconds after the
 * Call Connect webhook" (M-REF26, §3.2): at the earliest 30 s after Meta's `connect`, not after the
 * bridge's INVITE. A connect that reaches the worker late (slow webhook delivery, a queued job)
 * leaves the agent only what is left of that window (less 2 s for the `accept`); the bridge then
 * gives up itself, records `unanswered` and terminates at Meta, before Meta's own timeout could end
 * a call the agent might still answer.
 *
 * The simulator's clock runs 20 s behind: its `connect` says the user called 20 s before the
 * webhook arrived, as if the delivery had taken that long. Meta's own timer still runs 30 s of
 * real time from the user's call.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { realClock, type SimClock } from '#simulator/graph/clock.ts';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';

const LATE_MS = 20_000;
const lateClock: SimClock = { ...realClock, now: () => Date.now() - LATE_MS };
let stack: TestStack;

beforeAll(async () => {
  // A ring timeout longer than Meta's whole window: only the window can cut the ringing short.
  stack = await startTestStack({ SIP_RING_TIMEOUT_SECONDS: '40' }, { bridge: true, simulator: { clock: lateClock } });
});
afterAll(() => stack?.stop());

describe('a user-initiated call whose connect reached the worker 20 s late', () => {
  it('rings the agent only for what is left of Meta’s window, then ends unanswered and terminates at Meta first', async () => {
    const agent = stack.agent!;
    agent.configure({ behaviour: 'no-answer', codecs: ['PCMU'], audio: 'silence', earlyMedia: false });
    const before = agent.calls.length;
    const call = await stack.simulator!.placeUserCall({ user: { waId: '5511900000030' } });
    await eventually(() => agent.calls.length > before, 8000, 'the agent to ring');
    const ringing = agent.calls.at(-1)!;

    await ringing.ended; // the bridge's CANCEL
    const record = await eventually(
      async () => {
        const r = await stack.runtime.calls.get(call.id);
        return r?.state === 'ended' && r.sip?.status !== undefined && r;
      },
      10_000,
      'the call to end',
    );
    expect(record).toMatchObject({ endReason: 'unanswered', endedBy: 'sip', sip: { status: 408 } });
    // On the record's own clock: the bridge gave up inside Meta's window (30 s after Meta's connect).
    expect(record.endedAt! - record.offeredAt!).toBeLessThan(30_000);
    // Meta did not time the call out: the bridge's terminate came first.
    await eventually(() => call.state === 'ended', 5000, 'the WhatsApp call to end');
    expect(call.record.endReason).toBe('business_terminate');
  });
});
