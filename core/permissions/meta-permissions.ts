/**
 * Meta adapter for permissions: `GET /{phone-number-id}/call_permissions` (meta-calling-api.md §3.3)
 * and permission-request messages, free-form interactive or template (§3.4). Every request has a
 * timeout; failures become {@link MetaApiError} with Meta's code, and the next allowed time of a
 * 138009/138012 answer when Meta sends one.
 */
import { MetaApiError } from '../errors.ts';
import { graphRequest } from '../meta/graph-client.ts';
import type { WhatsAppUser } from '../meta/webhook.ts';
import { UnknownUserError } from './service.ts';

/** Meta's view of a pair (§3.3), normalised to ms. */
export interface MetaPermissionView {
  readonly status: 'no_permission' | 'temporary' | 'permanent';
  /** Expiry of a temporary permission, ms. */
  readonly expiresAt?: number;
  /** Whether Meta would accept a permission request now, and when it would if not. */
  readonly canRequest: boolean;
  readonly requestBlockedUntil?: number;
  /** Whether Meta would accept a call now, and when it would if not (daily limit). */
  readonly canCall: boolean;
  readonly callBlockedUntil?: number;
}

/** A permission request as the control API accepts it. */
export type PermissionRequestMessage =
  | { readonly kind: 'interactive'; readonly body?: string }
  | {
      readonly kind: 'template';
      readonly name: string;
      readonly language: string;
      readonly components?: readonly Record<string, unknown>[];
    };

/** The Graph calls the permission endpoints need. */
export interface MetaPermissionsApi {
  getCallPermissions(phoneNumberId: string, user: WhatsAppUser): Promise<MetaPermissionView>;
  /** Sends the request; returns the message id (`wamid.…`). */
  sendPermissionRequest(phoneNumberId: string, user: WhatsAppUser, message: PermissionRequestMessage): Promise<string>;
}

/** A Graph error with the next allowed time Meta attached (`error_data.next_allowed_time`, seconds). */
export class MetaLimitError extends MetaApiError {
  override name = 'MetaLimitError';
  /** ms since the epoch. */
  readonly retryAt: number | undefined;

  constructor(
    message: string,
    options: { status: number; metaCode?: number; details?: string; retryAt?: number; cause?: unknown },
  ) {
    super(message, options);
    this.retryAt = options.retryAt;
  }
}

/** Settings of the client. */
export interface MetaPermissionsClientOptions {
  /** Base including the version, e.g. `https://graph.facebook.com/v23.0`. */
  readonly baseUrl: string;
  readonly accessToken: string;
  readonly timeoutMs: number;
}

type Limit = { time_period?: string; limit_expiration_time?: number | string };
type Action = { action_name?: string; can_perform_action?: boolean; limits?: Limit[] };

/** Graph client for the permission endpoints. */
export class MetaPermissionsClient implements MetaPermissionsApi {
  readonly #o: MetaPermissionsClientOptions;

  constructor(options: MetaPermissionsClientOptions) {
    this.#o = { ...options, baseUrl: options.baseUrl.replace(/\/+$/, '') };
  }

  /** `GET /{pnid}/call_permissions?user_wa_id=` (or `recipient=` for a BSUID-only user, 2026). */
  async getCallPermissions(phoneNumberId: string, user: WhatsAppUser): Promise<MetaPermissionView> {
    const who = recipientOf(user);
    const query = 'to' in who ? `user_wa_id=${who.to}` : `recipient=${encodeURIComponent(who.recipient)}`;
    const json = await this.#request('GET', `${encodeURIComponent(phoneNumberId)}/call_permissions?${query}`);
    const permission = (json.permission ?? {}) as { status?: string; expiration_time?: number | string };
    const status =
      permission.status === 'temporary' || permission.status === 'permanent' ? permission.status : 'no_permission';
    const actions = (json.actions ?? []) as Action[];
    const request = actions.find((a) => a.action_name === 'send_call_permission_request');
    const call = actions.find((a) => a.action_name === 'start_call');
    const requestBlockedUntil = latestExpiry(request);
    const callBlockedUntil = latestExpiry(call);
    const expiresAt = seconds(permission.expiration_time);
    return {
      status,
      ...(status === 'temporary' && expiresAt !== undefined ? { expiresAt } : {}),
      canRequest: request?.can_perform_action ?? true,
      ...(requestBlockedUntil === undefined ? {} : { requestBlockedUntil }),
      canCall: call?.can_perform_action ?? status !== 'no_permission',
      ...(callBlockedUntil === undefined ? {} : { callBlockedUntil }),
    };
  }

  /** `POST /{pnid}/messages` with an interactive `call_permission_request` or a template (§3.4). */
  async sendPermissionRequest(
    phoneNumberId: string,
    user: WhatsAppUser,
    message: PermissionRequestMessage,
  ): Promise<string> {
    const recipient = recipientOf(user);
    const content =
      message.kind === 'interactive'
        ? {
            type: 'interactive',
            interactive: {
              type: 'call_permission_request',
              action: { name: 'call_permission_request' },
              ...(message.body === undefined ? {} : { body: { text: message.body } }),
            },
          }
        : {
            type: 'template',
            template: {
              name: message.name,
              language: { code: message.language },
              ...(message.components === undefined ? {} : { components: message.components }),
            },
          };
    const json = await this.#request('POST', `${encodeURIComponent(phoneNumberId)}/messages`, {
      messaging_product: 'whatsapp',
      recipient_type: 'individual',
      ...recipient,
      ...content,
    });
    const id = (json.messages as Array<{ id?: unknown }> | undefined)?.[0]?.id;
    if (typeof id !== 'string')
      throw new MetaApiError('Graph messages answered without messages[0].id', { status: 200 });
    return id;
  }

  async #request(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Record<string, unknown>> {
    try {
      return await graphRequest(this.#o, method, path, body);
    } catch (error) {
      if (!(error instanceof MetaApiError) || error.status === 0) throw error;
      // Limit errors carry when the action is allowed again (§3.3: limit_expiration_time; 138009/138012).
      const data = error.errorData as
        | { next_allowed_time?: number | string; limit_expiration_time?: number | string }
        | undefined;
      const retryAt = seconds(data?.next_allowed_time ?? data?.limit_expiration_time);
      throw new MetaLimitError(error.message, {
        status: error.status,
        ...(error.metaCode === undefined ? {} : { metaCode: error.metaCode }),
        ...(error.details === undefined ? {} : { details: error.details }),
        ...(retryAt === undefined ? {} : { retryAt }),
        cause: error,
      });
    }
  }
}

/**
 * How a user is addressed in a Graph request: the phone (`to` / `user_wa_id`) when known, else the
 * BSUID (`recipient`). `""` counts as absent (an earlier BSUID revision sent it for "no phone"), so
 * no request ever carries `user_wa_id=` or `to: ""`.
 *
 * @throws {@link UnknownUserError} for a user with neither.
 */
export function recipientOf(user: WhatsAppUser): { to: string } | { recipient: string } {
  const phone = user.phone?.trim();
  if (phone) return { to: phone };
  const userId = user.userId?.trim();
  if (userId) return { recipient: userId };
  throw new UnknownUserError('a WhatsApp user needs a phone number or a BSUID to be addressed at Meta');
}

function latestExpiry(action: Action | undefined): number | undefined {
  const times = (action?.limits ?? [])
    .map((l) => seconds(l.limit_expiration_time))
    .filter((t): t is number => t !== undefined);
  return times.length === 0 ? undefined : Math.max(...times);
}

/** Meta writes Unix seconds as numbers or strings. */
function seconds(v: number | string | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n * 1000 : undefined;
}
