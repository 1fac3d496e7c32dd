import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  businessCallConnect,
  callStatus,
  callTerminate,
  createIdGenerator,
  envelope,
  messageStatus,
  metaJsonStringify,
  newCallId,
  newMessageId,
  permissionReply,
  type SimBusiness,
  type SimUser,
  signBody,
  userCallConnect,
  wabaIdOf,
} from '#simulator/webhooks/payloads.ts';

// Values from the samples in docs/meta-calling-api.md §2.6–§2.9.
const business: SimBusiness = {
  wabaId: '366634483210360',
  phoneNumberId: '436666719526789',
  displayPhoneNumber: '13175551399',
};
const user: SimUser = {
  waId: '16315553602',
  userId: 'US.13491208655302741918',
  parentUserId: 'US.ENT.11815799212886844830',
  name: 'Zoë',
  username: 'zoe.w',
};
const bsuidOnly: SimUser = { userId: 'US.13491208655302741918', username: 'zoe.w' };
const SDP = 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n';

describe('a user calls the business (connect with SDP offer, §2.6)', () => {
  it('matches the documented sample field for field, with from = caller and to = business', () => {
    const change = userCallConnect({
      business,
      user,
      callId: 'wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh',
      sdp: SDP,
      timestamp: 1671644824,
      deeplinkPayload: 'deeplink_payload',
      ctaPayload: 'cta_payload',
    });
    expect(envelope([change])).toEqual({
      object: 'whatsapp_business_account',
      entry: [
        {
          id: '366634483210360',
          changes: [
            {
              field: 'calls',
              value: {
                messaging_product: 'whatsapp',
                metadata: { phone_number_id: '436666719526789', display_phone_number: '13175551399' },
                contacts: [
                  {
                    profile: { name: 'Zoë', username: 'zoe.w' },
                    wa_id: '16315553602',
                    user_id: 'US.13491208655302741918',
                    parent_user_id: 'US.ENT.11815799212886844830',
                  },
                ],
                calls: [
                  {
                    id: 'wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh',
                    to: '13175551399',
                    from: '16315553602',
                    from_user_id: 'US.13491208655302741918',
                    from_parent_user_id: 'US.ENT.11815799212886844830',
                    event: 'connect',
                    timestamp: '1671644824',
                    direction: 'USER_INITIATED',
                    deeplink_payload: 'deeplink_payload',
                    cta_payload: 'cta_payload',
                    session: { sdp_type: 'offer', sdp: SDP },
                  },
                ],
              },
            },
          ],
        },
      ],
    });
  });

  it('a username-only user (BSUID, no phone) has no from and no wa_id anywhere', () => {
    const change = userCallConnect({ business, user: bsuidOnly, callId: newCallId('x'), sdp: SDP });
    const call = (change.value.calls as Record<string, unknown>[])[0]!;
    const contact = (change.value.contacts as Record<string, unknown>[])[0]!;
    expect(call).not.toHaveProperty('from');
    expect(call.from_user_id).toBe('US.13491208655302741918');
    expect(call).not.toHaveProperty('from_parent_user_id');
    expect(call.to).toBe('13175551399');
    expect(contact).toEqual({ profile: { username: 'zoe.w' }, user_id: 'US.13491208655302741918' });
    expect(metaJsonStringify(change)).not.toContain('wa_id');
  });

  it('a username-only user of the earlier BSUID revision carries "" in every phone field (BSUID-old)', () => {
    const empty: SimUser = { ...bsuidOnly, phoneFields: 'empty' };
    const connect = userCallConnect({ business, user: empty, callId: newCallId('x'), sdp: SDP });
    const call = (connect.value.calls as Record<string, unknown>[])[0]!;
    expect(call.from).toBe('');
    expect(call.from_user_id).toBe('US.13491208655302741918');
    expect((connect.value.contacts as Record<string, unknown>[])[0]).toEqual({
      profile: { username: 'zoe.w' },
      wa_id: '',
      user_id: 'US.13491208655302741918',
    });
    const status = callStatus({ business, user: empty, callId: 'wacid.1', status: 'RINGING' });
    expect((status.value.statuses as Record<string, unknown>[])[0]!.recipient_id).toBe('');
    const reply = permissionReply({
      business,
      user: empty,
      response: 'accept',
      source: 'user_action',
      isPermanent: true,
    });
    expect((reply.value.messages as Record<string, unknown>[])[0]!.from).toBe('');
    // A user with a phone number is unaffected by the option.
    const withPhone = userCallConnect({
      business,
      user: { ...user, phoneFields: 'empty' },
      callId: 'wacid.2',
      sdp: SDP,
    });
    expect((withPhone.value.calls as Record<string, unknown>[])[0]!.from).toBe('16315553602');
  });

  it('timestamps are strings of Unix seconds (defaulting to now) and direction can be omitted', () => {
    const before = Math.floor(Date.now() / 1000);
    const change = userCallConnect({ business, user, callId: newCallId(), sdp: SDP, omitDirection: true });
    const call = (change.value.calls as Record<string, unknown>[])[0]!;
    expect(typeof call.timestamp).toBe('string');
    expect(Number(call.timestamp)).toBeGreaterThanOrEqual(before);
    expect(call).not.toHaveProperty('direction');
    expect(call).not.toHaveProperty('deeplink_payload');
    expect(call).not.toHaveProperty('cta_payload');
  });
});

describe('the business calls a user (connect with SDP answer and call statuses, §2.8)', () => {
  it('connect carries Meta’s answer with from = business and to = user plus to_user_id', () => {
    const change = businessCallConnect({
      business,
      user: { waId: '16315553602', userId: 'US.1', parentUserId: 'US.ENT.2', name: 'Callee' },
      callId: 'wacid.X',
      sdp: SDP,
      timestamp: '1671644824',
      bizOpaqueCallbackData: 'TRx334DUDFTI4Mj',
    });
    expect(change.field).toBe('calls');
    expect(change.value.contacts).toEqual([
      { profile: { name: 'Callee' }, wa_id: '16315553602', user_id: 'US.1', parent_user_id: 'US.ENT.2' },
    ]);
    expect(change.value.calls).toEqual([
      {
        id: 'wacid.X',
        to: '16315553602',
        to_user_id: 'US.1',
        to_parent_user_id: 'US.ENT.2',
        from: '13175551399',
        event: 'connect',
        timestamp: '1671644824',
        direction: 'BUSINESS_INITIATED',
        biz_opaque_callback_data: 'TRx334DUDFTI4Mj',
        session: { sdp_type: 'answer', sdp: SDP },
      },
    ]);
    const legacy = businessCallConnect({ business, user, callId: 'wacid.X', sdp: SDP, legacyConnection: true });
    expect((legacy.value.calls as Record<string, unknown>[])[0]!.connection).toEqual({ webrtc: { sdp: SDP } });
  });

  it('a RINGING status is statuses[] with type "call" under field "calls"', () => {
    const change = callStatus({
      business,
      user: { waId: '16315553602', userId: 'US.1', parentUserId: 'US.ENT.2' },
      callId: 'wacid.ABGGFjFVU2AfAgo6V',
      status: 'RINGING',
      timestamp: 1671644824,
      bizOpaqueCallbackData: 'random_string',
    });
    expect(change).toEqual({
      field: 'calls',
      value: {
        messaging_product: 'whatsapp',
        metadata: { display_phone_number: '13175551399', phone_number_id: '436666719526789' },
        statuses: [
          {
            id: 'wacid.ABGGFjFVU2AfAgo6V',
            timestamp: '1671644824',
            type: 'call',
            status: 'RINGING',
            recipient_id: '16315553602',
            recipient_user_id: 'US.1',
            recipient_parent_user_id: 'US.ENT.2',
            biz_opaque_callback_data: 'random_string',
          },
        ],
        // BSUID-F: business-initiated status webhooks carry contacts[] too (S10).
        contacts: [{ wa_id: '16315553602', user_id: 'US.1', parent_user_id: 'US.ENT.2' }],
      },
    });
  });

  it('a message delivery status is statuses[] without type "call" under field "messages"', () => {
    const change = messageStatus({ business, user, status: 'delivered', messageId: 'wamid.M', timestamp: 5 });
    expect(change.field).toBe('messages');
    expect(change.value.statuses).toEqual([
      {
        id: 'wamid.M',
        status: 'delivered',
        timestamp: '5',
        recipient_id: '16315553602',
        recipient_user_id: 'US.13491208655302741918',
        recipient_parent_user_id: 'US.ENT.11815799212886844830',
      },
    ]);
  });
});

describe('a call ends (terminate, §2.7)', () => {
  it('an answered call carries start_time/end_time as strings and duration as a number', () => {
    const change = callTerminate({
      business: { ...business, displayPhoneNumber: '16315553601' },
      user: { waId: '16315553602' },
      callId: 'wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh',
      direction: 'USER_INITIATED',
      status: 'COMPLETED',
      startTime: 1671644824,
      endTime: 1671644944,
      bizOpaqueCallbackData: 'random_string',
      deeplinkPayload: 'd',
      ctaPayload: 'c',
    });
    expect(change.value.calls).toEqual([
      {
        id: 'wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh',
        to: '16315553601',
        from: '16315553602',
        event: 'terminate',
        direction: 'USER_INITIATED',
        deeplink_payload: 'd',
        cta_payload: 'c',
        biz_opaque_callback_data: 'random_string',
        timestamp: '1671644944',
        status: 'COMPLETED',
        start_time: '1671644824',
        end_time: '1671644944',
        duration: 120,
      },
    ]);
    expect(change.value).not.toHaveProperty('errors');
    // REF26's terminate sample and BSUID-F: contacts[] names the user on terminate too (S10).
    expect(change.value.contacts).toEqual([{ wa_id: '16315553602' }]);
  });

  it('an unanswered failed BIC call has no start_time/end_time/duration but has errors[]', () => {
    const change = callTerminate({
      business,
      user: bsuidOnly,
      callId: 'wacid.Y',
      direction: 'BUSINESS_INITIATED',
      status: 'FAILED',
      timestamp: 1700000000,
      errors: [{ code: 138021, message: 'ERROR_TITLE', href: 'ERROR_HREF', details: 'ERROR_DETAILS' }],
    });
    const call = (change.value.calls as Record<string, unknown>[])[0]!;
    for (const k of ['start_time', 'end_time', 'duration', 'to']) expect(call).not.toHaveProperty(k);
    expect(call).toMatchObject({ from: '13175551399', to_user_id: 'US.13491208655302741918', status: 'FAILED' });
    expect(change.value.errors).toEqual([
      { code: 138021, message: 'ERROR_TITLE', href: 'ERROR_HREF', error_data: { details: 'ERROR_DETAILS' } },
    ]);
    // A BSUID-only user: no phone anywhere, the BSUID in contacts[] (BSUID-F, S10).
    expect(change.value.contacts).toEqual([{ profile: { username: 'zoe.w' }, user_id: 'US.13491208655302741918' }]);
  });
});

describe('a user answers a call-permission request (messages field, §2.9)', () => {
  it('temporary grant matches the documented sample', () => {
    const change = permissionReply({
      business,
      user: { waId: '16315553602', userId: 'US.1', name: 'Zoë' },
      response: 'accept',
      isPermanent: false,
      expirationTimestamp: 1768550400,
      source: 'user_action',
      contextId: 'wamid.gBGGFlaCmZ9plHrf2Mh-o',
      messageId: 'wamid.sH0kFlaCGg0xcvZbgmg90lHrg2dL',
      timestamp: 1767168000,
    });
    expect(change.field).toBe('messages');
    expect(change.value.contacts).toEqual([{ profile: { name: 'Zoë' }, wa_id: '16315553602', user_id: 'US.1' }]);
    expect(change.value.messages).toEqual([
      {
        from: '16315553602',
        from_user_id: 'US.1',
        id: 'wamid.sH0kFlaCGg0xcvZbgmg90lHrg2dL',
        timestamp: '1767168000',
        type: 'interactive',
        context: { from: '16315553602', id: 'wamid.gBGGFlaCmZ9plHrf2Mh-o' },
        interactive: {
          type: 'call_permission_reply',
          call_permission_reply: {
            response: 'accept',
            is_permanent: false,
            expiration_timestamp: '1768550400',
            response_source: 'user_action',
          },
        },
      },
    ]);
  });

  it('automatic revocation has no is_permanent, no expiration and no context', () => {
    const change = permissionReply({ business, user: bsuidOnly, response: 'reject', source: 'automatic' });
    const msg = (change.value.messages as Record<string, unknown>[])[0]!;
    expect(msg).not.toHaveProperty('from');
    expect(msg).not.toHaveProperty('context');
    expect(String(msg.id)).toMatch(/^wamid\./);
    expect(msg.interactive).toEqual({
      type: 'call_permission_reply',
      call_permission_reply: { response: 'reject', response_source: 'automatic' },
    });
  });
});

describe('envelope batching (§2.4, §2.5)', () => {
  const connect = userCallConnect({ business, user, callId: 'wacid.A', sdp: SDP });
  const terminate = callTerminate({
    business,
    user,
    callId: 'wacid.A',
    direction: 'USER_INITIATED',
    status: 'COMPLETED',
  });

  it('puts several changes in one entry, or one entry per change', () => {
    const one = envelope([connect, terminate]);
    expect(one.entry).toHaveLength(1);
    expect(one.entry[0]!.changes.map((c) => c.field)).toEqual(['calls', 'calls']);
    const per = envelope([connect, terminate], { entries: 'per-change' });
    expect(per.entry.map((e) => e.id)).toEqual([business.wabaId, business.wabaId]);
    expect(per.entry.map((e) => e.changes.length)).toEqual([1, 1]);
  });

  it('takes entry.id from the builder, an explicit override, or refuses', () => {
    expect(wabaIdOf(connect)).toBe(business.wabaId);
    expect(envelope([connect], { wabaId: 'W2' }).entry[0]!.id).toBe('W2');
    expect(() => envelope([{ field: 'calls', value: {} }])).toThrow(/WABA id/);
  });
});

describe('Meta JSON serialisation and signature (§2.3)', () => {
  it('escapes non-ASCII as lowercase \\u, emoji as a surrogate pair, and / as \\/', () => {
    const out = metaJsonStringify({ name: 'José 😀', sdp: 'UDP/TLS/RTP/SAVPF', sep: '\u2028' });
    expect(out).toBe('{"name":"Jos\\u00e9 \\ud83d\\ude00","sdp":"UDP\\/TLS\\/RTP\\/SAVPF","sep":"\\u2028"}');
    expect(out).toMatch(/^[\x20-\x7e]*$/);
  });

  it('round-trips: JSON.parse(metaJsonStringify(x)) deep-equals x', () => {
    const x = {
      a: 'é/ü\\"\n\t\u0001',
      b: ['😀', '中文', '', null, true, 0, -1.5e-7],
      c: { nested: { sdp: SDP, emoji: '👩‍👩‍👧' } },
    };
    expect(JSON.parse(metaJsonStringify(x))).toEqual(x);
    const change = userCallConnect({ business, user, callId: newCallId('r'), sdp: SDP });
    expect(JSON.parse(metaJsonStringify(envelope([change])))).toEqual(envelope([change]));
  });

  it('signBody is sha256= plus the HMAC-SHA256 hex of the exact bytes', () => {
    const raw = metaJsonStringify({ name: 'é' });
    const hex = createHmac('sha256', 's3cret').update(Buffer.from(raw)).digest('hex');
    expect(signBody('s3cret', raw)).toBe(`sha256=${hex}`);
    expect(signBody('s3cret', Buffer.from(raw))).toBe(`sha256=${hex}`);
    // The pitfall: re-serialising with plain JSON.stringify gives other bytes, another signature.
    expect(signBody('s3cret', JSON.stringify(JSON.parse(raw)))).not.toBe(`sha256=${hex}`);
  });
});

describe('ids (§7 item 7)', () => {
  it('call ids are wacid. + base64url-ish text with = and -, deterministic per seed', () => {
    const id = newCallId('call-1');
    expect(id).toMatch(/^wacid\.[A-Za-z0-9_-]+=$/);
    expect(id).toContain('-');
    expect(newCallId('call-1')).toBe(id);
    expect(newCallId('call-2')).not.toBe(id);
    expect(newCallId()).not.toBe(newCallId());
  });

  it('generators with the same namespace give the same sequence', () => {
    const a = createIdGenerator('ns');
    const b = createIdGenerator('ns');
    expect([a.callId(), a.callId(), a.messageId()]).toEqual([b.callId(), b.callId(), b.messageId()]);
    expect(newMessageId()).toMatch(/^wamid\./);
    expect(newMessageId(7)).toBe(newMessageId(7));
  });
});
