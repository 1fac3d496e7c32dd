/**
 * Business-initiated calls started by the PBX: an INVITE to sip:+<number>@bridge. Refused INVITEs
 * get a fast SIP error with a Reason header and never reach Meta; allowed ones ring the WhatsApp
 * user through Meta (the simulator), 180 on RINGING, 200 with SDP on ACCEPTED, audio both ways.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { measureTone } from '#simulator/media/audio.ts';
import { createSipPort } from '#worker/sip/sip-adapter.ts';
import { freePort } from '../../helpers/free-port.ts';
import { grantPermission } from '../../helpers/permissions.ts';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';

let stack: TestStack;
let bridgeUri: (number: string) => string;

function bicCalls() {
  return stack.simulator!.calls.filter((c) => c.direction === 'BUSINESS_INITIATED');
}

beforeAll(async () => {
  stack = await startTestStack({}, { bridge: true });
  const contact = stack.worker!.sipContact; // sip:wa-sip-bridge@127.0.0.1:<port>
  const hostPort = contact.slice(contact.indexOf('@') + 1);
  bridgeUri = (number) => `sip:+${number}@${hostPort}`;
});
afterAll(() => stack?.stop());

describe('INVITEs the bridge refuses before Meta hears of them', () => {
  it('refuses a source that is not allow-listed (403)', async () => {
    const stranger = await createSipPort({
      address: '127.0.0.3',
      port: await freePort('127.0.0.3'),
      logger: pino({ level: 'silent' }),
    });
    try {
      const failed = await new Promise<{ status: number }>((resolve) => {
        const call = stranger.placeCall({
          targets: [{ uri: bridgeUri('5511987654321') }],
          from: { user: 'pbx' },
          sdpOffer: 'v=0\r\n',
          answerTimeoutMs: 5000,
        });
        call.on((e) => e.type === 'failed' && resolve(e));
      });
      expect(failed.status).toBe(403);
    } finally {
      await stranger.close();
    }
    expect(bicCalls()).toHaveLength(0);
  });

  it('refuses a scanner user agent even from an allowed address (403)', async () => {
    const scanner = await createSipPort({
      address: '127.0.0.2',
      port: await freePort('127.0.0.2'),
      userAgent: 'friendly-scanner',
      logger: pino({ level: 'silent' }),
    });
    try {
      const failed = await new Promise<{ status: number }>((resolve) => {
        const call = scanner.placeCall({
          targets: [{ uri: bridgeUri('5511987654321') }],
          from: { user: '100' },
          sdpOffer: 'v=0\r\n',
          answerTimeoutMs: 5000,
        });
        call.on((e) => e.type === 'failed' && resolve(e));
      });
      expect(failed.status).toBe(403);
    } finally {
      await scanner.close();
    }
    expect(bicCalls()).toHaveLength(0);
  });

  it('refuses a user without permission (403, Reason no-permission) without calling Meta', async () => {
    await expect(stack.agent!.dial(bridgeUri('5511900000020'))).rejects.toMatchObject({ status: 403 });
    expect(bicCalls()).toHaveLength(0);
  });

  it('passes Meta’s own refusal on as a SIP error (Meta 138006 → 403)', async () => {
    await grantPermission(stack, '5511900000021');
    stack.simulator!.permissions.revoke('5511900000021'); // Meta no longer agrees with our ledger
    await expect(stack.agent!.dial(bridgeUri('5511900000021'))).rejects.toMatchObject({ status: 403 });
    expect(bicCalls()).toHaveLength(0);
  });
});

describe('a PBX-started call the WhatsApp user answers', () => {
  it('bridges audio both ways and ends at Meta when the PBX hangs up', async () => {
    const number = '5511900000022';
    await grantPermission(stack, number);
    stack.agent!.configure({ codecs: ['PCMU'], audio: 'tone' });
    const agentCall = await stack.agent!.dial(bridgeUri(number));
    const call = await eventually(
      () => bicCalls().find((c) => c.user.waId === number && c.state === 'accepted'),
      5000,
      'the WhatsApp call accepted',
    );
    call.relay.startRecording();
    call.relay.playTone(1000, -12);
    await new Promise((r) => setTimeout(r, 1500));
    const atWhatsApp = measureTone(call.relay.stopRecording().slice(-48000), 48000);
    const atPbx = measureTone(agentCall.recording().slice(-8000), 8000);
    expect(Math.abs(atWhatsApp.hz - 1000)).toBeLessThan(10);
    expect(Math.abs(atPbx.hz - 1000)).toBeLessThan(10);
    expect(Math.abs(atWhatsApp.dbfs + 12)).toBeLessThan(3);
    expect(Math.abs(atPbx.dbfs + 12)).toBeLessThan(3);

    await agentCall.hangUp();
    await eventually(() => call.state === 'ended', 5000, 'the WhatsApp leg to end');
    const record = await eventually(async () => {
      const r = await stack.runtime.calls.get(call.id);
      return r?.state === 'ended' && r;
    });
    expect(record).toMatchObject({ direction: 'business-initiated', endReason: 'agent-hung-up', endedBy: 'sip' });
    const ledger = (await (await stack.api(`/v1/permissions/${number}`)).json()) as {
      connectedCalls: { last24h: number };
    };
    expect(ledger.connectedCalls.last24h, 'the connected call counts toward the daily limit').toBe(1);
  });

  it('answers the PBX 486 when the WhatsApp user rejects', async () => {
    const number = '5511900000023';
    await grantPermission(stack, number);
    stack.simulator!.users.setScript(number, { bicAnswer: 'reject' });
    await expect(stack.agent!.dial(bridgeUri(number))).rejects.toMatchObject({ status: 486 });
    await eventually(
      async () => {
        const ledger = (await (await stack.api(`/v1/permissions/${number}`)).json()) as {
          consecutiveUnanswered: number;
        };
        return ledger.consecutiveUnanswered === 1;
      },
      3000,
      'the rejection counted as unanswered',
    );
  });
});
