import { describe, expect, it } from 'vitest';
import { WebhookPayloadError } from '#core/errors.ts';
import { parseWebhook } from '#core/meta/webhook.ts';
import {
  businessCallConnect,
  callStatus,
  callTerminate,
  envelope,
  messageStatus,
  metaJsonStringify,
  permissionReply,
  userCallConnect,
} from '#simulator/webhooks/payloads.ts';

const business = { wabaId: '366634483210360', phoneNumberId: '436666719526789', displayPhoneNumber: '447700900123' };
const user = {
  waId: '16315553602',
  userId: 'US.13491208655302741918',
  parentUserId: 'US.ENT.1',
  name: 'Zoë 👋',
  username: 'zoe',
};
const sdp = 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n';

describe('parseWebhook', () => {
  it('turns a user-initiated connect into a call offer with every identifier Meta sent', () => {
    const body = metaJsonStringify(
      envelope([
        userCallConnect({
          business,
          user,
          callId: 'wacid.A=',
          sdp,
          timestamp: 1764000000,
          deeplinkPayload: 'dl',
          ctaPayload: 'cta',
        }),
      ]),
    );
    const [event] = parseWebhook(body);
    expect(event).toEqual({
      kind: 'call-offered',
      callId: 'wacid.A=',
      line: { phoneNumberId: business.phoneNumberId, businessNumber: '447700900123', accountId: business.wabaId },
      caller: {
        phone: '16315553602',
        userId: 'US.13491208655302741918',
        parentUserId: 'US.ENT.1',
        name: 'Zoë 👋',
        username: 'zoe',
      },
      sdpOffer: sdp,
      timestamp: 1764000000_000,
      deeplinkPayload: 'dl',
      ctaPayload: 'cta',
    });
  });

  it('keeps a BSUID-only caller (no phone number) and tolerates a missing direction', () => {
    const body = metaJsonStringify(
      envelope([
        userCallConnect({
          business,
          user: { userId: 'BR.998877', name: 'Ana' },
          callId: 'wacid.B',
          sdp,
          omitDirection: true,
        }),
      ]),
    );
    const [event] = parseWebhook(body);
    expect(event?.kind).toBe('call-offered');
    if (event?.kind !== 'call-offered') return;
    expect(event.caller).toEqual({ userId: 'BR.998877', name: 'Ana' });
    expect(event.caller.phone).toBeUndefined();
  });

  it('reads every change of a batched POST, across entries, in order', () => {
    const changes = [
      userCallConnect({ business, user, callId: 'wacid.1', sdp }),
      callTerminate({
        business,
        user,
        callId: 'wacid.0',
        direction: 'USER_INITIATED',
        status: 'COMPLETED',
        startTime: 100,
        endTime: 160,
      }),
      permissionReply({
        business,
        user,
        response: 'accept',
        isPermanent: false,
        expirationTimestamp: 1768550400,
        source: 'user_action',
        contextId: 'wamid.X',
      }),
      messageStatus({ business, user, status: 'delivered' }),
    ];
    for (const entries of ['one', 'per-change'] as const) {
      const events = parseWebhook(metaJsonStringify(envelope(changes, { entries })));
      expect(events.map((e) => e.kind)).toEqual(['call-offered', 'call-terminated', 'permission-reply', 'ignored']);
    }
  });

  it('reads terminate facts: answered calls carry start, end and duration; errors are kept', () => {
    const answered = parseWebhook(
      metaJsonStringify(
        envelope([
          callTerminate({
            business,
            user,
            callId: 'wacid.T',
            direction: 'USER_INITIATED',
            status: 'COMPLETED',
            startTime: 1000,
            endTime: 1120,
          }),
        ]),
      ),
    )[0];
    expect(answered).toMatchObject({
      kind: 'call-terminated',
      status: 'COMPLETED',
      startTime: 1_000_000,
      endTime: 1_120_000,
      durationSeconds: 120,
      errors: [],
    });
    const failed = parseWebhook(
      metaJsonStringify(
        envelope([
          callTerminate({
            business,
            user,
            callId: 'wacid.F',
            direction: 'USER_INITIATED',
            status: 'FAILED',
            errors: [{ code: 138021, message: 'no media', details: 'x' }],
          }),
        ]),
      ),
    )[0];
    expect(failed).toMatchObject({
      kind: 'call-terminated',
      status: 'FAILED',
      errors: [{ code: 138021, message: 'no media', details: 'x' }],
    });
    expect(failed).not.toHaveProperty('startTime');
  });

  it('routes business-call statuses and Meta answers, not message statuses, as call events', () => {
    const events = parseWebhook(
      metaJsonStringify(
        envelope([
          businessCallConnect({ business, user, callId: 'wacid.BIC', sdp, bizOpaqueCallbackData: 'ref-1' }),
          callStatus({ business, user, callId: 'wacid.BIC', status: 'RINGING' }),
          callStatus({ business, user, callId: 'wacid.BIC', status: 'ACCEPTED' }),
        ]),
      ),
    );
    expect(events.map((e) => e.kind)).toEqual(['call-answer-received', 'call-progress', 'call-progress']);
    expect(events[0]).toMatchObject({ sdpAnswer: sdp, callbackData: 'ref-1', callee: { phone: '16315553602' } });
    expect(events[2]).toMatchObject({ status: 'accepted' });
  });

  it('reads permission replies, permanent and automatic', () => {
    const [permanent, automatic] = parseWebhook(
      metaJsonStringify(
        envelope([
          permissionReply({ business, user, response: 'accept', isPermanent: true, source: 'user_action' }),
          permissionReply({ business, user, response: 'reject', source: 'automatic' }),
        ]),
      ),
    );
    expect(permanent).toMatchObject({
      kind: 'permission-reply',
      response: 'accept',
      permanent: true,
      source: 'user_action',
    });
    expect(automatic).toMatchObject({
      kind: 'permission-reply',
      response: 'reject',
      permanent: false,
      source: 'automatic',
    });
  });

  it('accepts numeric timestamps (older docs) as well as strings', () => {
    const change = userCallConnect({ business, user, callId: 'wacid.N', sdp, timestamp: 1700000000 });
    const calls = change.value.calls as Array<Record<string, unknown>>;
    calls[0]!.timestamp = 1700000000;
    expect(parseWebhook(JSON.stringify(envelope([change])))[0]).toMatchObject({ timestamp: 1700000000_000 });
  });

  it.each([
    ['not JSON', '{"object":'],
    ['an empty body', ''],
    ['a JSON array', '[]'],
    ['another object type', '{"object":"page","entry":[]}'],
    ['an envelope without entries', '{"object":"whatsapp_business_account"}'],
  ])('rejects %s with a WebhookPayloadError naming where', (_what, body) => {
    expect(() => parseWebhook(body)).toThrow(WebhookPayloadError);
  });

  it.each([
    ['an entry without changes', '{"object":"whatsapp_business_account","entry":[{"id":"1"}]}', 'entry.0.changes'],
    [
      'a calls change without metadata',
      '{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"calls","value":{"calls":[]}}]}]}',
      'entry.0.changes.0.value.metadata',
    ],
    [
      'a call without id',
      '{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"calls","value":{"metadata":{"phone_number_id":"1","display_phone_number":"2"},"calls":[{"event":"connect"}]}}]}]}',
      'entry.0.changes.0.value.calls.0.id',
    ],
  ])('reports %s as one malformed item naming where, without throwing', (_what, body, path) => {
    expect(parseWebhook(body)).toEqual([expect.objectContaining({ kind: 'malformed', path })]);
  });

  it('skips one malformed item of a batched POST and reads every other change and item (D8.2)', () => {
    // Before: one unexpected `response` value threw for the whole body, and the POST answered 400.
    const good = permissionReply({ business, user, response: 'accept', source: 'user_action', isPermanent: true });
    const bad = permissionReply({ business, user, response: 'accept', source: 'user_action', messageId: 'wamid.bad' });
    const badMessage = (bad.value.messages as Array<Record<string, unknown>>)[0]!;
    (badMessage.interactive as { call_permission_reply: { response: string } }).call_permission_reply.response =
      'maybe_later';
    const call = userCallConnect({ business, user, callId: 'wacid.OK', sdp });
    (call.value.calls as unknown[]).push({ event: 'connect' });
    const events = parseWebhook(JSON.stringify(envelope([bad, good, call])));
    expect(events.map((e) => e.kind)).toEqual(['malformed', 'permission-reply', 'malformed', 'call-offered']);
    expect(events[0]).toMatchObject({
      field: 'messages',
      path: 'entry.0.changes.0.value.messages.0.interactive.call_permission_reply.response',
    });
    expect(events[2]).toMatchObject({ field: 'calls', path: 'entry.0.changes.2.value.calls.1.id' });
  });

  it('turns an errors-only calls change into a meta-errors event (D8.1, 131044 no payment method)', () => {
    // Before: the change yielded no event at all.
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
                errors: [
                  {
                    code: 131044,
                    title: 'Payment issue',
                    error_data: { details: 'No valid payment method on the WABA' },
                  },
                ],
              },
            },
          ],
        },
      ],
    });
    expect(parseWebhook(body)).toEqual([
      {
        kind: 'meta-errors',
        line: {
          phoneNumberId: business.phoneNumberId,
          businessNumber: business.displayPhoneNumber,
          accountId: business.wabaId,
        },
        errors: [{ code: 131044, message: 'Payment issue', details: 'No valid payment method on the WABA' }],
      },
    ]);
  });

  it('reads "" phone fields (earlier BSUID revision) as absent: the user is known by the BSUID only (D4)', () => {
    // Before: the user came out as { phone: '', userId: … }, and every such user shared ledger key "".
    const empty = { userId: 'US.222', username: 'ann', phoneFields: 'empty' as const };
    const offered = parseWebhook(
      JSON.stringify(envelope([userCallConnect({ business, user: empty, callId: 'wacid.E', sdp })])),
    )[0]!;
    expect(offered).toMatchObject({ kind: 'call-offered', caller: { userId: 'US.222', username: 'ann' } });
    expect((offered as { caller: object }).caller).not.toHaveProperty('phone');
    const reply = parseWebhook(
      JSON.stringify(
        envelope([
          permissionReply({ business, user: empty, response: 'accept', source: 'user_action', isPermanent: true }),
        ]),
      ),
    )[0]!;
    expect((reply as { user: object }).user).toEqual({ userId: 'US.222', username: 'ann' });
    const ringing = parseWebhook(
      JSON.stringify(envelope([callStatus({ business, user: empty, callId: 'wacid.E', status: 'RINGING' })])),
    )[0]!;
    expect((ringing as { user: object }).user).toEqual({ userId: 'US.222', username: 'ann' });
  });

  it('knows a BSUID-only user on terminate and call status from contacts[] alone, whichever way the call went (S10)', () => {
    // REF26's terminate sample and BSUID-F: the phone fields are omitted for a username user and contacts[] names
    // them; the call item itself may carry no *_user_id (the terminate sample predates the BSUID companions).
    const bsuidOnly = { userId: 'US.333', name: 'Ann', username: 'ann' };
    const withoutCallBsuid = (change: ReturnType<typeof callTerminate>): ReturnType<typeof callTerminate> => {
      const items = (change.value.calls ?? change.value.statuses) as Record<string, unknown>[];
      for (const item of items) {
        for (const k of ['from_user_id', 'to_user_id', 'recipient_user_id']) delete item[k];
      }
      return change;
    };
    const expected = { userId: 'US.333', name: 'Ann', username: 'ann' };
    const uic = parseWebhook(
      JSON.stringify(
        envelope([
          withoutCallBsuid(
            callTerminate({
              business,
              user: bsuidOnly,
              callId: 'wacid.U',
              direction: 'USER_INITIATED',
              status: 'COMPLETED',
            }),
          ),
        ]),
      ),
    )[0]!;
    expect(uic).toMatchObject({ kind: 'call-terminated', user: expected });
    // A business-initiated terminate without `direction` (it is optional, §2.6): `from` is the business's own
    // number, so it must not be taken for the user.
    const bic = parseWebhook(
      JSON.stringify(
        envelope([
          callTerminate({
            business,
            user: bsuidOnly,
            callId: 'wacid.B',
            direction: 'BUSINESS_INITIATED',
            status: 'COMPLETED',
            omitDirection: true,
          }),
        ]),
      ),
    )[0]!;
    expect((bic as { user: object }).user).toEqual(expected);
    const accepted = parseWebhook(
      JSON.stringify(
        envelope([withoutCallBsuid(callStatus({ business, user: bsuidOnly, callId: 'wacid.B', status: 'ACCEPTED' }))]),
      ),
    )[0]!;
    expect(accepted).toMatchObject({ kind: 'call-progress', status: 'accepted', user: expected });
  });

  it('never throws anything but WebhookPayloadError on random garbage', () => {
    let seed = 42;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const valid = metaJsonStringify(envelope([userCallConnect({ business, user, callId: 'wacid.G', sdp })]));
    for (let i = 0; i < 2000; i++) {
      const chars = [...valid];
      for (let k = 0; k < 1 + Math.floor(rand() * 5); k++)
        chars[Math.floor(rand() * chars.length)] = String.fromCharCode(Math.floor(rand() * 128));
      try {
        parseWebhook(chars.join(''));
      } catch (error) {
        expect(error).toBeInstanceOf(WebhookPayloadError);
      }
    }
  });
});
