/**
 * Payload builders for every webhook shape the Meta simulator emits, plus Meta's
 * JSON serialisation quirks and the `X-Hub-Signature-256` signature.
 *
 * Field names, nesting and value types follow Meta's docs as collected in
 * `docs/meta-calling-api.md` §2 (the shared engineering reference). Where Meta's own
 * samples contradict the reference table, the builders follow the table and the
 * deviation is commented at the call site.
 *
 * @module
 */
import { createHash, createHmac } from 'node:crypto';

/** A single `entry[].changes[]` element of a WABA webhook: `{ field, value }`. */
export type WebhookChange = {
  /**
   * `calls` for call events and BIC call statuses; `messages` for permission replies, message statuses and
   * voicemails; `account_update` for calling quality violations and restrictions (§2.10).
   */
  field: 'calls' | 'messages' | 'account_update';
  /** The change value exactly as Meta sends it (`messaging_product`, `metadata`, `calls[]`/`statuses[]`/`messages[]`…). */
  value: Record<string, unknown>;
};

/** The business side of a simulated call: its WABA and one of its phone numbers. */
export type SimBusiness = {
  /** WhatsApp Business Account id; becomes `entry[].id`. */
  wabaId: string;
  /** Graph id of the phone number; `metadata.phone_number_id`. */
  phoneNumberId: string;
  /** The number in digits without `+`, e.g. `13175551399`; `metadata.display_phone_number` and `from`/`to`. */
  displayPhoneNumber: string;
};

/**
 * The WhatsApp user side of a simulated call.
 *
 * Since the 2026 BSUID rollout a user may have no phone number at all (they adopted a
 * username); then `from`/`to`/`wa_id` are omitted and only the BSUID fields are sent
 * (meta-calling-api.md §2.6 "BSUID fields are newer").
 */
export type SimUser = {
  /** Phone number in digits (`wa_id`, `from`/`to`). Omit to simulate a username-only user. */
  waId?: string;
  /**
   * How a username-only user's phone fields (`wa_id`, `from`/`to`, `recipient_id`) appear:
   * `omitted` (Feb 2026 and later revisions, BSUID-F; the default) or `empty`, the `""` an earlier
   * revision specified (BSUID-old). Ignored when `waId` is set.
   */
  phoneFields?: 'omitted' | 'empty';
  /** Business-scoped user id (BSUID), e.g. `US.13491208655302741918`. */
  userId?: string;
  /** Parent BSUID for managed business portfolios, e.g. `US.ENT.11815799212886844830`. */
  parentUserId?: string;
  /** Profile display name (`contacts[].profile.name`). */
  name?: string;
  /** WhatsApp username (`contacts[].profile.username`). */
  username?: string;
};

/** Direction of a call as Meta spells it in `calls[].direction`. */
export type CallDirection = 'USER_INITIATED' | 'BUSINESS_INITIATED';

/** A Unix time in seconds, given as a number or an already-stringified number. */
export type UnixSeconds = number | string;

/** One element of `value.errors[]` on a failed call (meta-calling-api.md §2.7, codes in §6). */
export type WebhookError = {
  /** Calling error code, e.g. 138021. */
  code: number;
  /** Error title. */
  message: string;
  /** Link to the docs; Meta includes it on calling errors. */
  href?: string;
  /** Extra details, `error_data.details`. */
  details?: string;
};

// ---------------------------------------------------------------------------
// WABA bookkeeping: the change shape has no room for the WABA id, but the envelope
// needs it for `entry[].id`. Builders remember it out of band.
// ---------------------------------------------------------------------------

const wabaOfChange = new WeakMap<WebhookChange, string>();

function remember(change: WebhookChange, wabaId: string): WebhookChange {
  wabaOfChange.set(change, wabaId);
  return change;
}

/**
 * The WABA id a builder attached to `change`, if it came from one of this module's builders.
 * Used by {@link envelope} for `entry[].id` when no explicit `wabaId` is given.
 */
export function wabaIdOf(change: WebhookChange): string | undefined {
  return wabaOfChange.get(change);
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/** Current Unix time in whole seconds. */
function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/**
 * Meta sends every timestamp as a **string** of Unix seconds (M-REF26; older docs said
 * Integer) — meta-calling-api.md §2.6 notes. `duration` is the exception (a number).
 */
function ts(value: UnixSeconds | undefined): string {
  return String(value ?? nowSeconds());
}

function metadata(business: SimBusiness): Record<string, unknown> {
  return { display_phone_number: business.displayPhoneNumber, phone_number_id: business.phoneNumberId };
}

/** Adds `key: value` only when value is defined — Meta omits absent fields rather than sending null. */
function put(target: Record<string, unknown>, key: string, value: unknown): void {
  if (value !== undefined) target[key] = value;
}

/** The user's phone as Meta writes it: digits, `""` for a BSUID-old username user, or undefined (omitted). */
function phoneOf(user: SimUser): string | undefined {
  return user.waId ?? (user.phoneFields === 'empty' ? '' : undefined);
}

/** `contacts[]` entry for a user; phone and BSUID fields each only when known (§2.6). */
function contact(user: SimUser): Record<string, unknown> {
  const c: Record<string, unknown> = {};
  const profile: Record<string, unknown> = {};
  put(profile, 'name', user.name);
  put(profile, 'username', user.username);
  if (Object.keys(profile).length > 0) c.profile = profile;
  put(c, 'wa_id', phoneOf(user));
  put(c, 'user_id', user.userId);
  put(c, 'parent_user_id', user.parentUserId);
  return c;
}

function baseValue(business: SimBusiness): Record<string, unknown> {
  return { messaging_product: 'whatsapp', metadata: metadata(business) };
}

/**
 * Sets `from`/`to` and the BSUID companions for a call.
 *
 * Meta's samples disagree about `to`/`from` (the M-UIC Part-1 and M-REF BIC samples swap
 * them); the reference table is authoritative: `from` is the **caller**, `to` the
 * **callee** (meta-calling-api.md §2.6, §2.8). A username-only user has no phone, so
 * their side is omitted and only `*_user_id` is present.
 */
function parties(call: Record<string, unknown>, business: SimBusiness, user: SimUser, direction: CallDirection): void {
  if (direction === 'USER_INITIATED') {
    put(call, 'to', business.displayPhoneNumber);
    put(call, 'from', phoneOf(user));
    put(call, 'from_user_id', user.userId);
    put(call, 'from_parent_user_id', user.parentUserId);
  } else {
    put(call, 'to', phoneOf(user));
    put(call, 'to_user_id', user.userId);
    put(call, 'to_parent_user_id', user.parentUserId);
    put(call, 'from', business.displayPhoneNumber);
  }
}

// ---------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------

/** Input of {@link userCallConnect}. */
export type UserCallConnectInput = {
  business: SimBusiness;
  user: SimUser;
  /** `wacid.…` call id (see {@link newCallId}). */
  callId: string;
  /** The SDP **offer** Meta forwards from the WhatsApp client. */
  sdp: string;
  /** Unix seconds; defaults to now. Always serialised as a string. */
  timestamp?: UnixSeconds;
  /** Present only when the call came from a `wa.me/call/…?biz_payload=` deep link (§2.6). */
  deeplinkPayload?: string;
  /** Present only when the call came from a `voice_call` button carrying a `payload` (§2.6). */
  ctaPayload?: string;
  /** Drop `direction`, as in Meta's M-UIC Part-1 sample (§2.6: treat it as optional). */
  omitDirection?: boolean;
};

/**
 * A user-initiated call arriving: `calls[0].event = "connect"` with `session.sdp_type = "offer"`
 * (meta-calling-api.md §2.6). The caller's phone is already ringing when this is sent.
 */
export function userCallConnect(input: UserCallConnectInput): WebhookChange {
  const { business, user } = input;
  const call: Record<string, unknown> = { id: input.callId };
  parties(call, business, user, 'USER_INITIATED');
  call.event = 'connect';
  call.timestamp = ts(input.timestamp);
  if (!input.omitDirection) call.direction = 'USER_INITIATED';
  put(call, 'deeplink_payload', input.deeplinkPayload);
  put(call, 'cta_payload', input.ctaPayload);
  call.session = { sdp_type: 'offer', sdp: input.sdp };
  const value = baseValue(business);
  value.contacts = [contact(user)];
  value.calls = [call];
  return remember({ field: 'calls', value }, business.wabaId);
}

/** Input of {@link businessCallConnect}. */
export type BusinessCallConnectInput = {
  business: SimBusiness;
  user: SimUser;
  callId: string;
  /** Meta's SDP **answer** to the business's offer. */
  sdp: string;
  timestamp?: UnixSeconds;
  /** Echo of what the business passed on `POST /calls action=connect` (≤512 chars). */
  bizOpaqueCallbackData?: string;
  /** Drop `direction` (it is optional in practice, §2.6). */
  omitDirection?: boolean;
  /**
   * Add the legacy duplicate `connection: { webrtc: { sdp } }` that some Meta samples carry
   * next to `session` (§2.8). Receivers must ignore it.
   */
  legacyConnection?: boolean;
};

/**
 * A business-initiated call's media setup: `calls[0].event = "connect"` with Meta's SDP
 * answer (meta-calling-api.md §2.8). Arrives ~1 s after `POST /calls`, **before** the
 * user picks up — it is not an "answered" signal.
 */
export function businessCallConnect(input: BusinessCallConnectInput): WebhookChange {
  const { business, user } = input;
  const call: Record<string, unknown> = { id: input.callId };
  parties(call, business, user, 'BUSINESS_INITIATED');
  call.event = 'connect';
  call.timestamp = ts(input.timestamp);
  if (!input.omitDirection) call.direction = 'BUSINESS_INITIATED';
  put(call, 'biz_opaque_callback_data', input.bizOpaqueCallbackData);
  call.session = { sdp_type: 'answer', sdp: input.sdp };
  if (input.legacyConnection) call.connection = { webrtc: { sdp: input.sdp } };
  const value = baseValue(business);
  value.contacts = [contact(user)];
  value.calls = [call];
  return remember({ field: 'calls', value }, business.wabaId);
}

/** Input of {@link callTerminate}. */
export type CallTerminateInput = {
  business: SimBusiness;
  user: SimUser;
  callId: string;
  direction: CallDirection;
  /**
   * Meta documents `COMPLETED | FAILED` (casing varies across pages; §2.7). Unanswered BIC
   * calls have been observed to end `COMPLETED` too — the answered signal is `start_time`.
   */
  status: 'COMPLETED' | 'FAILED';
  /** Event time; defaults to `endTime` if given, else now. */
  timestamp?: UnixSeconds;
  /** Only when the call was picked up (§2.7). */
  startTime?: UnixSeconds;
  /** Only when the call was picked up (§2.7). */
  endTime?: UnixSeconds;
  /** Seconds, a **number**; computed from start/end when both are given and this is not. */
  duration?: number;
  bizOpaqueCallbackData?: string;
  deeplinkPayload?: string;
  ctaPayload?: string;
  /** `value.errors[]`, only on failed calls with error info (§2.7). */
  errors?: WebhookError[];
  /** Drop `direction`. */
  omitDirection?: boolean;
};

/**
 * The end of any call (hang-up, reject, timeout, media failure): `calls[0].event = "terminate"`
 * (meta-calling-api.md §2.7). `start_time`/`end_time`/`duration` are emitted only when passed,
 * i.e. only for answered calls. The BSUID companions of `from`/`to` are included like on
 * `connect`, and `value.contacts[]` names the user (profile name, `wa_id`, `user_id`) as in REF26's
 * terminate sample and BSUID-F ("contacts" on every calls webhook), so a receiver can identify a
 * BSUID-only user whose phone fields are omitted.
 */
export function callTerminate(input: CallTerminateInput): WebhookChange {
  const { business, user } = input;
  const call: Record<string, unknown> = { id: input.callId };
  parties(call, business, user, input.direction);
  call.event = 'terminate';
  if (!input.omitDirection) call.direction = input.direction;
  put(call, 'deeplink_payload', input.deeplinkPayload);
  put(call, 'cta_payload', input.ctaPayload);
  put(call, 'biz_opaque_callback_data', input.bizOpaqueCallbackData);
  call.timestamp = ts(input.timestamp ?? input.endTime);
  call.status = input.status;
  if (input.startTime !== undefined) call.start_time = String(input.startTime);
  if (input.endTime !== undefined) call.end_time = String(input.endTime);
  const duration =
    input.duration ??
    (input.startTime !== undefined && input.endTime !== undefined
      ? Number(input.endTime) - Number(input.startTime)
      : undefined);
  put(call, 'duration', duration);
  const value = baseValue(business);
  value.contacts = [contact(user)];
  value.calls = [call];
  if (input.errors && input.errors.length > 0) {
    value.errors = input.errors.map((e) => {
      const err: Record<string, unknown> = { code: e.code, message: e.message };
      put(err, 'href', e.href);
      if (e.details !== undefined) err.error_data = { details: e.details };
      return err;
    });
  }
  return remember({ field: 'calls', value }, business.wabaId);
}

/**
 * An errors-only `calls` change: no `calls[]`, only `value.errors[]` (M-TRB: 131044 "An error webhook is sent on
 * user initiated calls" when the business has no valid payment method; §4.3).
 */
export function callErrors(input: { business: SimBusiness; errors: WebhookError[] }): WebhookChange {
  const value = baseValue(input.business);
  value.errors = input.errors.map((e) => {
    const err: Record<string, unknown> = { code: e.code, message: e.message };
    put(err, 'href', e.href);
    if (e.details !== undefined) err.error_data = { details: e.details };
    return err;
  });
  return remember({ field: 'calls', value }, input.business.wabaId);
}

/** Input of {@link callStatus}. */
export type CallStatusInput = {
  business: SimBusiness;
  user: SimUser;
  callId: string;
  status: 'RINGING' | 'ACCEPTED' | 'REJECTED';
  timestamp?: UnixSeconds;
  bizOpaqueCallbackData?: string;
};

/**
 * Business-initiated call progress: `statuses[0].type = "call"` on **`field: "calls"`**
 * (meta-calling-api.md §2.8). Routers that key on `statuses[]` alone mistake these for
 * message delivery statuses (§2.5) — route on `field`, then `type`. Like every calls webhook
 * since the BSUID rollout (BSUID-F), it carries `value.contacts[]` for the user.
 */
export function callStatus(input: CallStatusInput): WebhookChange {
  const { business, user } = input;
  const status: Record<string, unknown> = {
    id: input.callId,
    timestamp: ts(input.timestamp),
    type: 'call',
    status: input.status,
  };
  put(status, 'recipient_id', phoneOf(user));
  put(status, 'recipient_user_id', user.userId);
  put(status, 'recipient_parent_user_id', user.parentUserId);
  put(status, 'biz_opaque_callback_data', input.bizOpaqueCallbackData);
  const value = baseValue(business);
  value.contacts = [contact(user)];
  value.statuses = [status];
  return remember({ field: 'calls', value }, business.wabaId);
}

/** Input of {@link permissionReply}. */
export type PermissionReplyInput = {
  business: SimBusiness;
  user: SimUser;
  response: 'accept' | 'reject';
  /** Boolean; present on accepts, absent on rejects (§2.9 scenario table). */
  isPermanent?: boolean;
  /** Unix seconds, serialised as a string; only on temporary grants. */
  expirationTimestamp?: UnixSeconds;
  source: 'user_action' | 'automatic';
  /**
   * `context.id`: the request message's `wamid`, or for the automatic callback grant the
   * `wacid` of the user's call. Omit for profile grants and auto-revocations.
   */
  contextId?: string;
  /** `context.from`; defaults to the user's phone as in Meta's M-PERM sample (§2.9). */
  contextFrom?: string;
  /** `messages[0].id`; defaults to a fresh {@link newMessageId}. */
  messageId?: string;
  timestamp?: UnixSeconds;
};

/**
 * A user's answer to a call-permission request, or an automatic grant/revocation:
 * `interactive.call_permission_reply` on **`field: "messages"`**, not `calls`
 * (meta-calling-api.md §2.1, §2.9). Use the §2.9 scenario table to pick the options.
 */
export function permissionReply(input: PermissionReplyInput): WebhookChange {
  const { business, user } = input;
  const reply: Record<string, unknown> = { response: input.response };
  put(reply, 'is_permanent', input.isPermanent);
  if (input.expirationTimestamp !== undefined) reply.expiration_timestamp = String(input.expirationTimestamp);
  reply.response_source = input.source;
  const message = inboundMessage(user, input.messageId ?? newMessageId(), input.timestamp, 'interactive');
  if (input.contextId !== undefined) {
    const context: Record<string, unknown> = {};
    put(context, 'from', input.contextFrom ?? user.waId);
    context.id = input.contextId;
    message.context = context;
  }
  message.interactive = { type: 'call_permission_reply', call_permission_reply: reply };
  return messagesChange(business, user, message);
}

/** The head every inbound `messages[]` item shares: the sender's identifiers, id, timestamp and type. */
function inboundMessage(
  user: SimUser,
  id: string,
  timestamp: UnixSeconds | undefined,
  type: string,
): Record<string, unknown> {
  const message: Record<string, unknown> = {};
  put(message, 'from', phoneOf(user));
  put(message, 'from_user_id', user.userId);
  put(message, 'from_parent_user_id', user.parentUserId);
  message.id = id;
  message.timestamp = ts(timestamp);
  message.type = type;
  return message;
}

/** One inbound message from `user` as a `field: "messages"` change, with the user in `contacts[]`. */
function messagesChange(business: SimBusiness, user: SimUser, message: Record<string, unknown>): WebhookChange {
  const value = baseValue(business);
  value.contacts = [contact(user)];
  value.messages = [message];
  return remember({ field: 'messages', value }, business.wabaId);
}

/** Input of {@link messageStatus}. */
export type MessageStatusInput = {
  business: SimBusiness;
  user: SimUser;
  /** The `wamid` whose status changed; defaults to a fresh one. */
  messageId?: string;
  status: 'sent' | 'delivered' | 'read' | 'failed';
  timestamp?: UnixSeconds;
  /** `errors[]` inside the status (for `failed`). */
  errors?: WebhookError[];
};

/**
 * A message delivery status: `statuses[]` (no `type: "call"`) on **`field: "messages"`**.
 * Exists so bridge tests can prove message statuses are not routed as call statuses (§2.5).
 */
export function messageStatus(input: MessageStatusInput): WebhookChange {
  const { business, user } = input;
  const status: Record<string, unknown> = {
    id: input.messageId ?? newMessageId(),
    status: input.status,
    timestamp: ts(input.timestamp),
  };
  put(status, 'recipient_id', phoneOf(user));
  put(status, 'recipient_user_id', user.userId);
  put(status, 'recipient_parent_user_id', user.parentUserId);
  if (input.errors && input.errors.length > 0) {
    status.errors = input.errors.map((e) => {
      const err: Record<string, unknown> = { code: e.code, title: e.message, message: e.message };
      if (e.details !== undefined) err.error_data = { details: e.details };
      put(err, 'href', e.href);
      return err;
    });
  }
  const value = baseValue(business);
  value.statuses = [status];
  return remember({ field: 'messages', value }, business.wabaId);
}

/** Input of {@link userTextMessage}. */
export type UserTextMessageInput = {
  business: SimBusiness;
  user: SimUser;
  text: string;
  messageId?: string;
  timestamp?: UnixSeconds;
};

/**
 * A text message from the user: `messages[]` with `type: "text"` on **`field: "messages"`**. It opens the 24 h
 * customer-service window (PERM26, BTN26).
 */
export function userTextMessage(input: UserTextMessageInput): WebhookChange {
  const { business, user } = input;
  const message = inboundMessage(user, input.messageId ?? newMessageId(), input.timestamp, 'text');
  message.text = { body: input.text };
  return messagesChange(business, user, message);
}

// ---------------------------------------------------------------------------
// Envelope
// ---------------------------------------------------------------------------

/** Options of {@link envelope}. */
export type EnvelopeOptions = {
  /** `entry[].id` for every entry; defaults to the WABA each builder recorded. */
  wabaId?: string;
  /**
   * `one`: all changes of the same WABA in one entry's `changes[]` (default).
   * `per-change`: one entry per change. Meta may batch either way and guarantees neither (§2.4).
   */
  entries?: 'one' | 'per-change';
};

/** The WABA webhook envelope `{ object, entry[] }`. */
export type WebhookEnvelope = {
  object: 'whatsapp_business_account';
  entry: Array<{ id: string; changes: WebhookChange[] }>;
};

/**
 * Wraps changes in the standard WABA envelope (meta-calling-api.md §2.5), batching several
 * changes per POST either in one entry or one entry per change.
 *
 * @throws {Error} if a change has no known WABA id and `opts.wabaId` is not given.
 */
export function envelope(changes: WebhookChange[], opts: EnvelopeOptions = {}): WebhookEnvelope {
  const idOf = (change: WebhookChange): string => {
    const id = opts.wabaId ?? wabaOfChange.get(change);
    if (id === undefined) throw new Error('envelope: change has no WABA id; pass opts.wabaId');
    return id;
  };
  // Copy each change to a plain `{ field, value }` so the envelope is independent of the builder objects.
  const plain = (c: WebhookChange): WebhookChange => ({ field: c.field, value: c.value });
  if (opts.entries === 'per-change') {
    return { object: 'whatsapp_business_account', entry: changes.map((c) => ({ id: idOf(c), changes: [plain(c)] })) };
  }
  const byWaba = new Map<string, WebhookChange[]>();
  for (const c of changes) {
    const id = idOf(c);
    const list = byWaba.get(id) ?? [];
    list.push(plain(c));
    byWaba.set(id, list);
  }
  return {
    object: 'whatsapp_business_account',
    entry: [...byWaba].map(([id, list]) => ({ id, changes: list })),
  };
}

// ---------------------------------------------------------------------------
// Serialisation and signature
// ---------------------------------------------------------------------------

/**
 * `JSON.stringify` the way Meta serialises webhook bodies: every non-ASCII UTF-16 code unit
 * is written as `\uXXXX` with **lowercase** hex (so emoji become surrogate pairs such as
 * `\ud83d\ude00`), and `/` is written as `\/`.
 *
 * This is what makes the signature pitfall real: a receiver that re-serialises the parsed
 * body gets different bytes and a signature mismatch (meta-calling-api.md §2.3). The output
 * is pure ASCII and `JSON.parse` gives back the original value.
 */
export function metaJsonStringify(value: unknown): string {
  const json = JSON.stringify(value);
  if (json === undefined) throw new TypeError('metaJsonStringify: value is not JSON-serialisable');
  // Outside strings JSON.stringify only emits ASCII punctuation, digits and literals, and
  // never a `/`; inside strings neither `/` nor a non-ASCII unit is part of an escape
  // sequence. So both replacements only touch string contents and keep the JSON valid.
  return json
    .replace(/[\u0080-\uffff]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`)
    .replace(/\//g, '\\/');
}

/**
 * The `X-Hub-Signature-256` header value: `sha256=` + lowercase hex HMAC-SHA256 of the raw
 * body bytes keyed with the app secret (meta-calling-api.md §2.3). Strings are hashed as UTF-8.
 */
export function signBody(appSecret: string, rawBody: string | Buffer): string {
  return `sha256=${createHmac('sha256', appSecret).update(rawBody).digest('hex')}`;
}

// ---------------------------------------------------------------------------
// Ids
// ---------------------------------------------------------------------------

/** Base64url alphabet but **with** `=` padding, like the ids Meta hands out. */
function b64urlPadded(bytes: Buffer): string {
  return bytes.toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
}

/**
 * Makes a `wacid.` call id from a key. 20 bytes → 28 chars ending in exactly one `=`; byte 9
 * is forced so that char 12 is always `-`. Every id therefore exercises the characters that
 * break naive URL/path handling (`=`, `-`), like Meta's `wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh`.
 */
function callIdFromKey(key: string): string {
  const bytes = createHash('sha256').update(`wacid\u0000${key}`).digest().subarray(0, 20);
  bytes[9] = 0xf8 | ((bytes[9] ?? 0) & 0x03); // top six bits 111110 → base64url index 62 → '-'
  return `wacid.${b64urlPadded(bytes)}`;
}

function messageIdFromKey(key: string): string {
  const bytes = createHash('sha256').update(`wamid\u0000${key}`).digest().subarray(0, 30);
  return `wamid.${bytes.toString('base64')}`;
}

/** A deterministic id source: the n-th id of a generator depends only on its namespace and n. */
export type IdGenerator = {
  /** Next `wacid.…` id. */
  callId(): string;
  /** Next `wamid.…` id. */
  messageId(): string;
};

/**
 * Creates an independent, deterministic id generator. Two generators with the same
 * namespace yield the same sequence, so a simulator instance per test gives stable ids.
 */
export function createIdGenerator(namespace = 'sim'): IdGenerator {
  let calls = 0;
  let messages = 0;
  return {
    callId: () => callIdFromKey(`${namespace}#${++calls}`),
    messageId: () => messageIdFromKey(`${namespace}#${++messages}`),
  };
}

const defaultIds = createIdGenerator('sim');

/**
 * A `wacid.` call id (meta-calling-api.md §7 item 7: deterministic, base64-ish, may contain `=`).
 *
 * With a `seed`, the id is a pure function of the seed (same seed → same id). Without one,
 * it is the next id of a process-wide counter (deterministic per process run order).
 * Every id contains `=` and `-`.
 */
export function newCallId(seed?: string | number): string {
  return seed === undefined ? defaultIds.callId() : callIdFromKey(`seed:${seed}`);
}

/** A `wamid.` message id; same determinism rules as {@link newCallId}. */
export function newMessageId(seed?: string | number): string {
  return seed === undefined ? defaultIds.messageId() : messageIdFromKey(`seed:${seed}`);
}

/** Input of {@link voicemailMessage}. */
export type VoicemailMessageInput = {
  business: SimBusiness;
  user: SimUser;
  /** The diverted call's `wacid`; Meta uses it as `messages[].id` (Corrections item 4). */
  callId: string;
  /** Media id of the recording (`audio.id`). */
  mediaId: string;
  timestamp?: UnixSeconds;
};

/**
 * A voicemail the caller left after Meta diverted the call (Corrections item 4, SET26): an inbound **audio**
 * message on **`field: "messages"`** whose `messages[].id` is the call's `wacid` (not a `wamid`). The audio
 * object follows Cloud API inbound audio messages (`id`, `mime_type`, `voice`).
 */
export function voicemailMessage(input: VoicemailMessageInput): WebhookChange {
  const { business, user } = input;
  const message = inboundMessage(user, input.callId, input.timestamp, 'audio');
  message.audio = { id: input.mediaId, mime_type: 'audio/ogg; codecs=opus', voice: true };
  return messagesChange(business, user, message);
}

/** Input of {@link accountUpdate}. */
export type AccountUpdateInput =
  | {
      business: SimBusiness;
      event: 'ACCOUNT_VIOLATION';
      violationType:
        | 'LOW_BUSINESS_INITIATED_CALLING_QUALITY'
        | 'LOW_USER_INITIATED_CALLING_QUALITY'
        | 'USER_INITIATED_CALLS_LOW_PICKUP_RATE';
    }
  | {
      business: SimBusiness;
      event: 'ACCOUNT_RESTRICTION';
      restrictions: Array<{
        type:
          | 'RESTRICTED_BUSINESS_INITIATED_CALLING'
          | 'RESTRICTED_USER_INITIATED_CALLING'
          | 'RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN';
        /** Unix seconds when the restriction lifts. */
        expiration: UnixSeconds;
      }>;
    };

/**
 * A calling quality warning or restriction on **`field: "account_update"`** (§2.10, §4.6, M-SET):
 * `ACCOUNT_VIOLATION` with `violation_info.violation_type`, or `ACCOUNT_RESTRICTION` with
 * `restriction_info[]` (`restriction_type`, `expiration`). The value carries `phone_number`, as Meta's other
 * `account_update` samples do.
 */
export function accountUpdate(input: AccountUpdateInput): WebhookChange {
  const value: Record<string, unknown> = { phone_number: input.business.displayPhoneNumber, event: input.event };
  if (input.event === 'ACCOUNT_VIOLATION') value.violation_info = { violation_type: input.violationType };
  else {
    value.restriction_info = input.restrictions.map((r) => ({
      restriction_type: r.type,
      expiration: Number(r.expiration),
    }));
  }
  return remember({ field: 'account_update', value }, input.business.wabaId);
}
