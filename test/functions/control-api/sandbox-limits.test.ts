/**
 * Sandbox and public test numbers get Meta's relaxed permission limits (OVR26: 25 requests per 24 h, 100 per
 * 7 days, revoke after 10 unanswered calls). With `META_PERMISSION_LIMITS=sandbox` the bridge's ledger applies
 * them, so testing on a Meta test number is not refused locally where Meta would allow it; production stays 1/24 h.
 * The simulated Meta runs as a sandbox number too (the local stack sets it from the same setting).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadControlPlaneConfig } from '#functions/shared/config.ts';
import { ManualClock } from '#simulator/graph/clock.ts';
import { loadWorkerConfig } from '#worker/config.ts';
import { startTestStack, type TestStack } from '../../helpers/test-stack.ts';

const HOUR = 3_600_000;

async function requestTwice(stack: TestStack, clock: ManualClock, user: string): Promise<[number, number]> {
  const ask = async () =>
    (
      await stack.api(`/v1/permissions/${user}/request`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ kind: 'template' }),
      })
    ).status;
  const first = await ask();
  clock.advance(HOUR);
  return [first, await ask()];
}

describe('META_PERMISSION_LIMITS=sandbox (a Meta sandbox or public test number)', () => {
  const clock = new ManualClock(Date.UTC(2026, 0, 5, 9));
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack(
      { META_PERMISSION_LIMITS: 'sandbox' },
      { now: () => clock.now(), simulator: { clock } },
    );
  });
  afterAll(() => stack?.stop());

  it('sends a 2nd permission request within 24 h', async () => {
    expect(await requestTwice(stack, clock, '34600111401')).toEqual([201, 201]);
    const view = (await (await stack.api('/v1/permissions/34600111401')).json()) as { requests: unknown };
    expect(view.requests).toMatchObject({ last24h: 2, last7d: 2 });
  });
});

describe('META_PERMISSION_LIMITS=production (the default)', () => {
  const clock = new ManualClock(Date.UTC(2026, 0, 5, 9));
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack({}, { now: () => clock.now(), simulator: { clock } });
  });
  afterAll(() => stack?.stop());

  it('refuses a 2nd permission request within 24 h before asking Meta', async () => {
    expect(await requestTwice(stack, clock, '34600111402')).toEqual([201, 429]);
  });
});

describe('the setting on both deployables', () => {
  const worker = {
    SIP_TARGET_URI: 'sip:agent@127.0.0.1:5060',
    META_GRAPH_URL: 'http://127.0.0.1:1/v23.0',
    META_ACCESS_TOKEN: 'token',
    CALLS_TABLE: 'calls',
    WORKERS_TABLE: 'workers',
    CALL_JOBS_QUEUE_URL: 'http://127.0.0.1:1/queue/jobs',
  };
  const controlPlane = {
    META_APP_SECRET: 'secret',
    META_VERIFY_TOKEN: 'verify',
    CONTROL_API_KEY: 'k'.repeat(16),
    META_PHONE_NUMBER_ID: '100000000000001',
    META_BUSINESS_NUMBER: '447700900000',
    META_GRAPH_URL: 'http://127.0.0.1:1/v23.0',
    META_ACCESS_TOKEN: 'token',
    CALLS_TABLE: 'calls',
    PERMISSIONS_TABLE: 'permissions',
    WORKERS_TABLE: 'workers',
    CALL_JOBS_QUEUE_URL: 'http://127.0.0.1:1/queue/jobs',
  };

  it('reaches the ledger limits of the control plane and the worker; anything else fails naming the key', () => {
    expect(
      loadControlPlaneConfig({ ...controlPlane, META_PERMISSION_LIMITS: 'sandbox' }).permissionLimits,
    ).toMatchObject({ requestsPer24h: 25, requestsPer7d: 100, revokeAfterUnanswered: 10 });
    expect(loadWorkerConfig({ ...worker, META_PERMISSION_LIMITS: 'sandbox' }).permissionLimits).toMatchObject({
      requestsPer24h: 25,
    });
    expect(loadControlPlaneConfig(controlPlane).permissionLimits).toMatchObject({ requestsPer24h: 1 });
    expect(loadWorkerConfig(worker).permissionLimits).toMatchObject({ requestsPer24h: 1 });
    expect(() => loadWorkerConfig({ ...worker, META_PERMISSION_LIMITS: 'test' })).toThrow(/META_PERMISSION_LIMITS/);
  });
});
