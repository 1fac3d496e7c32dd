/**
 * A retiring worker (superseded by a deployment, or surplus after scale-in; ops/retirement.ts)
 * keeps the calls it bridges to their natural end but takes no new ones: the next call's job stays
 * queued for another worker, and with its last call gone its load reads 0, so its scale-in
 * protection drops and ECS can stop it — instead of a deployment waiting hours on a busy task.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '#test/helpers/async.ts';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';

let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack({ SIP_RING_TIMEOUT_SECONDS: '5' }, { bridge: true });
});
afterAll(() => stack?.stop());

const record = async (id: string) =>
  (await (await stack.api(`/v1/calls/${encodeURIComponent(id)}`)).json()) as Record<string, unknown>;

describe('a worker that retires while it bridges a call', () => {
  it('finishes the call, takes no new call, and ends with no load', async () => {
    const agent = stack.agent!;
    const worker = stack.worker!.running!.worker;
    agent.configure({ behaviour: 'answer', codecs: ['PCMU'], audio: 'silence', earlyMedia: false, answerDelayMs: 0 });
    const next = agent.nextCall(10_000);
    const first = await stack.simulator!.placeUserCall({ user: { waId: '5511977770011', name: 'Ana' } });
    const agentCall = await next;
    await first.waitFor('accepted', 5000);

    worker.retire('superseded');

    // The call in progress goes on…
    expect(worker.retired).toBe('superseded');
    expect(worker.full).toBe(true);
    expect(first.state).toBe('accepted');
    // …while a new call is left to another worker: its job stays queued, nothing rings here.
    const second = await stack.simulator!.placeUserCall({ user: { waId: '5511977770012', name: 'Bo' } });
    await eventually(async () => (await record(second.id)).state === 'queued', 5000, 'the second call to queue');
    await sleep(2500); // several of the worker's 1 s job polls
    expect((await record(second.id)).state).toBe('queued');
    expect(worker.activeCalls).toBe(1);

    // The first call ends as calls do; the worker is then idle and stays so.
    first.hangUp();
    await agentCall.ended;
    await eventually(() => worker.activeCalls === 0, 5000, 'the worker to have no calls');
    expect((await record(first.id)).state).toBe('ended');
    expect((await record(second.id)).state).toBe('queued');
    second.hangUp();
  });
});
