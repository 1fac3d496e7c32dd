/**
 * The control API's OpenAPI 3.1 document, generated from the zod schemas the handler validates
 * with (`schemas.ts`). Served at `GET /openapi.json` (and `/v1/openapi.json`), without a key.
 */
import { z } from 'zod';
import {
  callQueued,
  callView,
  createCallBody,
  errorBody,
  healthDegraded,
  healthOk,
  permissionRequestBody,
  permissionRequestSent,
  permissionSummary,
  permissionView,
  workersList,
} from './schemas.ts';

type JsonSchema = Record<string, unknown>;

const COMPONENTS: Record<string, { schema: z.ZodType; io: 'input' | 'output' }> = {
  CreateCall: { schema: createCallBody, io: 'input' },
  PermissionRequest: { schema: permissionRequestBody, io: 'input' },
  Error: { schema: errorBody, io: 'output' },
  CallQueued: { schema: callQueued, io: 'output' },
  Call: { schema: callView, io: 'output' },
  PermissionSummary: { schema: permissionSummary, io: 'output' },
  Permission: { schema: permissionView, io: 'output' },
  PermissionRequestSent: { schema: permissionRequestSent, io: 'output' },
  Health: { schema: healthOk, io: 'output' },
  HealthDegraded: { schema: healthDegraded, io: 'output' },
  Workers: { schema: workersList, io: 'output' },
};

const ref = (name: keyof typeof COMPONENTS) => ({ $ref: `#/components/schemas/${name}` });
const jsonBody = (name: keyof typeof COMPONENTS, description: string) => ({
  description,
  content: { 'application/json': { schema: ref(name) } },
});
const error = (description: string) => jsonBody('Error', description);
const unauthorized = error('Missing or wrong bearer token (reason `unauthorized`).');
const userIdParam = {
  name: 'userId',
  in: 'path',
  required: true,
  description: 'The WhatsApp user: phone digits (E.164, optional +) or a BSUID.',
  schema: { type: 'string' },
};

let cached: JsonSchema | undefined;

/** The OpenAPI 3.1 document of the whole control API. */
export function openApiDocument(): JsonSchema {
  cached ??= build();
  return cached;
}

function build(): JsonSchema {
  const schemas: Record<string, JsonSchema> = {};
  for (const [name, { schema, io }] of Object.entries(COMPONENTS)) {
    const { $schema: _s, ...json } = z.toJSONSchema(schema, { io, target: 'draft-2020-12' }) as JsonSchema;
    schemas[name] = json;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'wa-sip-bridge control API',
      version: '1',
      description:
        'Business-initiated WhatsApp calls, call-permission ledger, call records. Every refusal is a 4xx with `{ error: { reason, detail, retryAt? } }`; `reason` is stable.',
    },
    security: [{ bearer: [] }],
    paths: {
      '/healthz': {
        get: {
          operationId: 'health',
          security: [],
          summary: 'Whether the store answers.',
          responses: {
            '200': jsonBody('Health', 'Healthy.'),
            '503': jsonBody('HealthDegraded', 'The store is unreachable.'),
          },
        },
      },
      '/openapi.json': {
        get: {
          operationId: 'openapi',
          security: [],
          summary: 'This document.',
          responses: {
            '200': { description: 'OpenAPI 3.1', content: { 'application/json': { schema: { type: 'object' } } } },
          },
        },
      },
      '/v1/calls': {
        post: {
          operationId: 'createCall',
          summary: 'Place a business-initiated call (checked against the rules, then queued for a media worker).',
          parameters: [
            {
              name: 'Idempotency-Key',
              in: 'header',
              required: false,
              description:
                'Retries with the same key get the first answer (with `Idempotent-Replayed: true`) instead of a second call.',
              schema: { type: 'string', minLength: 1, maxLength: 128 },
            },
          ],
          requestBody: { required: true, content: { 'application/json': { schema: ref('CreateCall') } } },
          responses: {
            '202': jsonBody('CallQueued', 'Queued; the Meta call id exists once a worker has placed the call.'),
            '400': error('Body is not JSON (`invalid-request`).'),
            '401': unauthorized,
            '403': error('`no-permission`, `permission-expired`, `permission-revoked`, `sanctioned-user`.'),
            '404': error('`unknown-user`, `number-not-configured`.'),
            '422': error('`invalid-request`, `business-country-blocked`, `sanctioned-business`.'),
            '429': error('`daily-limit` (with `retryAt`), `over-capacity`.'),
          },
        },
      },
      '/v1/calls/{callId}': {
        get: {
          operationId: 'getCall',
          summary: "A call by Meta's call id (wacid.…) or by the request id POST /v1/calls answered (bcr.…).",
          parameters: [{ name: 'callId', in: 'path', required: true, schema: { type: 'string' } }],
          responses: {
            '200': jsonBody('Call', 'The call record and its history.'),
            '401': unauthorized,
            '404': error('`call-not-found`.'),
          },
        },
      },
      '/v1/workers': {
        get: {
          operationId: 'listWorkers',
          summary:
            'The live media workers (heartbeat within WORKER_DEAD_AFTER_SECONDS): load, drain state, deployment, and the last SIP OPTIONS check of each SIP target.',
          responses: {
            '200': jsonBody('Workers', 'The live workers, by id.'),
            '401': unauthorized,
          },
        },
      },
      '/v1/permissions/{userId}': {
        get: {
          operationId: 'getPermission',
          summary: "The permission ledger entry of the user, reconciled with Meta's call_permissions when stale.",
          parameters: [
            userIdParam,
            {
              name: 'refresh',
              in: 'query',
              required: false,
              description: 'true: reconcile with Meta now.',
              schema: { type: 'string', enum: ['true', 'false'] },
            },
          ],
          responses: {
            '200': jsonBody('Permission', 'The entry (state `none` if never seen).'),
            '401': unauthorized,
            '422': error('`invalid-request`.'),
          },
        },
      },
      '/v1/permissions/{userId}/request': {
        post: {
          operationId: 'requestPermission',
          summary: "Send a call-permission request (interactive or template), within Meta's limits.",
          parameters: [userIdParam],
          requestBody: { required: true, content: { 'application/json': { schema: ref('PermissionRequest') } } },
          responses: {
            '201': jsonBody('PermissionRequestSent', 'Sent; the user answers with a call_permission_reply webhook.'),
            '400': error('Body is not JSON (`invalid-request`).'),
            '401': unauthorized,
            '403': error('`sanctioned-user`.'),
            '409': error(
              "`permission-exists`: the user granted permanent permission. `service-window-closed`: a free-form (interactive) request outside the user's 24 h customer-service window (Meta 131047); use a template (PERMISSION_REQUEST_TEMPLATE).",
            ),
            '422': error(
              '`invalid-request`, `business-country-blocked`, `invalid-template` (Meta 132001: no such approved template and language; 132000: body parameters do not match the template).',
            ),
            '429': error('`request-limit`: 1 per 24 h, 2 per 7 days; `retryAt` says when the next is allowed.'),
            '502': error('`meta-error`.'),
          },
        },
      },
    },
    components: {
      schemas,
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'CONTROL_API_KEY' } },
    },
  };
}
