/**
 * Meta adapter: turns a verified webhook body into domain events.
 *
 * Meta's field names (`wa_id`, `from_user_id`, `phone_number_id`…) stop here; the rest of the
 * bridge speaks of callers, users and business numbers. Parsing is total: any JSON value yields
 * either events or a {@link WebhookPayloadError} naming the path, never an exception of another kind.
 */
import { z } from 'zod';
import { WebhookPayloadError } from '../errors.ts';

/** A WhatsApp user as Meta identifies them. A user may have no phone number (BSUID only). */
export interface WhatsAppUser {
  /** Digits as Meta writes them (no `+`), when Meta sends one. */
  readonly phone?: string;
  /** Business-scoped user id (BSUID), e.g. `US.13491208655302741918`. */
  readonly userId?: string;
  readonly parentUserId?: string;
  readonly name?: string;
  readonly username?: string;
}

/** The business number an event is for. */
export interface BusinessLine {
  readonly phoneNumberId: string;
  /** Digits as Meta writes them in `display_phone_number`. */
  readonly businessNumber: string;
  /** The WhatsApp Business Account id (`entry[].id`). */
  readonly accountId: string;
}

/** Meta error info attached to a terminated call. */
export interface MetaCallError {
  readonly code: number;
  readonly message?: string;
  readonly details?: string;
}

/** A user-initiated call offered to the business (Meta `connect` with an SDP offer). */
export interface CallOffered {
  readonly kind: 'call-offered';
  readonly callId: string;
  readonly line: BusinessLine;
  readonly caller: WhatsAppUser;
  readonly sdpOffer: string;
  /** Meta's event time, ms since the epoch. */
  readonly timestamp: number;
  readonly deeplinkPayload?: string;
  readonly ctaPayload?: string;
}

/** Meta's SDP answer for a business-initiated call (Meta `connect` with an answer). */
export interface CallAnswerReceived {
  readonly kind: 'call-answer-received';
  readonly callId: string;
  readonly line: BusinessLine;
  readonly callee: WhatsAppUser;
  readonly sdpAnswer: string;
  readonly timestamp: number;
  readonly callbackData?: string;
}

/** A call ended at Meta (Meta `terminate`). */
export interface CallTerminated {
  readonly kind: 'call-terminated';
  readonly callId: string;
  readonly line: BusinessLine;
  readonly direction?: 'user-initiated' | 'business-initiated';
  readonly user: WhatsAppUser;
  /** Meta's status, upper-cased (`COMPLETED`, `FAILED`, …). */
  readonly status: string;
  /** Present only when the call was picked up (meta-calling-api.md §2.7). */
  readonly startTime?: number;
  readonly endTime?: number;
  readonly durationSeconds?: number;
  readonly errors: readonly MetaCallError[];
  readonly timestamp: number;
  readonly callbackData?: string;
}

/** Ringing / accepted / rejected progress of a business-initiated call (Meta `statuses[]`, type `call`). */
export interface CallProgress {
  readonly kind: 'call-progress';
  readonly callId: string;
  readonly line: BusinessLine;
  readonly status: 'ringing' | 'accepted' | 'rejected';
  readonly user: WhatsAppUser;
  readonly timestamp: number;
  readonly callbackData?: string;
}

/** A user's answer to a call-permission request, or an automatic grant/revocation. */
export interface PermissionReply {
  readonly kind: 'permission-reply';
  readonly line: BusinessLine;
  readonly user: WhatsAppUser;
  readonly response: 'accept' | 'reject';
  readonly permanent: boolean;
  /** Expiry of a temporary grant, ms since the epoch. */
  readonly expiresAt?: number;
  readonly source: 'user_action' | 'automatic' | string;
  /** The request message id, or the call id of a callback grant. */
  readonly contextId?: string;
  readonly messageId: string;
  readonly timestamp: number;
}

/** Something valid that the bridge does not act on (message statuses, recordings…), kept for logs. */
export interface IgnoredChange {
  readonly kind: 'ignored';
  readonly field: string;
  readonly reason: string;
}

/**
 * A `calls` change that carries only `errors[]`, no call (M-TRB: 131044 "An error webhook is sent
 * on user initiated calls" when the business has no payment method). Kept as an event so it is
 * logged and counted, never dropped.
 */
export interface MetaErrorsReported {
  readonly kind: 'meta-errors';
  readonly line: BusinessLine;
  readonly errors: readonly MetaCallError[];
}

/**
 * One item of a batched POST that does not have Meta's shape (an entry, a change, or one element of
 * `calls[]`/`statuses[]`/`messages[]`). Meta batches many updates in one POST and redelivers the
 * whole POST on anything but 200 (§2.4), so a bad item is reported and skipped, never fatal.
 */
export interface MalformedItem {
  readonly kind: 'malformed';
  readonly field: string;
  /** Where in the body, e.g. `entry.0.changes.1.value.calls.0.id`. */
  readonly path: string;
  readonly reason: string;
}

/**
 * An `account_update` change about calling quality (§2.10, §4.6, M-SET): `ACCOUNT_VIOLATION` is Meta's early
 * warning (low BIC/UIC quality, low pickup rate), `ACCOUNT_RESTRICTION` a pause of business- or user-initiated
 * calling (or the hidden call button) until `expiration`. Not a call: logged, counted and alarmed.
 */
export interface AccountAlert {
  readonly kind: 'account-alert';
  readonly event: 'ACCOUNT_VIOLATION' | 'ACCOUNT_RESTRICTION';
  /** The business number the alert concerns, if Meta names it. */
  readonly phoneNumber?: string;
  /** `ACCOUNT_VIOLATION`: `violation_info.violation_type`, e.g. `USER_INITIATED_CALLS_LOW_PICKUP_RATE`. */
  readonly violationType?: string;
  /** `ACCOUNT_RESTRICTION`: each restriction with when it lifts (epoch ms), if given. */
  readonly restrictions: ReadonlyArray<{ readonly type: string; readonly expiresAt?: number }>;
}

/**
 * A voicemail the caller left after Meta diverted the call (voicemail REJECT/TIMEOUT, Corrections item 4): it
 * arrives on `messages` as an audio message whose id is the call's `wacid`, so it links to the call record.
 */
export interface VoicemailReceived {
  readonly kind: 'voicemail-received';
  /** The diverted call's id (the message id). */
  readonly callId: string;
  readonly line: BusinessLine;
  readonly user: WhatsAppUser;
  /** Media id of the recording (download with the Media API). */
  readonly mediaId?: string;
  readonly timestamp: number;
}

/** Every domain event a webhook can carry. */
export type InboundEvent =
  | AccountAlert
  | VoicemailReceived
  | CallOffered
  | CallAnswerReceived
  | CallTerminated
  | CallProgress
  | PermissionReply
  | MetaErrorsReported
  | MalformedItem
  | IgnoredChange;

const str = z.string();
const num = z.union([z.string(), z.number()]);
const contactSchema = z.looseObject({
  wa_id: str.optional(),
  user_id: str.optional(),
  parent_user_id: str.optional(),
  profile: z.looseObject({ name: str.optional(), username: str.optional() }).optional(),
});
const metadataSchema = z.looseObject({ phone_number_id: str, display_phone_number: str });
const callSchema = z.looseObject({
  id: str.min(1),
  event: str,
  from: str.optional(),
  to: str.optional(),
  from_user_id: str.optional(),
  from_parent_user_id: str.optional(),
  to_user_id: str.optional(),
  to_parent_user_id: str.optional(),
  timestamp: num.optional(),
  direction: str.optional(),
  deeplink_payload: str.optional(),
  cta_payload: str.optional(),
  biz_opaque_callback_data: str.optional(),
  status: z.union([str, z.array(str)]).optional(),
  start_time: num.optional(),
  end_time: num.optional(),
  duration: num.optional(),
  session: z.looseObject({ sdp_type: str, sdp: str }).optional(),
});
const errorSchema = z.looseObject({
  code: num,
  message: str.optional(),
  title: str.optional(),
  error_data: z.looseObject({ details: str.optional() }).optional(),
});
const statusSchema = z.looseObject({
  id: str.min(1),
  type: str.optional(),
  status: str,
  timestamp: num.optional(),
  recipient_id: str.optional(),
  recipient_user_id: str.optional(),
  recipient_parent_user_id: str.optional(),
  biz_opaque_callback_data: str.optional(),
});
const messageSchema = z.looseObject({
  id: str,
  from: str.optional(),
  from_user_id: str.optional(),
  timestamp: num.optional(),
  type: str.optional(),
  context: z.looseObject({ id: str.optional() }).optional(),
  interactive: z
    .looseObject({
      type: str,
      call_permission_reply: z
        .looseObject({
          response: z.enum(['accept', 'reject']),
          is_permanent: z.union([z.boolean(), str]).optional(),
          expiration_timestamp: num.optional(),
          response_source: str.optional(),
        })
        .optional(),
    })
    .optional(),
});
/** A change's value; the items of its lists are checked one by one ({@link itemsOf}). */
const valueSchema = z.looseObject({
  messaging_product: str.optional(),
  metadata: metadataSchema,
  contacts: z.array(z.unknown()).optional(),
  calls: z.array(z.unknown()).optional(),
  statuses: z.array(z.unknown()).optional(),
  messages: z.array(z.unknown()).optional(),
  errors: z.array(z.unknown()).optional(),
});
const envelopeSchema = z.object({
  object: z.literal('whatsapp_business_account'),
  entry: z.array(z.unknown()),
});
const entrySchema = z.looseObject({ id: str, changes: z.array(z.unknown()) });
const changeSchema = z.looseObject({ field: str, value: z.unknown() });

/** A change's value with every list item that has Meta's shape. */
interface Value {
  readonly contacts?: z.infer<typeof contactSchema>[];
  readonly calls?: z.infer<typeof callSchema>[];
  readonly statuses?: z.infer<typeof statusSchema>[];
  readonly messages?: z.infer<typeof messageSchema>[];
  readonly errors?: z.infer<typeof errorSchema>[];
}

/**
 * Parses a webhook body (already signature-checked) into domain events, in payload order.
 *
 * @param rawBody - the body text.
 * @throws {@link WebhookPayloadError} for invalid JSON or a body that is not Meta's envelope.
 */
export function parseWebhook(rawBody: string): InboundEvent[] {
  let json: unknown;
  try {
    json = JSON.parse(rawBody);
  } catch (cause) {
    throw new WebhookPayloadError('body is not valid JSON', '', { cause });
  }
  const envelope = envelopeSchema.safeParse(json);
  if (!envelope.success) throw schemaError(envelope.error);

  // From here on a bad item is reported as `malformed` and skipped; the rest of the batch counts.
  const events: InboundEvent[] = [];
  envelope.data.entry.forEach((rawEntry, e) => {
    const entry = entrySchema.safeParse(rawEntry);
    if (!entry.success) {
      events.push(malformed('', entry.error, `entry.${e}`));
      return;
    }
    entry.data.changes.forEach((rawChange, c) => {
      const at = `entry.${e}.changes.${c}`;
      const change = changeSchema.safeParse(rawChange);
      if (!change.success) {
        events.push(malformed('', change.error, at));
        return;
      }
      const { field } = change.data;
      if (field === 'account_update') {
        events.push(accountUpdateEvent(change.data.value, `${at}.value`));
        return;
      }
      if (field !== 'calls' && field !== 'messages') {
        events.push({ kind: 'ignored', field, reason: 'field not used by the bridge' });
        return;
      }
      const parsed = valueSchema.safeParse(change.data.value);
      if (!parsed.success) {
        events.push(malformed(field, parsed.error, `${at}.value`));
        return;
      }
      const raw = parsed.data;
      const line: BusinessLine = {
        phoneNumberId: raw.metadata.phone_number_id,
        businessNumber: digits(raw.metadata.display_phone_number),
        accountId: entry.data.id,
      };
      const value: Value = {
        contacts: itemsOf(raw.contacts, contactSchema, field, `${at}.value.contacts`, events),
        calls: itemsOf(raw.calls, callSchema, field, `${at}.value.calls`, events),
        statuses: itemsOf(raw.statuses, statusSchema, field, `${at}.value.statuses`, events),
        messages: itemsOf(raw.messages, messageSchema, field, `${at}.value.messages`, events),
        errors: itemsOf(raw.errors, errorSchema, field, `${at}.value.errors`, events),
      };
      if (field === 'calls') events.push(...callEvents(value, line, raw.calls !== undefined && raw.calls.length > 0));
      else events.push(...messageEvents(value, line));
    });
  });
  return events;
}

/** The items of a list that have Meta's shape; each other item becomes a `malformed` event. */
function itemsOf<S extends z.ZodType>(
  items: readonly unknown[] | undefined,
  schema: S,
  field: string,
  at: string,
  events: InboundEvent[],
): z.infer<S>[] {
  const out: z.infer<S>[] = [];
  (items ?? []).forEach((item, i) => {
    const parsed = schema.safeParse(item);
    if (parsed.success) out.push(parsed.data);
    else events.push(malformed(field, parsed.error, `${at}.${i}`));
  });
  return out;
}

const accountUpdateSchema = z.looseObject({
  event: str,
  phone_number: num.optional(),
  violation_info: z.looseObject({ violation_type: str }).optional(),
  restriction_info: z
    .array(
      // REF26 names the field `expiration` in its table and `expiration_time` in its sample (Corrections item 8).
      z.looseObject({ restriction_type: str, expiration: num.optional(), expiration_time: num.optional() }),
    )
    .optional(),
});

/** `account_update` value → an {@link AccountAlert}, or `ignored` for its other events (e.g. verification). */
function accountUpdateEvent(rawValue: unknown, at: string): InboundEvent {
  const parsed = accountUpdateSchema.safeParse(rawValue);
  if (!parsed.success) return malformed('account_update', parsed.error, at);
  const v = parsed.data;
  if (v.event !== 'ACCOUNT_VIOLATION' && v.event !== 'ACCOUNT_RESTRICTION') {
    return { kind: 'ignored', field: 'account_update', reason: `account_update event ${v.event}` };
  }
  return {
    kind: 'account-alert',
    event: v.event,
    ...(v.phone_number === undefined ? {} : { phoneNumber: String(v.phone_number) }),
    ...(v.violation_info ? { violationType: v.violation_info.violation_type } : {}),
    restrictions: (v.restriction_info ?? []).map((r) => {
      const seconds = Number(r.expiration ?? r.expiration_time);
      return { type: r.restriction_type, ...(Number.isFinite(seconds) ? { expiresAt: seconds * 1000 } : {}) };
    }),
  };
}

function malformed(field: string, error: z.ZodError, prefix: string): MalformedItem {
  const { message, path } = schemaError(error, prefix);
  return { kind: 'malformed', field, path, reason: message };
}

function callEvents(value: Value, line: BusinessLine, hadCalls: boolean): InboundEvent[] {
  const out: InboundEvent[] = [];
  const errors = (value.errors ?? []).map(
    (e): MetaCallError => ({
      code: Number(e.code),
      ...optional('message', e.message ?? e.title),
      ...optional('details', e.error_data?.details),
    }),
  );
  // An errors-only change (no call at all, e.g. 131044 no payment method, M-TRB) is an event of its own.
  if (!hadCalls && errors.length > 0) out.push({ kind: 'meta-errors', line, errors });
  for (const call of value.calls ?? []) {
    const direction = parseDirection(call.direction);
    const timestamp = toMillis(call.timestamp) ?? Date.now();
    const event = call.event.toLowerCase();
    if (event === 'connect') {
      const sdpType = call.session?.sdp_type?.toLowerCase();
      if (sdpType === 'offer' || (sdpType === undefined && direction !== 'business-initiated')) {
        if (!call.session?.sdp) {
          out.push({ kind: 'ignored', field: 'calls', reason: `connect ${call.id} has no SDP` });
          continue;
        }
        out.push({
          kind: 'call-offered',
          callId: call.id,
          line,
          caller: userOf(value, call.from, call.from_user_id, call.from_parent_user_id),
          sdpOffer: call.session.sdp,
          timestamp,
          ...optional('deeplinkPayload', call.deeplink_payload),
          ...optional('ctaPayload', call.cta_payload),
        });
      } else if (sdpType === 'answer' && call.session?.sdp) {
        out.push({
          kind: 'call-answer-received',
          callId: call.id,
          line,
          callee: userOf(value, call.to, call.to_user_id, call.to_parent_user_id),
          sdpAnswer: call.session.sdp,
          timestamp,
          ...optional('callbackData', call.biz_opaque_callback_data),
        });
      } else {
        out.push({ kind: 'ignored', field: 'calls', reason: `connect ${call.id} with sdp_type ${sdpType}` });
      }
    } else if (event === 'terminate') {
      // For a business-initiated call the user is `to`; for a user-initiated one, `from`. `direction` is optional
      // (§2.6), so without it the user is the side that is not the business's own number.
      const bic = direction === 'business-initiated' || (direction === undefined && userIsCallee(call, line));
      const status = Array.isArray(call.status) ? call.status[0] : call.status;
      out.push({
        kind: 'call-terminated',
        callId: call.id,
        line,
        ...optional('direction', direction),
        user: bic
          ? userOf(value, call.to, call.to_user_id, call.to_parent_user_id)
          : userOf(value, call.from, call.from_user_id, call.from_parent_user_id),
        status: (status ?? 'UNKNOWN').toUpperCase(),
        ...optional('startTime', toMillis(call.start_time)),
        ...optional('endTime', toMillis(call.end_time)),
        ...optional('durationSeconds', toNumber(call.duration)),
        errors,
        timestamp,
        ...optional('callbackData', call.biz_opaque_callback_data),
      });
    } else {
      out.push({ kind: 'ignored', field: 'calls', reason: `call event ${call.event}` });
    }
  }
  for (const status of value.statuses ?? []) {
    // Route on field first, then on type: message delivery statuses also use statuses[] (§2.5).
    const s = status.status.toLowerCase();
    if ((status.type ?? 'call') !== 'call' || (s !== 'ringing' && s !== 'accepted' && s !== 'rejected')) {
      out.push({ kind: 'ignored', field: 'calls', reason: `status ${status.type}/${status.status}` });
      continue;
    }
    out.push({
      kind: 'call-progress',
      callId: status.id,
      line,
      status: s,
      user: userOf(value, status.recipient_id, status.recipient_user_id, status.recipient_parent_user_id),
      timestamp: toMillis(status.timestamp) ?? Date.now(),
      ...optional('callbackData', status.biz_opaque_callback_data),
    });
  }
  return out;
}

function messageEvents(value: Value, line: BusinessLine): InboundEvent[] {
  const out: InboundEvent[] = [];
  for (const message of value.messages ?? []) {
    const reply = message.interactive?.call_permission_reply;
    // A voicemail Meta collected after diverting a call: an audio message whose id is the call's wacid
    // (Corrections item 4, SET26).
    if (message.type === 'audio' && message.id.startsWith('wacid.')) {
      const audio = (message as { audio?: { id?: unknown } }).audio;
      out.push({
        kind: 'voicemail-received',
        callId: message.id,
        line,
        user: userOf(value, message.from, message.from_user_id, undefined),
        ...optional('mediaId', typeof audio?.id === 'string' ? audio.id : undefined),
        timestamp: toMillis(message.timestamp) ?? Date.now(),
      });
      continue;
    }
    if (message.interactive?.type !== 'call_permission_reply' || !reply) {
      out.push({ kind: 'ignored', field: 'messages', reason: `message type ${message.type}` });
      continue;
    }
    out.push({
      kind: 'permission-reply',
      line,
      user: userOf(value, message.from, message.from_user_id, undefined),
      response: reply.response,
      permanent: reply.is_permanent === true || reply.is_permanent === 'true',
      ...optional('expiresAt', toMillis(reply.expiration_timestamp)),
      source: reply.response_source ?? 'user_action',
      ...optional('contextId', message.context?.id),
      messageId: message.id,
      timestamp: toMillis(message.timestamp) ?? Date.now(),
    });
  }
  if ((value.statuses ?? []).length > 0) {
    out.push({ kind: 'ignored', field: 'messages', reason: 'message delivery statuses' });
  }
  return out;
}

/**
 * For a call item without `direction`: whether the WhatsApp user is the callee (`to`), i.e. the call was placed by
 * the business. True when `from` is the business's own number or only the callee side carries a BSUID; a
 * BSUID-only user has no phone on either side (BSUID-F), and `contacts[]` then names them.
 */
function userIsCallee(
  call: { from?: string; from_user_id?: string; to_user_id?: string },
  line: BusinessLine,
): boolean {
  const from = present(call.from);
  if (from !== undefined) return digits(from) === line.businessNumber;
  return present(call.to_user_id) !== undefined && present(call.from_user_id) === undefined;
}

/**
 * Builds the user from the call's fields and the matching `contacts[]` entry (by wa_id or user_id).
 * An earlier BSUID revision sent `""` for the phone fields of username users where later ones omit
 * them (BSUID-old vs BSUID-F): `""` is read as absent everywhere, so such users never share a key.
 */
function userOf(value: Value, rawPhone?: string, rawUserId?: string, rawParentUserId?: string): WhatsAppUser {
  const phone = present(rawPhone);
  const userId = present(rawUserId);
  const contacts = value.contacts ?? [];
  const contact =
    contacts.find(
      (c) =>
        (phone !== undefined && present(c.wa_id) === phone) || (userId !== undefined && present(c.user_id) === userId),
    ) ?? (contacts.length === 1 ? contacts[0] : undefined);
  const p = phone ?? present(contact?.wa_id);
  const digitsOnly = p === undefined ? undefined : present(digits(p));
  return {
    ...optional('phone', digitsOnly),
    ...optional('userId', userId ?? present(contact?.user_id)),
    ...optional('parentUserId', present(rawParentUserId) ?? present(contact?.parent_user_id)),
    ...optional('name', present(contact?.profile?.name)),
    ...optional('username', present(contact?.profile?.username)),
  };
}

/** A Meta identifier, or undefined when absent or `""` (BSUID-old wrote `""` for "no value"). */
function present(v: string | undefined): string | undefined {
  const t = v?.trim();
  return t === undefined || t === '' ? undefined : t;
}

function parseDirection(direction: string | undefined): 'user-initiated' | 'business-initiated' | undefined {
  const d = direction?.toUpperCase();
  if (d === 'USER_INITIATED') return 'user-initiated';
  if (d === 'BUSINESS_INITIATED') return 'business-initiated';
  return undefined;
}

/** Meta sends Unix seconds as a string (newer docs) or a number (older docs); parse both. */
function toMillis(v: string | number | undefined): number | undefined {
  const n = toNumber(v);
  return n === undefined ? undefined : n * 1000;
}

function toNumber(v: string | number | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? n : undefined;
}

/** Meta writes numbers as digits; keep digits only (`+1 317-555` → `1317555`). Ids like `LB.946…` stay. */
function digits(s: string): string {
  return /^[+\d\s().-]+$/.test(s) ? s.replace(/\D/g, '') : s;
}

function optional<K extends string, V>(key: K, v: V | undefined): { [P in K]?: V } {
  return (v === undefined ? {} : { [key]: v }) as { [P in K]?: V };
}

function schemaError(error: z.ZodError, prefix = ''): WebhookPayloadError {
  const issue = error.issues[0];
  const path = [prefix, ...(issue?.path ?? []).map(String)].filter((p) => p !== '').join('.');
  return new WebhookPayloadError(
    `invalid webhook payload at ${path || '(root)'}: ${issue?.message ?? 'invalid'}`,
    path,
  );
}
