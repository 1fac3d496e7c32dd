/**
 * Business-initiated calls started from the control API, in both orders: customer-first (ring the
 * WhatsApp user, then the agent) and agent-first (ring the agent, then the user); a re-INVITE
 * moving the agent's media moves the bridge's SIP side with it.
 */
import type { SipMessage } from 'sip';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { measureTone } from '#simulator/media/audio.ts';
import { sleep, until } from '../../helpers/async.ts';
import { grantPermission } from '../../helpers/permissions.ts';
import { callMetrics, oneAnsweredCall, RecordingMetrics } from '../../helpers/recording-metrics.ts';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';
import { FarEnd, sdp } from '../sip/helpers/far-end.ts';
import { ack2xx, expectMediaFollowsMove, finalResponse, mediaAddress, PbxRtp } from './helpers/pbx.ts';

let stack: TestStack;
const metrics = new RecordingMetrics();

beforeAll(async () => {
  stack = await startTestStack({}, { bridge: true, workerMetrics: metrics });
  stack.agent!.configure({ codecs: ['PCMU'], audio: 'tone', behaviour: 'answer' });
});
afterAll(() => stack?.stop());

async function placeViaApi(to: string, mode: 'customer-first' | 'agent-first', sipTarget?: string): Promise<string> {
  const res = await stack.api('/v1/calls', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ to, mode, callbackData: `order-${to}`, ...(sipTarget ? { sipTarget } : {}) }),
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
    await sleep(1500); // the measurement window
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

describe.each(['customer-first', 'agent-first'] as const)(
  'an API-started call whose agent moves its media (re-INVITE, RFC 3264 §8), %s',
  (mode) => {
    it('sends to the new port, takes the agent audio from it, and reports the call', async () => {
      const number = mode === 'customer-first' ? '5511900000033' : '5511900000034';
      await grantPermission(stack, number);
      const mark = metrics.mark();
      const agent = await FarEnd.start('127.0.0.2');
      const first = await PbxRtp.open();
      const moved = await PbxRtp.open();
      try {
        // The agent answers the bridge's INVITE at once, with its first port.
        agent.handler = (rq) => {
          if (rq.method !== 'INVITE' || rq.headers.to?.params.tag) return false;
          agent.reply(rq, 200, 'OK', { content: sdp('127.0.0.2', first.port) });
          return true;
        };
        await placeViaApi(number, mode, agent.uri());
        const { rq: invite } = await agent.nextMethod('INVITE', 10_000);
        const bridgeRtp = mediaAddress(String(invite.content));
        const call = await eventually(
          () => stack.simulator!.calls.find((c) => c.user.waId === number && c.state === 'accepted'),
          8000,
          'the WhatsApp user to pick up',
        );
        await expectMediaFollowsMove({
          call,
          first,
          moved,
          bridgeRtp,
          reinvite: async () => {
            const reinvite: SipMessage = agent.inDialog(invite, 'INVITE', 2, {
              content: sdp('127.0.0.2', moved.port, 'sendrecv', 2),
            });
            const answered = await finalResponse(agent, reinvite);
            expect(answered.status).toBe(200);
            ack2xx(agent, reinvite, answered);
          },
        });

        expect((await agent.request(agent.inDialog(invite, 'BYE', 3))).status).toBe(200);
        const record = await eventually(async () => {
          const r = await stack.runtime.calls.get(call.id);
          return r?.state === 'ended' && r;
        });
        expect(record).toMatchObject({ endReason: 'agent-hung-up', endedBy: 'sip' });
        await until(() => metrics.since(mark, 'HandleTime').length > 0, 5000);
        expect(callMetrics(metrics, mark)).toEqual(oneAnsweredCall('agent-hung-up'));
      } finally {
        agent.close();
        await first.close();
        await moved.close();
      }
    });
  },
);

/**
 * Meta: ACCEPTED "will typically always arrive after the call has been established… primarily sent for call event
 * auditing" (M-BIC). The user's pickup is their first audio from Meta's relay (none while the phone rings).
 */
describe.each(['customer-first', 'agent-first'] as const)(
  'POST /v1/calls, %s, when ACCEPTED is late or lost',
  (mode) => {
    it.each([
      ['3 s late', { delayMs: 3000 }, mode === 'customer-first' ? '5511900000041' : '5511900000042'],
      ['lost', { lost: true }, mode === 'customer-first' ? '5511900000043' : '5511900000044'],
    ] as const)(
      'ACCEPTED %s: the agent is rung and bridged right after the user’s first audio',
      async (_, acceptedStatus, number) => {
        await grantPermission(stack, number);
        stack.simulator!.users.setScript(number, { acceptedStatus });
        const nextAgentCall = stack.agent!.nextCall(10_000);
        const requestId = await placeViaApi(number, mode);
        const agentCall = await nextAgentCall;
        const call = await eventually(
          () => stack.simulator!.calls.find((c) => c.user.waId === number && c.state === 'accepted'),
          8000,
          'the WhatsApp user to pick up',
        );
        // Bridged (the record answered) long before a 3 s ACCEPTED, or without any.
        const record = await eventually(
          async () => {
            const r = await stack.runtime.calls.get(call.id);
            return r?.state === 'answered' && r;
          },
          2500,
          'the call bridged',
        );
        const firstAudio = call.relay.firstUserMediaSentAt ?? 0;
        expect(firstAudio, 'the user’s first audio').toBeGreaterThan(0);
        // Real sockets: a wide bound (typically tens of ms), and the ordering against ACCEPTED.
        expect((record.answeredAt ?? 0) - firstAudio).toBeLessThan(300);
        expect(call.log.some((l) => l.name === 'status:ACCEPTED' && l.kind === 'webhook' && !l.detail?.fault)).toBe(
          false,
        );
        if (mode === 'customer-first') expect(agentCall.answeredAt).toBeGreaterThanOrEqual(firstAudio);

        call.hangUp();
        await agentCall.ended;
        const ended = await eventually(async () => {
          const r = await stack.runtime.calls.get(call.id);
          return r?.state === 'ended' && r;
        });
        expect(ended).toMatchObject({ requestId, endedBy: 'whatsapp' });
        const ledger = (await (await stack.api(`/v1/permissions/${number}`)).json()) as {
          connectedCalls: { last24h: number };
          consecutiveUnanswered: number;
        };
        expect(ledger).toMatchObject({ connectedCalls: { last24h: 1 }, consecutiveUnanswered: 0 });
      },
    );
  },
);

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
