/**
 * Lambda: the control API (bearer `CONTROL_API_KEY`).
 *
 * - `POST /v1/calls` — a business-initiated call: the rules, then one job; 202 with a request id.
 * - `GET /v1/calls/{callId}` — a call by Meta's call id or by request id.
 * - `GET /v1/permissions/{userId}` — the permission ledger entry (reconciled with Meta when stale).
 * - `POST /v1/permissions/{userId}/request` — a call-permission request within Meta's limits.
 * - `GET /v1/workers` — the live media workers and whether their PBX answered OPTIONS.
 * - `GET /healthz`, `GET /openapi.json` — no key.
 *
 * Thin: authenticate, parse with the zod schemas, call the domain, map to HTTP. Every refusal is
 * `{ error: { reason, detail, retryAt? } }`.
 */
import middy from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import type { z } from 'zod';
import { JobQueueError } from '#core/errors.ts';
import type { WhatsAppUser } from '#core/meta/webhook.ts';
import { requestBusinessCall, resolveCall } from '#core/outbound/requests.ts';
import type { PermissionRequestMessage } from '#core/permissions/meta-permissions.ts';
import type { PermissionApiDeps } from '#core/permissions/requests.ts';
import { readPermission, sendPermissionRequest } from '#core/permissions/requests.ts';
import { loadControlPlaneConfigFromAws } from '../shared/config.ts';
import { header, json, rawBody, safeEqual } from '../shared/http.ts';
import { buildControlPlaneRuntime, type ControlPlaneRuntime } from '../shared/runtime.ts';
import { openApiDocument } from './openapi.ts';
import { createCallBody, permissionRequestBody, userRef } from './schemas.ts';

type Result = APIGatewayProxyStructuredResultV2;

/** Builds the control API handler on a runtime. */
export function createControlApiHandler(runtime: ControlPlaneRuntime) {
  const handle = async (event: APIGatewayProxyEventV2): Promise<Result> => {
    const method = event.requestContext?.http?.method ?? 'GET';
    const path = event.rawPath ?? '/';
    if (method === 'GET' && path === '/healthz') return health(runtime);
    if (method === 'GET' && (path === '/openapi.json' || path === '/v1/openapi.json')) {
      return json(200, openApiDocument());
    }
    if (!authorized(event, runtime)) {
      return {
        ...fail(401, 'unauthorized', 'missing or wrong bearer token'),
        headers: { 'content-type': 'application/json', 'www-authenticate': 'Bearer' },
      };
    }
    if (path === '/v1/calls') {
      if (method !== 'POST') return fail(405, 'method-not-allowed', `${method} is not allowed on ${path}`);
      return createCall(event, runtime);
    }
    if (path === '/v1/workers') {
      if (method !== 'GET') return fail(405, 'method-not-allowed', `${method} is not allowed on ${path}`);
      return listWorkers(runtime);
    }
    const call = /^\/v1\/calls\/([^/]+)$/.exec(path);
    if (call) {
      if (method !== 'GET') return fail(405, 'method-not-allowed', `${method} is not allowed on ${path}`);
      return getCall(decodeURIComponent(call[1]!), runtime);
    }
    const permission = /^\/v1\/permissions\/([^/]+)(\/request)?$/.exec(path);
    if (permission) {
      const user = userOf(decodeURIComponent(permission[1]!));
      if (!user) return fail(422, 'invalid-request', 'userId must be phone digits (E.164, optional +) or a BSUID');
      if (permission[2] === undefined && method === 'GET') return getPermission(event, user, runtime);
      if (permission[2] !== undefined && method === 'POST') return requestPermission(event, user, runtime);
      return fail(405, 'method-not-allowed', `${method} is not allowed on ${path}`);
    }
    return fail(404, 'no-route', `no route for ${method} ${path}`);
  };
  return middy<APIGatewayProxyEventV2, Result>().handler(handle);
}

async function createCall(event: APIGatewayProxyEventV2, runtime: ControlPlaneRuntime): Promise<Result> {
  const body = parseBody(event, createCallBody);
  if ('error' in body) return body.error;
  const idempotencyKey = header(event, 'idempotency-key');
  if (idempotencyKey !== undefined && !/^[\x21-\x7e]{1,128}$/.test(idempotencyKey)) {
    return fail(422, 'invalid-request', 'Idempotency-Key must be 1–128 printable ASCII characters');
  }
  const { config } = runtime;
  const line =
    body.data.from === undefined ||
    body.data.from === config.line.businessNumber ||
    body.data.from === config.line.phoneNumberId
      ? config.line
      : { phoneNumberId: body.data.from, businessNumber: body.data.from };
  try {
    const outcome = await requestBusinessCall(
      {
        line,
        user: userOf(body.data.to)!,
        mode: body.data.mode,
        ...(body.data.sipTarget === undefined ? {} : { sipTarget: body.data.sipTarget }),
        ...(body.data.callbackData === undefined ? {} : { callbackData: body.data.callbackData }),
        ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
      },
      {
        check: runtime.checkBusinessCall,
        calls: runtime.calls,
        jobs: runtime.jobs,
        maxConcurrentCalls: config.maxConcurrentCalls,
        finishedRetentionSeconds: config.finishedRetentionSeconds,
        now: runtime.now,
        logger: runtime.logger,
      },
    );
    if (!outcome.allowed) {
      runtime.logger.info('business-initiated call refused', { reason: outcome.reason });
      return fail(outcome.httpStatus, outcome.reason, outcome.detail, outcome.retryAt);
    }
    const accepted = json(202, {
      requestId: outcome.requestId,
      status: 'queued',
      permission: outcome.permission,
      ...(outcome.expiresAt === undefined ? {} : { expiresAt: outcome.expiresAt }),
    });
    return outcome.replayed
      ? { ...accepted, headers: { ...accepted.headers, 'idempotent-replayed': 'true' } }
      : accepted;
  } catch (error) {
    if (error instanceof JobQueueError) {
      runtime.logger.error('business call job not enqueued', { callId: error.callId, error: String(error.cause) });
      return fail(503, 'queue-unavailable', 'the call could not be queued; retry');
    }
    throw error;
  }
}

async function getCall(id: string, runtime: ControlPlaneRuntime): Promise<Result> {
  const found = await resolveCall(runtime.calls, id);
  if (!found) return fail(404, 'call-not-found', `no call or request ${id}`);
  const { sdpOffer: _sdp, leaseUntil: _lease, ...visible } = found.record;
  return json(200, {
    ...visible,
    ...(found.requestId === undefined ? {} : { requestId: found.requestId }),
    history: found.history,
  });
}

/** The workers whose last heartbeat is within the dead-after bound, by id; never their queues or calls. */
async function listWorkers(runtime: ControlPlaneRuntime): Promise<Result> {
  const liveSince = runtime.now() - runtime.config.workerDeadAfterMs;
  const workers = (await runtime.workers.list())
    .filter((w) => w.heartbeatAt >= liveSince)
    .sort((a, b) => a.workerId.localeCompare(b.workerId))
    .map((w) => ({
      workerId: w.workerId,
      activeCalls: w.activeCalls,
      maxCalls: w.maxCalls,
      draining: w.draining,
      ...(w.deployment === undefined ? {} : { deployment: w.deployment }),
      startedAt: w.startedAt,
      heartbeatAt: w.heartbeatAt,
      sipTargets: w.sipTargets ?? [],
    }));
  return json(200, { workers });
}

async function getPermission(
  event: APIGatewayProxyEventV2,
  user: WhatsAppUser,
  runtime: ControlPlaneRuntime,
): Promise<Result> {
  const refresh = event.queryStringParameters?.refresh === 'true';
  const view = await readPermission(runtime.config.line.phoneNumberId, user, { refresh }, permissionDeps(runtime));
  return json(200, view);
}

async function requestPermission(
  event: APIGatewayProxyEventV2,
  user: WhatsAppUser,
  runtime: ControlPlaneRuntime,
): Promise<Result> {
  const body = parseBody(event, permissionRequestBody);
  if ('error' in body) return body.error;
  const message = permissionMessage(body.data, runtime.config.permissionTemplate);
  if ('error' in message) return message.error;
  const outcome = await sendPermissionRequest(runtime.config.line, user, message.data, permissionDeps(runtime));
  if (!outcome.sent) return fail(outcome.httpStatus, outcome.reason, outcome.detail, outcome.retryAt);
  return json(201, { status: 'sent', messageId: outcome.messageId, permission: outcome.permission });
}

/** The request to send: a template without a name uses PERMISSION_REQUEST_TEMPLATE. */
function permissionMessage(
  body: z.output<typeof permissionRequestBody>,
  template: ControlPlaneRuntime['config']['permissionTemplate'],
): { data: PermissionRequestMessage } | { error: Result } {
  if (body.kind === 'interactive') return { data: body };
  const name = body.name ?? (body.language === undefined ? template?.name : undefined);
  const language = body.language ?? (body.name === undefined ? template?.language : undefined);
  if (name === undefined || language === undefined) {
    return {
      error: fail(
        422,
        'invalid-request',
        template === undefined
          ? 'name and language are required (no PERMISSION_REQUEST_TEMPLATE is configured)'
          : 'give both name and language, or neither to use PERMISSION_REQUEST_TEMPLATE',
      ),
    };
  }
  return {
    data: {
      kind: 'template',
      name,
      language,
      ...(body.components === undefined ? {} : { components: body.components }),
    },
  };
}

function permissionDeps(runtime: ControlPlaneRuntime): PermissionApiDeps {
  return {
    ...(runtime.config.permissionTemplate === undefined ? {} : { template: runtime.config.permissionTemplate }),
    permissions: runtime.permissions,
    meta: runtime.metaPermissions,
    limits: runtime.limits,
    now: runtime.now,
    blockedCountries: runtime.config.businessCalls.blockedCountries,
    reconcileAfterMs: runtime.config.businessCalls.reconcileAfterMs,
  };
}

/** A path or body user reference: phone digits (E.164, optional +) or a BSUID. */
function userOf(ref: string): WhatsAppUser | undefined {
  if (!userRef.safeParse(ref).success) return undefined;
  return /^\+?\d+$/.test(ref) ? { phone: ref.replace(/^\+/, '') } : { userId: ref };
}

function parseBody<T extends z.ZodType>(
  event: APIGatewayProxyEventV2,
  schema: T,
): { data: z.output<T> } | { error: Result } {
  let raw: unknown;
  try {
    raw = JSON.parse(rawBody(event).toString('utf8'));
  } catch {
    return { error: fail(400, 'invalid-request', 'body is not valid JSON') };
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return {
      error: fail(422, 'invalid-request', `${issue?.path.join('.') || '(body)'}: ${issue?.message ?? 'invalid'}`),
    };
  }
  return { data: parsed.data };
}

function fail(status: number, reason: string, detail: string, retryAt?: number): Result {
  return json(status, { error: { reason, detail, ...(retryAt === undefined ? {} : { retryAt }) } });
}

function authorized(event: APIGatewayProxyEventV2, runtime: ControlPlaneRuntime): boolean {
  const auth = header(event, 'authorization') ?? '';
  const match = /^Bearer\s+(.+)$/i.exec(auth);
  return match !== null && safeEqual(match[1]!.trim(), runtime.config.controlApiKey);
}

async function health(runtime: ControlPlaneRuntime): Promise<Result> {
  const started = runtime.now();
  try {
    const inUse = await runtime.calls.slotsInUse(runtime.config.line.phoneNumberId);
    return json(200, { status: 'ok', activeCalls: inUse, storeLatencyMs: runtime.now() - started });
  } catch (error) {
    runtime.logger.error('health check: store unreachable', { error: String(error) });
    return json(503, { status: 'degraded', store: 'unreachable' });
  }
}

/**
 * Lambda entry point. The handler is built once per cold start from the environment and SSM; a
 * failed cold start is not cached, so the next invocation retries it.
 */
let cold: Promise<ReturnType<typeof createControlApiHandler>> | undefined;

export const handler = async (event: APIGatewayProxyEventV2, context: Context) => {
  cold ??= loadControlPlaneConfigFromAws()
    .then((config) => createControlApiHandler(buildControlPlaneRuntime(config)))
    .catch((error: unknown) => {
      cold = undefined;
      throw error;
    });
  return (await cold)(event, context);
};
