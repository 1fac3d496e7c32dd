/**
 * Meta adapter: the Graph API calls the bridge makes (`POST /{phone-number-id}/calls`).
 * Every request has a timeout; failures become {@link MetaApiError} carrying Meta's error code.
 */

import type { MetaCallControl } from '../calls/call-record.ts';
import { MetaApiError } from '../errors.ts';
import type { CallOptIns } from './opt-ins.ts';

/** Settings of the Graph client. */
export interface GraphClientOptions {
  /** Base including the version, e.g. `https://graph.facebook.com/v23.0`. */
  readonly baseUrl: string;
  readonly accessToken: string;
  /** Per-request timeout. */
  readonly timeoutMs: number;
  /** Recording/transcription opt-ins sent on every `accept` and `connect` (M-REC); none by default. */
  readonly optIns?: CallOptIns;
}

/** Minimal Graph API client for call actions. */
export class MetaGraphClient implements MetaCallControl {
  readonly #options: GraphClientOptions;

  constructor(options: GraphClientOptions) {
    this.#options = { ...options, baseUrl: options.baseUrl.replace(/\/+$/, '') };
  }

  /** Rejects an offered user-initiated call (§3.2). */
  async reject(phoneNumberId: string, callId: string): Promise<void> {
    await this.callAction(phoneNumberId, { call_id: callId, action: 'reject' });
  }

  /**
   * Sends the SDP answer before the agent answers, so ICE and DTLS converge while the agent's phone
   * rings and no audio is clipped (§3.2, §5.2). The caller then sees "Ringing".
   */
  async preAccept(phoneNumberId: string, callId: string, sdpAnswer: string): Promise<void> {
    await this.callAction(phoneNumberId, {
      call_id: callId,
      action: 'pre_accept',
      session: { sdp_type: 'answer', sdp: sdpAnswer },
    });
  }

  /** Accepts the call. The SDP must equal the one sent with pre_accept (§3.2). */
  async accept(phoneNumberId: string, callId: string, sdpAnswer: string, callbackData?: string): Promise<void> {
    await this.callAction(phoneNumberId, {
      call_id: callId,
      action: 'accept',
      session: { sdp_type: 'answer', sdp: sdpAnswer },
      ...(callbackData === undefined ? {} : { biz_opaque_callback_data: callbackData }),
      ...this.#optIns(),
    });
  }

  /**
   * Places a business-initiated call with the bridge's SDP offer (§3.1). `to` is the user's phone
   * digits; for a user known only by BSUID pass `recipient` instead. Returns Meta's call id.
   */
  async connect(
    phoneNumberId: string,
    callee: { to?: string; recipient?: string },
    sdpOffer: string,
    callbackData?: string,
  ): Promise<string> {
    const response = await this.callAction(phoneNumberId, {
      ...(callee.to === undefined ? {} : { to: callee.to }),
      ...(callee.recipient === undefined || callee.to !== undefined ? {} : { recipient: callee.recipient }),
      action: 'connect',
      session: { sdp_type: 'offer', sdp: sdpOffer },
      ...(callbackData === undefined ? {} : { biz_opaque_callback_data: callbackData }),
      ...this.#optIns(),
    });
    const id = (response.calls as Array<{ id?: unknown }> | undefined)?.[0]?.id;
    if (typeof id !== 'string') throw new MetaApiError('Graph connect answered without calls[0].id', { status: 200 });
    return id;
  }

  /** The configured opt-ins as Meta takes them: `recording`/`transcription` objects on accept/connect (M-REC). */
  #optIns(): Record<string, unknown> {
    const o = this.#options.optIns;
    return {
      ...(o?.recording === undefined ? {} : { recording: o.recording }),
      ...(o?.transcription === undefined ? {} : { transcription: o.transcription }),
    };
  }

  /** Ends a call (§3.2: call it even after RTCP BYE, for billing). */
  async terminate(phoneNumberId: string, callId: string): Promise<void> {
    await this.callAction(phoneNumberId, { call_id: callId, action: 'terminate' });
  }

  /**
   * Sends a call action. `sdp_type` must be `answer` for pre_accept/accept: the docs' tables say
   * `offer`, and calls sent that way never connect (§3.2, whatsapp-api-js#522).
   */
  async callAction(phoneNumberId: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const callId = typeof body.call_id === 'string' ? body.call_id : undefined;
    return graphRequest(
      this.#options,
      'POST',
      `${encodeURIComponent(phoneNumberId)}/calls`,
      { messaging_product: 'whatsapp', ...body },
      {
        what: `Graph ${String(body.action)}`,
        ...opt(callId),
      },
    );
  }
}

/**
 * One Graph API request with a timeout. A 2xx answers the parsed JSON body; anything else throws
 * {@link MetaApiError} with Meta's code, details and `error_data` (§6: Graph error shape).
 */
export async function graphRequest(
  options: GraphClientOptions,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
  context: { what?: string; callId?: string } = {},
): Promise<Record<string, unknown>> {
  const what = context.what ?? `Graph ${method} ${path.split('?')[0]}`;
  let response: Response;
  try {
    response = await fetch(`${options.baseUrl.replace(/\/+$/, '')}/${path}`, {
      method,
      headers: {
        authorization: `Bearer ${options.accessToken}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(options.timeoutMs),
    });
  } catch (cause) {
    throw new MetaApiError(`${what} request failed`, { ...opt(context.callId), status: 0, cause });
  }
  const text = await response.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // a non-JSON body is reported below when the status is not 2xx
  }
  if (!response.ok) {
    const error = (json.error ?? {}) as {
      message?: string;
      code?: number;
      error_data?: Record<string, unknown> & { details?: string };
    };
    throw new MetaApiError(error.message ?? `${what} answered ${response.status}`, {
      ...opt(context.callId),
      status: response.status,
      ...(error.code === undefined ? {} : { metaCode: error.code }),
      ...(typeof error.error_data?.details === 'string' ? { details: error.error_data.details } : {}),
      ...(error.error_data === undefined ? {} : { errorData: error.error_data }),
    });
  }
  return json;
}

function opt(callId: string | undefined): { callId?: string } {
  return callId === undefined ? {} : { callId };
}
