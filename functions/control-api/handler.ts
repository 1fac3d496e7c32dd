/**
 * Lambda: the control API. `GET /v1/calls/{callId}` (bearer `CONTROL_API_KEY`) returns a call
 * record; `GET /healthz` reports whether the store answers.
 */
import middy from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { loadControlPlaneConfig } from '../shared/config.ts';
import { header, json, safeEqual } from '../shared/http.ts';
import { buildControlPlaneRuntime, type ControlPlaneRuntime } from '../shared/runtime.ts';

/** Builds the control API handler on a runtime. */
export function createControlApiHandler(runtime: ControlPlaneRuntime) {
  const handle = async (event: APIGatewayProxyEventV2): Promise<APIGatewayProxyStructuredResultV2> => {
    const method = event.requestContext?.http?.method ?? 'GET';
    const path = event.rawPath ?? '/';
    if (method === 'GET' && path === '/healthz') return health(runtime);
    if (!authorized(event, runtime)) {
      return {
        ...json(401, { error: 'missing or wrong bearer token' }),
        headers: { 'content-type': 'application/json', 'www-authenticate': 'Bearer' },
      };
    }
    const call = /^\/v1\/calls\/([^/]+)$/.exec(path);
    if (call) {
      if (method !== 'GET') return json(405, { error: 'method not allowed' });
      return getCall(decodeURIComponent(call[1]!), runtime);
    }
    return json(404, { error: `no route for ${method} ${path}` });
  };
  return middy<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2>().handler(handle);
}

function authorized(event: APIGatewayProxyEventV2, runtime: ControlPlaneRuntime): boolean {
  const auth = header(event, 'authorization') ?? '';
  const match = /^Bearer\s+(.+)$/i.exec(auth);
  return match !== null && safeEqual(match[1]!.trim(), runtime.config.controlApiKey);
}

async function getCall(callId: string, runtime: ControlPlaneRuntime): Promise<APIGatewayProxyStructuredResultV2> {
  const record = await runtime.calls.get(callId);
  if (!record) return json(404, { error: 'call not found', callId });
  const { sdpOffer: _sdp, leaseUntil: _lease, ...visible } = record;
  const history = await runtime.calls.history(callId);
  return json(200, { ...visible, history });
}

async function health(runtime: ControlPlaneRuntime): Promise<APIGatewayProxyStructuredResultV2> {
  const started = runtime.now();
  try {
    const inUse = await runtime.calls.slotsInUse(runtime.config.line.phoneNumberId);
    return json(200, { status: 'ok', activeCalls: inUse, storeLatencyMs: runtime.now() - started });
  } catch (error) {
    runtime.logger.error('health check: store unreachable', { error: String(error) });
    return json(503, { status: 'degraded', store: 'unreachable' });
  }
}

let cold: ReturnType<typeof createControlApiHandler> | undefined;

/** Lambda entry point. */
export const handler = (event: APIGatewayProxyEventV2, context: Context) => {
  cold ??= createControlApiHandler(buildControlPlaneRuntime(loadControlPlaneConfig()));
  return cold(event, context);
};
