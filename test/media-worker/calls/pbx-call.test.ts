/**
 * Business-initiated calls started by the PBX: an INVITE to sip:+<number>@bridge. Refused INVITEs
 * get a fast SIP error with a Reason header and never reach Meta; allowed ones ring the WhatsApp
 * user through Meta (the simulator), 180 on RINGING, 200 with SDP on ACCEPTED, audio both ways.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckBusinessCall } from '../../../functions/core/outbound/contract.ts';
import { createSipPort } from '../../../media-worker/src/sip/sip-adapter.ts';
import { measureTone } from '../../../meta-simulator/media/audio.ts';
import { freePort } from '../../helpers/free-port.ts';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';

let stack: TestStack;
let bridgeUri: (number: string) => string;
/** Users the rules let through (the permission ledger's own tests cover the real rules). */
const permitted = new Set<string>();
const rules: CheckBusinessCall = async ({ user }) =>
  user.phone && permitted.has(user.phone)
    ? { allowed: true, permission: 'permanent' }
    : { allowed: false, reason: 'no-permission', detail: 'no call permission', httpStatus: 403, sipStatus: 403 };

function bicCalls() {
  return stack.simulator!.calls.filter((c) => c.direction === 'BUSINESS_INITIATED');
}

beforeAll(async () => {
  stack = await startTestStack({}, { bridge: true, checkBusinessCall: rules });
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
    permitted.add('5511900000021'); // our rules allow, Meta has no permission on record
    await expect(stack.agent!.dial(bridgeUri('5511900000021'))).rejects.toMatchObject({ status: 403 });
  });
});

describe('a PBX-started call the WhatsApp user answers', () => {
  it('bridges audio both ways and ends at Meta when the PBX hangs up', async () => {
    const number = '5511900000022';
    permitted.add(number);
    stack.simulator!.permissions.grant(number, { permanent: true });
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
  });

  it('answers the PBX 486 when the WhatsApp user rejects', async () => {
    const number = '5511900000023';
    permitted.add(number);
    stack.simulator!.permissions.grant(number, { permanent: true });
    stack.simulator!.users.setScript(number, { bicAnswer: 'reject' });
    await expect(stack.agent!.dial(bridgeUri(number))).rejects.toMatchObject({ status: 486 });
  });
});
