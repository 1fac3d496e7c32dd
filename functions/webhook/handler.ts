/**
 * Lambda: Meta's webhook, `GET /webhook` (subscription handshake) and `POST /webhook` (events).
 *
 * The edge stays thin: verify the signature over the raw bytes before anything else, parse, hand
 * each event to the domain, map the outcome to HTTP. Meta retries anything but 200 and does not
 * promise order or uniqueness (meta-calling-api.md §2.4), so every domain step is idempotent and a
 * failure answers 500 to get the whole POST redelivered. A body that is not Meta's envelope answers
 * 400; one malformed item inside a batch is logged, counted (`WebhookItemsMalformed`) and skipped,
 * and the rest is processed and answered 200 — Meta batches many updates in one POST and redelivers
 * all of them on anything but 200, for days.
 */
import middy from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { handleCallOffered, handleCallTerminated, type IntakeDeps } from '#core/calls/intake.ts';
import { WebhookPayloadError } from '#core/errors.ts';
import { verifyMetaSignature } from '#core/meta/signature.ts';
import { type InboundEvent, parseWebhook } from '#core/meta/webhook.ts';
import { applyPermissionReply, recordTerminatedBusinessCall } from '#core/permissions/service.ts';
import { loadControlPlaneConfigFromAws } from '../shared/config.ts';
import { header, json, rawBody, safeEqual, text } from '../shared/http.ts';
import { buildControlPlaneRuntime, type ControlPlaneRuntime } from '../shared/runtime.ts';

type Handler = (event: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2>;

/** Builds the webhook handler on a runtime. The Lambda entry point and the local stack both use it. */
export function createWebhookHandler(runtime: ControlPlaneRuntime) {
  const handle: Handler = async (event) => {
    const method = event.requestContext?.http?.method ?? 'GET';
    if (method === 'GET') return handshake(event, runtime);
    if (method === 'POST') return receive(event, runtime);
    return json(405, { error: 'method not allowed' });
  };
  return middy<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2>().handler(handle);
}

/** Meta's verification request (§2.2): 200 with the raw challenge, 403 otherwise. */
function handshake(event: APIGatewayProxyEventV2, runtime: ControlPlaneRuntime): APIGatewayProxyStructuredResultV2 {
  const q = event.queryStringParameters ?? {};
  const token = q['hub.verify_token'];
  const challenge = q['hub.challenge'];
  if (q['hub.mode'] !== 'subscribe' || typeof token !== 'string' || typeof challenge !== 'string') {
    return text(400, 'expected hub.mode=subscribe with hub.verify_token and hub.challenge');
  }
  if (!safeEqual(token, runtime.config.meta.verifyToken)) return text(403, 'verify token mismatch');
  return text(200, challenge);
}

async function receive(
  event: APIGatewayProxyEventV2,
  runtime: ControlPlaneRuntime,
): Promise<APIGatewayProxyStructuredResultV2> {
  const body = rawBody(event);
  // Signature first: nothing is parsed, stored or enqueued for an unsigned body (§2.3).
  if (!verifyMetaSignature(body, header(event, 'x-hub-signature-256'), runtime.config.meta.appSecret)) {
    runtime.logger.warn('webhook signature rejected', { bytes: body.length });
    return json(401, { error: 'invalid or missing X-Hub-Signature-256' });
  }
  let events: InboundEvent[];
  try {
    events = parseWebhook(body.toString('utf8'));
  } catch (error) {
    if (error instanceof WebhookPayloadError) return json(400, { error: error.message, path: error.path });
    throw error;
  }
  const deps: IntakeDeps = runtime;
  const outcomes: unknown[] = [];
  try {
    for (const e of events) outcomes.push(await dispatch(e, deps, runtime));
  } catch (error) {
    runtime.logger.error('webhook processing failed; Meta will redeliver', { error: describe(error) });
    return json(500, { error: 'processing failed, retry' });
  }
  return json(200, { received: events.length, outcomes });
}

async function dispatch(e: InboundEvent, deps: IntakeDeps, runtime: ControlPlaneRuntime): Promise<unknown> {
  switch (e.kind) {
    case 'call-offered': {
      const outcome = await handleCallOffered(e, deps);
      if (outcome.result !== 'duplicate') runtime.metrics.emit({ CallsOffered: 1 });
      if (outcome.result === 'refused') runtime.metrics.emit({ CallsEnded: 1 }, { EndReason: outcome.reason });
      return { callId: e.callId, ...outcome };
    }
    case 'call-terminated': {
      const outcome = await handleCallTerminated(e, deps);
      // Counted once: only the invocation whose conditional write ended the call reports it.
      if (outcome.result !== 'already-ended') {
        runtime.metrics.emit({ CallsEnded: 1 }, { EndReason: outcome.reason });
        // Meta's codes on the terminate (M-TRB 138007, 138019–138023), once per call, per code.
        for (const error of e.errors) {
          runtime.logger.warn('Meta ended a call with an error', {
            callId: e.callId,
            metaCode: error.code,
            metaMessage: error.message,
            details: error.details,
            endReason: outcome.reason,
          });
          runtime.metrics.emit({ MetaCallErrors: 1 }, { MetaCode: String(error.code) });
        }
      }
      const ledger = await countBusinessCall(e, runtime);
      return { callId: e.callId, ...outcome, ...(ledger ? { ledger } : {}) };
    }
    case 'call-progress':
    case 'call-answer-received': {
      // Business-initiated calls: record the event (the SDP answer included, so a worker that
      // registers the call after Meta's webhook can catch up from the history), then hand it to
      // the worker that owns the call.
      await runtime.calls.appendHistory(e.callId, {
        at: runtime.now(),
        what: e.kind,
        detail: e.kind === 'call-progress' ? { status: e.status } : { sdpAnswer: e.sdpAnswer },
      });
      const call = await runtime.calls.get(e.callId);
      if (call?.owner) {
        await runtime.signals.notify(
          call.owner,
          e.kind === 'call-progress'
            ? { type: 'call-progress', callId: e.callId, status: e.status }
            : { type: 'call-answer-received', callId: e.callId, sdpAnswer: e.sdpAnswer },
        );
      }
      return { callId: e.callId, result: call?.owner ? 'signalled' : 'recorded' };
    }
    case 'permission-reply': {
      // Raw reply first (deduped on the message id), then the ledger. The ledger remembers the
      // message ids it applied, so a redelivery after a failure between the two writes still moves
      // it exactly once. An automatic accept with a `wacid.` context is the callback grant; an
      // automatic reject is Meta's revocation; a user's reject takes effect at once (§2.9).
      if (e.user.phone === undefined && e.user.userId === undefined) {
        runtime.logger.warn('permission reply without a user id ignored', { messageId: e.messageId });
        return { result: 'ignored', reason: 'permission reply names no user' };
      }
      const fresh = await runtime.permissionReplies.record(e, runtime.now());
      const { entry, changed } = await applyPermissionReply(e, runtime);
      return {
        result: fresh ? 'recorded' : 'duplicate',
        permission: entry.state,
        ledger: changed ? 'updated' : 'unchanged',
      };
    }
    case 'meta-errors':
      // An errors-only `calls` change (M-TRB: 131044 no payment method is sent this way): an alert,
      // not a call. Logged and counted per code so the dashboard shows it.
      for (const error of e.errors) {
        runtime.logger.warn('Meta reported a calling error', {
          phoneNumberId: e.line.phoneNumberId,
          metaCode: error.code,
          metaMessage: error.message,
          details: error.details,
        });
        runtime.metrics.emit({ MetaCallErrors: 1 }, { MetaCode: String(error.code) });
      }
      return { result: 'meta-errors', codes: e.errors.map((error) => error.code) };
    case 'voicemail-received': {
      // The caller's voicemail after Meta diverted the call: noted on the call's history (once per message;
      // Meta redelivers), found by the wacid.
      const call = await runtime.calls.get(e.callId);
      if (!call) {
        runtime.logger.warn('voicemail for an unknown call', { callId: e.callId, mediaId: e.mediaId });
        return { callId: e.callId, result: 'ignored', reason: 'voicemail for an unknown call' };
      }
      const seen = (await runtime.calls.history(e.callId)).some((h) => h.what === 'voicemail-received');
      if (!seen) {
        await runtime.calls.appendHistory(e.callId, {
          at: e.timestamp,
          what: 'voicemail-received',
          ...(e.mediaId === undefined ? {} : { detail: { mediaId: e.mediaId } }),
        });
      }
      runtime.logger.info('voicemail received', { callId: e.callId, mediaId: e.mediaId });
      return { callId: e.callId, result: seen ? 'duplicate' : 'recorded' };
    }
    case 'account-alert': {
      // Meta's calling quality warning or pause (§2.10, §4.6): an operator alert before the call button is
      // hidden or calling stops for 7 days. Logged and counted per type; the MetaAccountAlerts alarm notifies.
      const types =
        e.event === 'ACCOUNT_VIOLATION' ? [e.violationType ?? 'UNKNOWN'] : e.restrictions.map((r) => r.type);
      runtime.logger.error('Meta calling account alert', {
        event: e.event,
        phoneNumber: e.phoneNumber,
        ...(e.violationType === undefined ? {} : { violationType: e.violationType }),
        restrictions: e.restrictions.map((r) => ({
          type: r.type,
          ...(r.expiresAt === undefined ? {} : { expiresAt: new Date(r.expiresAt).toISOString() }),
        })),
      });
      // Once in all (the alarm's series: a CloudWatch alarm cannot SUM a SEARCH over the types) and once per type.
      runtime.metrics.emit({ MetaAccountAlerts: types.length });
      for (const type of types) runtime.metrics.emit({ MetaAccountAlerts: 1 }, { AlertType: type });
      return { result: 'account-alert', event: e.event, types };
    }
    case 'malformed':
      runtime.logger.warn('malformed webhook item skipped', { field: e.field, path: e.path, reason: e.reason });
      runtime.metrics.emit({ WebhookItemsMalformed: 1 });
      return { result: 'skipped', path: e.path, reason: e.reason };
    case 'ignored':
      runtime.logger.debug('webhook change ignored', { field: e.field, reason: e.reason });
      return { result: 'ignored', reason: e.reason };
  }
}

/**
 * A business-initiated call's terminate moves the permission ledger (connected / unanswered),
 * even when the bridge ended the call first and its worker no longer listens (a CANCEL while the
 * phone rang). Idempotent per call, so a redelivery or the worker's own report counts once.
 */
async function countBusinessCall(
  e: Extract<InboundEvent, { kind: 'call-terminated' }>,
  runtime: ControlPlaneRuntime,
): Promise<string | undefined> {
  const record = await runtime.calls.get(e.callId);
  if ((e.direction ?? record?.direction) !== 'business-initiated') return undefined;
  return recordTerminatedBusinessCall(
    {
      callId: e.callId,
      phoneNumberId: e.line.phoneNumberId,
      user: record?.user ?? e.user,
      answered: e.startTime !== undefined || e.durationSeconds !== undefined,
      errorCodes: e.errors.map((error) => error.code),
    },
    runtime,
  );
}

function describe(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { error: String(error) };
  const context = error as Error & { callId?: string; cause?: unknown };
  return {
    name: error.name,
    message: error.message,
    callId: context.callId,
    cause: context.cause instanceof Error ? context.cause.message : undefined,
  };
}

/**
 * Lambda entry point. The handler is built once per cold start from the environment and SSM; a
 * failed cold start is not cached, so the next invocation retries it.
 */
let cold: Promise<ReturnType<typeof createWebhookHandler>> | undefined;

export const handler = async (event: APIGatewayProxyEventV2, context: Context) => {
  cold ??= loadControlPlaneConfigFromAws()
    .then((config) => createWebhookHandler(buildControlPlaneRuntime(config)))
    .catch((error: unknown) => {
      cold = undefined;
      throw error;
    });
  return (await cold)(event, context);
};
