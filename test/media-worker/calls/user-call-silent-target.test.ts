/**
 * A user-initiated call to a SIP target that never answers a thing (a dead PBX, a firewall that
 * drops): after the bridge's no-response timer the call is `unanswered` on its record (nobody
 * picked up; no SIP endpoint rejected it), and Meta gets `terminate` for the pre-accepted call.
 */
import { createSocket, type Socket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';

let stack: TestStack;
let blackHole: Socket;

beforeAll(async () => {
  // Swallows every INVITE: no 100 Trying, no final response.
  blackHole = createSocket('udp4');
  await new Promise<void>((resolve) => blackHole.bind(0, '127.0.0.3', resolve));
  const { port } = blackHole.address() as AddressInfo;
  stack = await startTestStack(
    { SIP_TARGET_URI: `sip:agent@127.0.0.3:${port}`, SIP_RING_TIMEOUT_SECONDS: '20' },
    { bridge: true },
  );
});
afterAll(async () => {
  await stack?.stop();
  blackHole?.close();
});

it('records a call to a SIP target that never responds as unanswered, and terminates it at Meta', async () => {
  const call = await stack.simulator!.placeUserCall({ user: { waId: '5511900000201' } });
  await eventually(() => call.state === 'ended', 15_000, 'the WhatsApp call to end');
  expect(call.record.endReason).toBe('business_terminate');
  const record = await eventually(
    async () => {
      const r = (await (await stack.api(`/v1/calls/${encodeURIComponent(call.id)}`)).json()) as Record<string, unknown>;
      return r.state === 'ended' && r;
    },
    8000,
    'the record to end',
  );
  expect(record).toMatchObject({ endReason: 'unanswered', endedBy: 'sip', sip: { status: 408 } });
}, 30_000);
