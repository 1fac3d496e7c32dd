/**
 * A number set to SDES (`srtp_key_exchange_protocol: "SDES"`, M-SET) gets Meta offers with `RTP/SAVP` +
 * `a=crypto` and no ICE or DTLS. The bridge's WhatsApp leg speaks DTLS-SRTP only, so such a call is refused at
 * once and plainly: `reject` at Meta (nothing was pre-accepted), no INVITE to the PBX, and a record whose end
 * reason names the cause.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';

let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack({}, { bridge: true });
  stack.simulator!.settings.update({ calling: { srtp_key_exchange_protocol: 'SDES' } }, { appId: 'test' });
});
afterAll(() => stack?.stop());

it('refuses a call whose Meta offer is SDES with reject, rings nobody, and records unsupported-key-exchange', async () => {
  let invites = 0;
  stack.agent!.nextCall(60_000).then(
    () => invites++,
    () => undefined,
  );
  const call = await stack.simulator!.placeUserCall({ user: { waId: '5511900000301' } });
  expect(call.record.metaSdp).toMatch(/RTP\/SAVP/);
  // Wiring bound, wide for a loaded machine; Meta's own deadline (30 s) is far beyond it.
  await eventually(() => call.state === 'ended', 10_000, 'the WhatsApp call to end');
  expect(call.record.endReason, 'Meta got reject: the call was never pre-accepted').toBe('business_reject');
  expect(call.log.map((e) => `${e.kind}:${e.name}`)).not.toContain('action:pre_accept');
  const record = await eventually(
    async () => {
      const r = (await (await stack.api(`/v1/calls/${encodeURIComponent(call.id)}`)).json()) as Record<string, unknown>;
      return r.state === 'ended' && r;
    },
    8000,
    'the record to end',
  );
  expect(record).toMatchObject({ endReason: 'unsupported-key-exchange', endedBy: 'bridge' });
  expect(invites, 'no INVITE for a call the bridge cannot carry').toBe(0);
}, 30_000);
