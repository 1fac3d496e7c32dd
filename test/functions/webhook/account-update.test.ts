/**
 * Story (review F7): Meta warns that calling quality is low, then pauses user-initiated calling. The simulator
 * sends the `account_update` webhooks (§2.10); the bridge's webhook logs each as an error and counts it in
 * `MetaAccountAlerts` by type — the metric the MetaAccountAlerts alarm watches.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseWebhook } from '#core/meta/webhook.ts';
import { until } from '../../helpers/async.ts';
import { RecordingMetrics } from '../../helpers/recording-metrics.ts';
import { startTestStack, type TestStack } from '../../helpers/test-stack.ts';

let stack: TestStack;
const metrics = new RecordingMetrics();
beforeAll(async () => {
  stack = await startTestStack({}, { metrics });
});
afterAll(() => stack.stop());

const simControl = (body: unknown) =>
  fetch(`${stack.simulator!.baseUrl}/_sim/account_update`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });

describe('account_update becomes a metric and an error log', () => {
  it('a low-pickup-rate warning, then a 7-day pause of user-initiated calling, each counted by type', async () => {
    const mark = metrics.mark();
    expect(
      (await simControl({ event: 'ACCOUNT_VIOLATION', violationType: 'USER_INITIATED_CALLS_LOW_PICKUP_RATE' })).status,
    ).toBe(200);
    await until(() => metrics.since(mark, 'MetaAccountAlerts').length === 2, 5000, { what: 'the violation metric' });
    const expiration = 1_800_000_000;
    expect(
      (
        await simControl({
          event: 'ACCOUNT_RESTRICTION',
          restrictions: [{ type: 'RESTRICTED_USER_INITIATED_CALLING', expiration }],
        })
      ).status,
    ).toBe(200);
    await until(() => metrics.since(mark, 'MetaAccountAlerts').length === 4, 5000, { what: 'the restriction metric' });
    // Each alert twice: in the total the alarm watches, and by type for the dashboard.
    expect(metrics.since(mark, 'MetaAccountAlerts')).toEqual([
      { name: 'MetaAccountAlerts', value: 1, dimensions: {} },
      { name: 'MetaAccountAlerts', value: 1, dimensions: { AlertType: 'USER_INITIATED_CALLS_LOW_PICKUP_RATE' } },
      { name: 'MetaAccountAlerts', value: 1, dimensions: {} },
      { name: 'MetaAccountAlerts', value: 1, dimensions: { AlertType: 'RESTRICTED_USER_INITIATED_CALLING' } },
    ]);
    const alerts = stack.logs.filter((l) => l.message === 'Meta calling account alert');
    expect(alerts.map((l) => l.level)).toEqual(['error', 'error']);
    expect(alerts[1]?.fields.restrictions).toEqual([
      { type: 'RESTRICTED_USER_INITIATED_CALLING', expiresAt: new Date(expiration * 1000).toISOString() },
    ]);
  });

  it('parses REF26’s `expiration_time` spelling too, and ignores account_update events about other things', () => {
    const body = (value: unknown) =>
      JSON.stringify({
        object: 'whatsapp_business_account',
        entry: [{ id: '1', changes: [{ field: 'account_update', value }] }],
      });
    expect(
      parseWebhook(
        body({
          event: 'ACCOUNT_RESTRICTION',
          restriction_info: [
            { restriction_type: 'RESTRICTED_BUSINESS_INITIATED_CALLING', expiration_time: '1754072386' },
          ],
        }),
      ),
    ).toEqual([
      {
        kind: 'account-alert',
        event: 'ACCOUNT_RESTRICTION',
        restrictions: [{ type: 'RESTRICTED_BUSINESS_INITIATED_CALLING', expiresAt: 1_754_072_386_000 }],
      },
    ]);
    expect(parseWebhook(body({ event: 'VERIFIED_ACCOUNT', phone_number: '447700900123' }))).toEqual([
      { kind: 'ignored', field: 'account_update', reason: 'account_update event VERIFIED_ACCOUNT' },
    ]);
  });
});
