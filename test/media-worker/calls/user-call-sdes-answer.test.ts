/**
 * A user-initiated call with `SIP_SRTP=required` to a PBX that answers our `RTP/SAVP` offer with
 * plain `RTP/AVP` and no key (RFC 4568 §7.1.3: an answer that does not accept our crypto): the
 * bridge never sends plain RTP to it. It acknowledges the 200 and hangs up with a BYE whose Reason
 * says 488, and the record says why.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';
import { FarEnd, sdp } from '../sip/helpers/far-end.ts';

let stack: TestStack;
let pbx: FarEnd;

beforeAll(async () => {
  pbx = await FarEnd.start('127.0.0.2');
  pbx.handler = (rq, _remote, fe) => {
    if (rq.method !== 'INVITE') return false;
    fe.reply(rq, 200, 'OK', { content: sdp('127.0.0.2', 40_000) }); // plain RTP/AVP, no a=crypto
    return true;
  };
  stack = await startTestStack(
    { SIP_TARGET_URI: pbx.uri(), SIP_RING_TIMEOUT_SECONDS: '10' },
    { bridge: true, workerEnv: { SIP_SRTP: 'required' } },
  );
});
afterAll(async () => {
  await stack?.stop();
  pbx?.close();
});

it('ends the call with a BYE saying 488 when the PBX answers our RTP/SAVP offer without a key', async () => {
  const call = await stack.simulator!.placeUserCall({ user: { waId: '5511900000301' } });
  const invite = await pbx.nextMethod('INVITE', 10_000);
  expect(String(invite.rq.content)).toMatch(/^m=audio \d+ RTP\/SAVP /m);
  await pbx.nextMethod('ACK', 5000);
  const bye = await pbx.nextMethod('BYE', 5000);
  expect(JSON.stringify(bye.rq.headers)).toMatch(
    /SIP;cause=488;text=\\"SDES-SRTP: the SIP answer is not acceptable: RTP\/AVP to our RTP\/SAVP offer\\"/,
  );
  const record = await eventually(
    async () => {
      const r = (await (await stack.api(`/v1/calls/${encodeURIComponent(call.id)}`)).json()) as Record<string, unknown>;
      return r.state === 'ended' && r;
    },
    8000,
    'the record to end',
  );
  expect(record).toMatchObject({ endReason: 'media-failed', endedBy: 'bridge', sip: { status: 488 } });
}, 30_000);
