/**
 * Business-initiated calls started from the control API, in both orders: customer-first (ring the
 * WhatsApp user, then the agent) and agent-first (ring the agent, then the user).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { measureTone } from '#simulator/media/audio.ts';
import { grantPermission } from '../../helpers/permissions.ts';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';

let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack({}, { bridge: true });
  stack.agent!.configure({ codecs: ['PCMU'], audio: 'tone', behaviour: 'answer' });
});
afterAll(() => stack?.stop());

async function placeViaApi(to: string, mode: 'customer-first' | 'agent-first'): Promise<string> {
  const res = await stack.api('/v1/calls', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ to, mode, callbackData: `order-${to}` }),
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { requestId: string }).requestId;
}

describe.each(['customer-first', 'agent-first'] as const)('POST /v1/calls, %s', (mode) => {
  it('rings both sides in order, bridges audio both ways, and ends everywhere on hang-up', async () => {
    const number = mode === 'customer-first' ? '5511900000031' : '5511900000032';
    await grantPermission(stack, number);
    const nextAgentCall = stack.agent!.nextCall(10_000);
    const requestId = await placeViaApi(number, mode);
    const agentCall = await nextAgentCall;
    const call = await eventually(
      () =>
        stack.simulator!.calls.find(
          (c) => c.direction === 'BUSINESS_INITIATED' && c.user.waId === number && c.state === 'accepted',
        ),
      8000,
      'the WhatsApp user to pick up',
    );
    // The order: customer-first rings the user before the agent; agent-first the reverse.
    const connectAt = call.log.find((l) => l.kind === 'action' && l.name === 'connect')?.at ?? 0;
    const agentAnsweredAt = agentCall.answeredAt;
    if (mode === 'customer-first') expect(connectAt).toBeLessThan(agentAnsweredAt);
    else expect(agentAnsweredAt).toBeLessThan(connectAt);

    const resolved = await eventually(
      async () => {
        const r = (await (await stack.api(`/v1/calls/${requestId}`)).json()) as { callId?: string; state?: string };
        return r.state === 'answered' && r;
      },
      5000,
      'the request to resolve to an answered call',
    );
    expect(resolved.callId).toBe(call.id);

    call.relay.startRecording();
    call.relay.playTone(1000, -12);
    await new Promise((r) => setTimeout(r, 1500));
    const atWhatsApp = measureTone(call.relay.stopRecording().slice(-48000), 48000);
    const atAgent = measureTone(agentCall.recording().slice(-8000), 8000);
    expect(Math.abs(atWhatsApp.hz - 1000)).toBeLessThan(10);
    expect(Math.abs(atAgent.hz - 1000)).toBeLessThan(10);

    call.hangUp();
    await agentCall.ended;
    const ended = await eventually(async () => {
      const r = await stack.runtime.calls.get(call.id);
      return r?.state === 'ended' && r;
    });
    expect(ended).toMatchObject({ direction: 'business-initiated', requestId, endedBy: 'whatsapp' });
    expect(await stack.runtime.calls.slotsInUse(stack.runtime.config.line.phoneNumberId)).toBe(0);
  });
});

describe('POST /v1/calls refusals', () => {
  it('answers 403 no-permission and places nothing', async () => {
    const before = stack.simulator!.calls.length;
    const res = await stack.api('/v1/calls', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ to: '5511900000039' }),
    });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { reason: string } }).error.reason).toBe('no-permission');
    expect(stack.simulator!.calls.length).toBe(before);
  });
});
