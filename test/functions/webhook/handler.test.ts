/**
 * The webhook function on the real local stack: dynalite, local-aws-sqs, the HTTP gateway and
 * deliveries signed exactly as Meta signs them.
 */
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebhookHandler } from '#functions/webhook/handler.ts';
import { WebhookEmitter } from '#simulator/webhooks/emitter.ts';
import {
  callTerminate,
  envelope,
  messageStatus,
  metaJsonStringify,
  newCallId,
  permissionReply,
  signBody,
  userCallConnect,
} from '#simulator/webhooks/payloads.ts';
import { captureLogger, type LogEntry } from '../../helpers/capture-logger.ts';
import { RecordingMetrics } from '../../helpers/recording-metrics.ts';
import {
  TEST_BUSINESS as business,
  startTestStack,
  TEST_SECRET,
  TEST_VERIFY_TOKEN,
  type TestStack,
} from '../../helpers/test-stack.ts';

const offer =
  'v=0\r\no=- 7602563789789945080 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-lite\r\nm=audio 40012 UDP/TLS/RTP/SAVPF 111 126\r\n';
const caller = { waId: '16315553602', userId: 'US.13491208655302741918', name: 'Caller' };

let stack: TestStack;
let meta: WebhookEmitter;

beforeAll(async () => {
  stack = await startTestStack();
  meta = new WebhookEmitter({
    url: stack.webhookUrl,
    appSecret: TEST_SECRET,
    verifyToken: TEST_VERIFY_TOKEN,
    retryDelaysMs: [],
  });
  expect((await meta.verify()).ok).toBe(true);
});
afterAll(async () => {
  meta.close();
  await stack.stop();
});

async function post(body: string | Buffer, signature?: string): Promise<Response> {
  return fetch(stack.webhookUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(signature === undefined ? {} : { 'x-hub-signature-256': signature }),
    },
    body,
    signal: AbortSignal.timeout(5000),
  });
}

describe('GET /webhook — Meta subscription handshake', () => {
  it('answers 200 with the raw challenge for the right token', async () => {
    const res = await fetch(
      `${stack.webhookUrl}?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=${TEST_VERIFY_TOKEN}`,
    );
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('1158201444');
  });

  it('answers 403 for a wrong token and 400 for a malformed request', async () => {
    expect((await fetch(`${stack.webhookUrl}?hub.mode=subscribe&hub.challenge=1&hub.verify_token=nope`)).status).toBe(
      403,
    );
    expect((await fetch(`${stack.webhookUrl}?hub.challenge=1`)).status).toBe(400);
  });
});

describe('POST /webhook — signature before anything else', () => {
  const body = metaJsonStringify(
    envelope([userCallConnect({ business, user: caller, callId: 'wacid.unsigned', sdp: offer })]),
  );

  it.each([
    ['unsigned', undefined],
    ['mis-signed', signBody('another-secret', body)],
    ['garbage header', 'sha256=xyz'],
  ])('answers 401 to an %s body and writes and enqueues nothing', async (_what, signature) => {
    const res = await post(body, signature);
    expect(res.status).toBe(401);
    expect(await stack.callRecords()).toEqual([]);
    expect(await stack.jobCount()).toBe(0);
  });

  it('answers 401 to every 1-byte alteration of a signed body', async () => {
    const signature = signBody(TEST_SECRET, body);
    const bytes = Buffer.from(body);
    for (const at of [0, 10, Math.floor(bytes.length / 2), bytes.length - 1]) {
      const altered = Buffer.from(bytes);
      altered[at] = altered[at]! ^ 0x01;
      expect((await post(altered, signature)).status, `byte ${at}`).toBe(401);
    }
    expect(await stack.callRecords()).toEqual([]);
    expect(await stack.jobCount()).toBe(0);
  });

  it.each(['unsigned', 'bad-signature', 'flip-byte'] as const)(
    'rejects the simulator tamper mode %s',
    async (tamper) => {
      const delivery = await meta.send(
        userCallConnect({ business, user: caller, callId: 'wacid.tamper', sdp: offer }),
        { tamper },
      );
      expect(delivery.attempts.at(-1)?.status).toBe(401);
      expect(await stack.callRecords()).toEqual([]);
    },
  );
});

describe('POST /webhook — bad input gets a clear error and never crashes', () => {
  it.each([
    ['not JSON', '{"object":"whatsapp_business_account",'],
    ['not the envelope', '{"hello":"world"}'],
  ])('answers 400 with a reason to %s', async (_what, body) => {
    const res = await post(body, signBody(TEST_SECRET, body));
    expect(res.status).toBe(400);
    expect((await res.json()) as { error: string }).toHaveProperty('error', expect.stringMatching(/JSON|payload/));
  });

  it('answers 200 to a call without an id, reporting the item skipped and where', async () => {
    const body =
      '{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"calls","value":{"metadata":{"phone_number_id":"1","display_phone_number":"2"},"calls":[{"event":"connect"}]}}]}]}';
    const res = await post(body, signBody(TEST_SECRET, body));
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      outcomes: [{ result: 'skipped', path: 'entry.0.changes.0.value.calls.0.id' }],
    });
  });

  it('survives 200 signed garbage bodies and still serves', async () => {
    let seed = 7;
    for (let i = 0; i < 200; i++) {
      const bytes = Buffer.alloc(1 + (i % 97));
      for (let k = 0; k < bytes.length; k++) {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        bytes[k] = seed & 0xff;
      }
      const res = await post(bytes, signBody(TEST_SECRET, bytes));
      expect(res.status).toBe(400);
    }
    expect((await stack.api('/healthz', { key: null })).status).toBe(200);
  });
});

describe('POST /webhook — user-initiated connect', () => {
  it('writes one record and enqueues one job carrying what the worker needs', async () => {
    const callId = newCallId('happy');
    const delivery = await meta.send(
      userCallConnect({
        business,
        user: { ...caller, name: 'Zoë Ünal 😀' },
        callId,
        sdp: offer,
        deeplinkPayload: 'dl-1',
        ctaPayload: 'cta-1',
      }),
    );
    expect(delivery.outcome).toBe('delivered');
    const res = await stack.api(`/v1/calls/${encodeURIComponent(callId)}`);
    const record = (await res.json()) as Record<string, unknown>;
    expect(record).toMatchObject({
      callId,
      state: 'queued',
      direction: 'user-initiated',
      route: 'default',
      user: { phone: '16315553602', userId: 'US.13491208655302741918', name: 'Zoë Ünal 😀' },
      deeplinkPayload: 'dl-1',
      ctaPayload: 'cta-1',
    });
    const jobs = await stack.receiveJobs();
    expect(jobs).toHaveLength(1);
    expect(jobs[0]).toMatchObject({
      type: 'bridge-user-call',
      callId,
      sdpOffer: offer,
      line: { phoneNumberId: business.phoneNumberId, businessNumber: business.displayPhoneNumber },
      caller: { phone: '16315553602', name: 'Zoë Ünal 😀' },
      deeplinkPayload: 'dl-1',
    });
  });

  it('keeps a BSUID-only caller with no phone number', async () => {
    const callId = newCallId('bsuid');
    await meta.send(
      userCallConnect({
        business,
        user: { userId: 'BR.5566778899', username: 'ana' },
        callId,
        sdp: offer,
        omitDirection: true,
      }),
    );
    const record = (await (await stack.api(`/v1/calls/${encodeURIComponent(callId)}`)).json()) as Record<
      string,
      unknown
    >;
    expect(record).toMatchObject({ state: 'queued', user: { userId: 'BR.5566778899', username: 'ana' } });
    expect((record.user as Record<string, unknown>).phone).toBeUndefined();
  });

  it('turns 20 concurrent copies of one connect into one record and one job', async () => {
    const before = await stack.jobCount();
    const recordsBefore = (await stack.callRecords()).length;
    const callId = newCallId('twenty');
    const delivery = await meta.send(userCallConnect({ business, user: caller, callId, sdp: offer }), {
      duplicates: 19,
    });
    expect(delivery.copies).toBe(20);
    expect(delivery.attempts.filter((a) => a.status === 200)).toHaveLength(20);
    expect((await stack.callRecords()).length).toBe(recordsBefore + 1);
    expect(await stack.jobCount()).toBe(before + 1);
  });

  it('ignores a replay of a delivered connect', async () => {
    const callId = newCallId('replay');
    const first = await meta.send(userCallConnect({ business, user: caller, callId, sdp: offer }));
    const jobs = await stack.jobCount();
    for (let i = 0; i < 5; i++) expect((await meta.redeliver(first.id)).outcome).toBe('delivered');
    expect(await stack.jobCount()).toBe(jobs);
  });

  it('handles a batch of several calls in one POST', async () => {
    const before = await stack.jobCount();
    const ids = [newCallId('batch-a'), newCallId('batch-b'), newCallId('batch-c')];
    const delivery = await meta.send(
      ids.map((callId, i) => userCallConnect({ business, user: { waId: `4915112345${i}` }, callId, sdp: offer })),
      { batch: 'per-change' },
    );
    expect(delivery.outcome).toBe('delivered');
    expect(await stack.jobCount()).toBe(before + 3);
  });

  it('stores call_permission_reply once and ignores message statuses', async () => {
    const change = permissionReply({
      business,
      user: caller,
      response: 'accept',
      isPermanent: true,
      source: 'user_action',
      messageId: 'wamid.perm-1',
    });
    const res = await meta.send([change, messageStatus({ business, user: caller, status: 'read' })], {
      batch: 'one-entry',
      duplicates: 2,
    });
    expect(res.outcome).toBe('delivered');
    const replies = await stack.runtime.permissionReplies.list(business.phoneNumberId, { phone: caller.waId });
    expect(replies).toHaveLength(1);
    expect(replies[0]).toMatchObject({ response: 'accept', permanent: true, messageId: 'wamid.perm-1' });
  });
});

describe('POST /webhook — terminate', () => {
  it('before its connect leaves the call ended and never enqueues a job', async () => {
    const callId = newCallId('reordered');
    const jobsBefore = await stack.jobCount();
    const held = meta.hold(
      (c) => JSON.stringify(c.value).includes('"connect"') && JSON.stringify(c.value).includes(callId),
    );
    const connect = meta.send(userCallConnect({ business, user: caller, callId, sdp: offer }));
    await meta.send(callTerminate({ business, user: caller, callId, direction: 'USER_INITIATED', status: 'FAILED' }));
    await held.release();
    expect((await connect).outcome).toBe('delivered');
    const record = (await (await stack.api(`/v1/calls/${encodeURIComponent(callId)}`)).json()) as Record<
      string,
      unknown
    >;
    expect(record).toMatchObject({ state: 'ended', endReason: 'terminated-before-connect' });
    expect(await stack.jobCount()).toBe(jobsBefore);
  });

  it('finishes a queued call with Meta status and talk time, once', async () => {
    const callId = newCallId('terminated');
    await meta.send(userCallConnect({ business, user: caller, callId, sdp: offer }));
    const change = callTerminate({
      business,
      user: caller,
      callId,
      direction: 'USER_INITIATED',
      status: 'COMPLETED',
      startTime: 1764000000,
      endTime: 1764000042,
    });
    await meta.send(change, { duplicates: 3 });
    const record = (await (await stack.api(`/v1/calls/${encodeURIComponent(callId)}`)).json()) as Record<
      string,
      unknown
    > & { history: Array<{ what: string }> };
    expect(record).toMatchObject({
      state: 'ended',
      endReason: 'caller-hung-up',
      endedBy: 'whatsapp',
      metaStatus: 'COMPLETED',
      durationSeconds: 42,
    });
    expect(typeof record.expiresAt).toBe('number');
    expect(record.history.filter((h) => h.what === 'ended')).toHaveLength(1);
  });

  it('records Meta errors of a failed call', async () => {
    const callId = newCallId('failed');
    await meta.send(userCallConnect({ business, user: caller, callId, sdp: offer }));
    await meta.send(
      callTerminate({
        business,
        user: caller,
        callId,
        direction: 'USER_INITIATED',
        status: 'FAILED',
        errors: [{ code: 138021, message: 'no media' }],
      }),
    );
    const record = (await (await stack.api(`/v1/calls/${encodeURIComponent(callId)}`)).json()) as Record<
      string,
      unknown
    >;
    // Before: `meta-terminated`, which says only that Meta ended it; 138021 says WhatsApp heard nothing from us.
    expect(record).toMatchObject({ state: 'ended', endReason: 'no-media-from-bridge', metaErrors: [{ code: 138021 }] });
  });
});

describe('POST /webhook — a batch with a bad item, and errors-only changes', () => {
  /** The webhook function on the stack's runtime, with its metrics and logs recorded. */
  function recordedHandler() {
    const metrics = new RecordingMetrics();
    const logs: LogEntry[] = [];
    const handler = createWebhookHandler({ ...stack.runtime, metrics, logger: captureLogger(logs) });
    const invoke = async (body: string, signature = signBody(TEST_SECRET, body)) => {
      const event = {
        rawPath: '/webhook',
        requestContext: { http: { method: 'POST' } },
        headers: { 'content-type': 'application/json', 'x-hub-signature-256': signature },
        body,
        isBase64Encoded: false,
      } as unknown as APIGatewayProxyEventV2;
      const res = (await handler(event, {} as Context)) as { statusCode: number; body: string };
      return { status: res.statusCode, body: JSON.parse(res.body) as Record<string, unknown> };
    };
    return { metrics, logs, invoke };
  }

  it('skips one malformed item, processes the rest of the batch and answers 200 (D8.2)', async () => {
    // Before: the whole POST answered 400 and Meta would have redelivered every update in it.
    const { metrics, logs, invoke } = recordedHandler();
    const good = permissionReply({
      business,
      user: { waId: '4915100000077' },
      response: 'accept',
      isPermanent: true,
      source: 'user_action',
      messageId: 'wamid.batch-good',
    });
    const bad = permissionReply({
      business,
      user: { waId: '4915100000078' },
      response: 'accept',
      source: 'user_action',
      messageId: 'wamid.batch-bad',
    });
    const reply = (bad.value.messages as Array<{ interactive: { call_permission_reply: { response: string } } }>)[0]!;
    reply.interactive.call_permission_reply.response = 'maybe_later';
    const callId = newCallId('batch-with-bad-item');
    const before = await stack.jobCount();
    const res = await invoke(
      metaJsonStringify(envelope([bad, userCallConnect({ business, user: caller, callId, sdp: offer }), good])),
    );
    expect(res.status).toBe(200);
    expect(await stack.jobCount()).toBe(before + 1);
    expect(await stack.runtime.permissionReplies.list(business.phoneNumberId, { phone: '4915100000077' })).toHaveLength(
      1,
    );
    expect(await stack.runtime.permissionReplies.list(business.phoneNumberId, { phone: '4915100000078' })).toHaveLength(
      0,
    );
    expect(metrics.points.filter((p) => p.name === 'WebhookItemsMalformed')).toEqual([
      { name: 'WebhookItemsMalformed', value: 1, dimensions: {} },
    ]);
    expect(logs).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        message: 'malformed webhook item skipped',
        fields: expect.objectContaining({ field: 'messages', path: expect.stringMatching(/^entry\.0\.changes\.0\./) }),
      }),
    );
    // A bad signature still answers 401, whatever the body.
    expect((await invoke(metaJsonStringify(envelope([good])), 'sha256=00')).status).toBe(401);
  });

  it('counts the errors of a terminate by Meta code, once per call however often Meta delivers it', async () => {
    // Before: only errors-only changes were counted; a terminate's 138019–138023 reached no metric.
    const { metrics, invoke } = recordedHandler();
    const callId = newCallId('client-failed');
    await invoke(metaJsonStringify(envelope([userCallConnect({ business, user: caller, callId, sdp: offer })])));
    const terminate = metaJsonStringify(
      envelope([
        callTerminate({
          business,
          user: caller,
          callId,
          direction: 'USER_INITIATED',
          status: 'FAILED',
          errors: [{ code: 138022, message: 'Client could not transmit media' }],
        }),
      ]),
    );
    expect((await invoke(terminate)).status).toBe(200);
    expect((await invoke(terminate)).status).toBe(200); // Meta's redelivery
    expect(metrics.points.filter((p) => p.name === 'MetaCallErrors')).toEqual([
      { name: 'MetaCallErrors', value: 1, dimensions: { MetaCode: '138022' } },
    ]);
    expect(await stack.runtime.calls.get(callId)).toMatchObject({ endReason: 'whatsapp-media-failed' });
  });

  it('logs and counts an errors-only calls change by Meta code (D8.1, 131044 no payment method)', async () => {
    // Before: the change produced no event, no log line and no metric.
    const { metrics, logs, invoke } = recordedHandler();
    const body = JSON.stringify({
      object: 'whatsapp_business_account',
      entry: [
        {
          id: business.wabaId,
          changes: [
            {
              field: 'calls',
              value: {
                messaging_product: 'whatsapp',
                metadata: {
                  display_phone_number: business.displayPhoneNumber,
                  phone_number_id: business.phoneNumberId,
                },
                errors: [{ code: 131044, title: 'Payment issue', error_data: { details: 'No valid payment method' } }],
              },
            },
          ],
        },
      ],
    });
    const res = await invoke(body);
    expect(res.status).toBe(200);
    expect(metrics.points).toEqual([{ name: 'MetaCallErrors', value: 1, dimensions: { MetaCode: '131044' } }]);
    expect(logs).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        message: 'Meta reported a calling error',
        fields: expect.objectContaining({ metaCode: 131044, details: 'No valid payment method' }),
      }),
    );
  });
});
