/**
 * Request and response schemas of the control API. Requests are validated with them; the OpenAPI
 * document (`openapi.ts`) is generated from them, and the tests check real responses against that
 * document, so code, validation and documentation cannot drift apart.
 */
import { z } from 'zod';
import { PERMISSION_STATES } from '#core/permissions/ledger.ts';

/** A WhatsApp user in a path or body: phone digits (optional `+`) or a BSUID (`US.1349…`). */
export const userRef = z
  .string()
  .regex(
    /^(\+?\d{6,15}|[A-Z]{2}\.[A-Za-z0-9]{4,64})$/,
    'phone digits (E.164, optional +) or a BSUID like US.13491208655302741918',
  );

/** `POST /v1/calls`. */
export const createCallBody = z.strictObject({
  to: userRef.describe('The WhatsApp user: phone digits (E.164, optional +) or a BSUID.'),
  from: z
    .string()
    .regex(/^\d{6,20}$/, 'business number digits or phone number id')
    .optional()
    .describe("The business number (digits) or its Meta phone number id. Default: the deployment's number."),
  sipTarget: z
    .string()
    .regex(/^sips?:\S+$/, 'a sip: or sips: URI')
    .max(512)
    .optional()
    .describe("SIP URI of the agent leg. Default: the worker's SIP target."),
  mode: z
    .enum(['customer-first', 'agent-first'])
    .default('customer-first')
    .describe('customer-first: ring the WhatsApp user, then the agent; agent-first: the agent, then the user.'),
  callbackData: z
    .string()
    .max(512)
    .optional()
    .describe('Opaque data Meta echoes in webhooks (biz_opaque_callback_data, at most 512 characters).'),
});

/** `POST /v1/permissions/{userId}/request`. */
export const permissionRequestBody = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('interactive'),
    body: z.string().min(1).max(1024).optional().describe('Body text of the free-form request (24 h window only).'),
  }),
  z.strictObject({
    kind: z.literal('template'),
    name: z
      .string()
      .min(1)
      .max(512)
      .optional()
      .describe(
        'An approved template with a call_permission_request component. Omitted: PERMISSION_REQUEST_TEMPLATE (with language).',
      ),
    language: z.string().min(2).max(15).optional().describe('Template language code, e.g. en or en_US.'),
    components: z
      .array(z.looseObject({ type: z.string() }))
      .optional()
      .describe('Template parameters, as Meta takes them.'),
  }),
]);

const epochMs = z.number().int().describe('ms since the epoch');

/** Every 4xx/5xx body. */
export const errorBody = z.strictObject({
  error: z.strictObject({
    reason: z.string().describe('Machine-readable reason, e.g. no-permission, daily-limit, request-limit.'),
    detail: z.string(),
    retryAt: epochMs.optional().describe('When the refused action becomes possible again.'),
  }),
});

/** 202 of `POST /v1/calls`. */
export const callQueued = z.strictObject({
  requestId: z.string().describe('Use with GET /v1/calls/{callId}; resolves to the Meta call once placed.'),
  status: z.literal('queued'),
  permission: z.enum(['temporary', 'permanent']),
  expiresAt: epochMs.optional(),
});

const historyLine = z.looseObject({
  at: epochMs,
  what: z.string(),
  detail: z.record(z.string(), z.unknown()).optional(),
});

/** 200 of `GET /v1/calls/{callId}` (open: the record gains fields as the call goes). */
export const callView = z.looseObject({
  callId: z.string(),
  requestId: z.string().optional(),
  direction: z.enum(['user-initiated', 'business-initiated']),
  state: z.enum(['admitting', 'queued', 'claimed', 'pre-accepted', 'ringing', 'answered', 'ended']),
  version: z.number().int(),
  line: z.looseObject({ phoneNumberId: z.string(), businessNumber: z.string(), accountId: z.string() }),
  user: z.looseObject({ phone: z.string().optional(), userId: z.string().optional() }),
  createdAt: epochMs,
  updatedAt: epochMs,
  endReason: z.string().optional(),
  metaCallId: z.string().optional(),
  history: z.array(historyLine),
});

const permissionCore = {
  phoneNumberId: z.string(),
  userKey: z.string(),
  user: z.looseObject({ phone: z.string().optional(), userId: z.string().optional() }),
  state: z.enum(PERMISSION_STATES),
  effectiveState: z.enum([...PERMISSION_STATES, 'expired']),
  expiresAt: epochMs.optional(),
  source: z.enum(['user-action', 'automatic', 'callback-grant', 'reconcile', 'bridge']).optional(),
  stateSince: epochMs,
  callable: z.boolean().describe('A business-initiated call may rest on this permission now.'),
  requests: z.strictObject({ last24h: z.number().int(), last7d: z.number().int(), nextAllowedAt: epochMs.optional() }),
  connectedCalls: z.strictObject({ last24h: z.number().int(), nextAllowedAt: epochMs.optional() }),
  consecutiveUnanswered: z.number().int(),
  reconciledAt: epochMs.optional(),
  updatedAt: epochMs,
};

/** Permission view without history (inside other answers). */
export const permissionSummary = z.strictObject(permissionCore);

/** 200 of `GET /v1/permissions/{userId}`. */
export const permissionView = z.strictObject({
  ...permissionCore,
  history: z.array(
    z.strictObject({
      at: epochMs,
      event: z.string(),
      from: z.enum(PERMISSION_STATES),
      to: z.enum(PERMISSION_STATES),
      detail: z.record(z.string(), z.unknown()).optional(),
    }),
  ),
  reconcileError: z.string().optional().describe("Why Meta's call_permissions could not be read this time."),
});

/** 201 of `POST /v1/permissions/{userId}/request`. */
export const permissionRequestSent = z.strictObject({
  status: z.literal('sent'),
  messageId: z.string(),
  permission: permissionSummary,
});

/** `GET /healthz`. */
export const healthOk = z.strictObject({
  status: z.literal('ok'),
  activeCalls: z.number().int(),
  storeLatencyMs: z.number(),
});
export const healthDegraded = z.strictObject({ status: z.literal('degraded'), store: z.literal('unreachable') });

/** The last SIP OPTIONS check of one target by a worker. */
export const sipTargetHealth = z.strictObject({
  uri: z.string().describe('The target, without any password.'),
  status: z.number().int().optional().describe('Final response to OPTIONS; any final response means reachable.'),
  rttMs: z.number().optional().describe('Round trip of the OPTIONS.'),
  error: z.string().optional().describe('Why no response came: `timeout` or the transport failure.'),
  checkedAt: epochMs,
});
/** A live media worker. */
export const workerView = z.strictObject({
  workerId: z.string(),
  activeCalls: z.number().int(),
  maxCalls: z.number().int(),
  draining: z.boolean(),
  deployment: z.string().optional().describe('Task definition `family:revision`, in ECS.'),
  startedAt: epochMs,
  heartbeatAt: epochMs,
  sipTargets: z.array(sipTargetHealth).describe('Empty until the first check.'),
});
export const workersList = z.strictObject({ workers: z.array(workerView) });
