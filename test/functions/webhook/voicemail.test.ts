/**
 * Story (Corrections item 4, review F5): a caller over the concurrency cap is rejected by the bridge; with
 * VOICEMAIL's REJECT trigger pushed to Meta, Meta takes the caller to voicemail instead of ending the call, and the
 * voicemail arrives later as a `messages` audio message whose id is the call's wacid — the bridge notes it on that
 * call's history (once, although Meta may redeliver).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseWebhook } from '#core/meta/webhook.ts';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';

let stack: TestStack;
const VOICEMAIL = JSON.stringify({ triggers: ['REJECT'], announcementMediaId: '97531' });

beforeAll(async () => {
  stack = await startTestStack(
    { MAX_CONCURRENT_CALLS: '1', VOICEMAIL },
    { syncCallSettings: true, simulator: { timers: { voicemailRecordingMs: 200 } } },
  );
});
afterAll(() => stack?.stop());

async function record(callId: string): Promise<Record<string, unknown>> {
  return (await (await stack.api(`/v1/calls/${encodeURIComponent(callId)}`)).json()) as Record<string, unknown>;
}

describe('voicemail after a rejected call', () => {
  it('the over-capacity caller reaches voicemail, and the voicemail is linked to the call by its wacid', async () => {
    const sim = stack.simulator!;
    const first = await sim.placeUserCall({ user: { waId: '4915120000001' } });
    await eventually(async () => (await record(first.id)).state === 'queued', 5000, 'first call queued');
    const second = await sim.placeUserCall({ user: { waId: '4915120000002' } });
    await eventually(() => second.state === 'ended', 5000, 'second call rejected');
    expect(second.record.endReason).toBe('voicemail');
    const r = await eventually(
      async () => {
        const x = await record(second.id);
        return (x.history as Array<{ what: string }>).some((h) => h.what === 'voicemail-received') && x;
      },
      5000,
      'the voicemail on the call history',
    );
    expect(r).toMatchObject({ state: 'ended', endReason: 'over-capacity' });
    expect(
      (r.history as Array<{ what: string; detail?: unknown }>).filter((h) => h.what === 'voicemail-received'),
    ).toEqual([expect.objectContaining({ detail: { mediaId: expect.stringMatching(/^wamid\./) } })]);
  });

  it('parses the voicemail message as a call event, not as an ignored audio message', () => {
    const body = JSON.stringify({
      object: 'whatsapp_business_account',
      entry: [
        {
          id: '1',
          changes: [
            {
              field: 'messages',
              value: {
                messaging_product: 'whatsapp',
                metadata: { display_phone_number: '447700900123', phone_number_id: '436666719526789' },
                contacts: [{ wa_id: '4915120000002' }],
                messages: [
                  {
                    from: '4915120000002',
                    id: 'wacid.vm-1',
                    timestamp: '1764763200',
                    type: 'audio',
                    audio: { id: '555', mime_type: 'audio/ogg; codecs=opus', voice: true },
                  },
                ],
              },
            },
          ],
        },
      ],
    });
    expect(parseWebhook(body)).toEqual([
      expect.objectContaining({
        kind: 'voicemail-received',
        callId: 'wacid.vm-1',
        mediaId: '555',
        timestamp: 1_764_763_200_000,
        user: expect.objectContaining({ phone: '4915120000002' }),
      }),
    ]);
  });
});
