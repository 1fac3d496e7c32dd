/**
 * What the control API's permission endpoints do: read a pair's ledger entry (reconciled with
 * Meta's `call_permissions` when stale, §3.3) and send a permission request, enforcing Meta's
 * limits before calling Meta (1 per 24 h, 2 per 7 days, reset by a connected call; none when a
 * permanent permission exists: 138017) — §3.4, §4.1.
 */
import { checkSanctions, type SanctionsLists } from '../checks/sanctions.ts';
import { MetaApiError } from '../errors.ts';
import type { WhatsAppUser } from '../meta/webhook.ts';
import { blockedCountryOf } from '../outbound/rules.ts';
import {
  connectedCallsInWindow,
  effectivePermission,
  emptyEntry,
  META_PERMISSION_LIMITS,
  nextRequestAllowedAt,
  type PermissionEntry,
  type PermissionHistoryEntry,
} from './ledger.ts';
import { MetaLimitError, type MetaPermissionsApi, type PermissionRequestMessage } from './meta-permissions.ts';
import { findPermission, type LedgerDeps, updatePermission } from './service.ts';

const DAY_MS = 86_400_000;

/** Why a permission request was not sent. */
export type PermissionRequestRefusalReason =
  | 'request-limit'
  | 'permission-exists'
  | 'business-country-blocked'
  | 'sanctioned-user'
  | 'service-window-closed'
  | 'invalid-template'
  | 'meta-error';

/** A refused permission request. */
export interface PermissionRequestRefusal {
  readonly sent: false;
  readonly reason: PermissionRequestRefusalReason;
  readonly detail: string;
  readonly httpStatus: number;
  /** When a request is allowed again, ms (request limit). */
  readonly retryAt?: number;
}

/** Collaborators of the permission endpoints. */
export interface PermissionApiDeps extends LedgerDeps {
  readonly meta: MetaPermissionsApi;
  readonly blockedCountries: readonly string[];
  readonly sanctions?: SanctionsLists;
  /** Reconcile with Meta when the entry was compared longer ago than this. */
  readonly reconcileAfterMs: number;
  /**
   * The approved permission-request template (setting `PERMISSION_REQUEST_TEMPLATE`), named when Meta refuses a
   * free-form request outside the customer-service window.
   */
  readonly template?: { readonly name: string; readonly language: string };
}

/** Meta's re-engagement error: a free-form message outside the 24 h customer-service window (PERM26, BTN26). */
export const META_WINDOW_CLOSED = 131047;

/** The ledger entry as the API shows it. */
export interface PermissionView {
  readonly phoneNumberId: string;
  readonly userKey: string;
  readonly user: WhatsAppUser;
  readonly state: PermissionEntry['state'];
  /** The state at this moment: a lapsed temporary permission reads `expired`. */
  readonly effectiveState: PermissionEntry['state'] | 'expired';
  readonly expiresAt?: number;
  readonly source?: string;
  readonly stateSince: number;
  /** A call may rest on this permission now (valid and under the daily limit). */
  readonly callable: boolean;
  readonly requests: { readonly last24h: number; readonly last7d: number; readonly nextAllowedAt?: number };
  readonly connectedCalls: { readonly last24h: number; readonly nextAllowedAt?: number };
  readonly consecutiveUnanswered: number;
  readonly reconciledAt?: number;
  readonly updatedAt: number;
  readonly history: readonly PermissionHistoryEntry[];
  /** Why reconciling with Meta failed this time (the stored entry is shown). */
  readonly reconcileError?: string;
}

/**
 * A pair's entry, reconciled with Meta when it was never compared, is older than
 * `reconcileAfterMs`, or `refresh` is set. A Meta failure is reported in `reconcileError`.
 */
export async function readPermission(
  phoneNumberId: string,
  user: WhatsAppUser,
  options: { refresh: boolean },
  deps: PermissionApiDeps,
): Promise<PermissionView> {
  const found = await findPermission(deps.permissions, phoneNumberId, user);
  let entry = found.entry;
  let key = found.key;
  const now = deps.now();
  let reconcileError: string | undefined;
  if (options.refresh || entry?.reconciledAt === undefined || now - entry.reconciledAt >= deps.reconcileAfterMs) {
    try {
      const meta = await deps.meta.getCallPermissions(phoneNumberId, user);
      entry = (
        await updatePermission(
          phoneNumberId,
          user,
          {
            type: 'reconcile',
            at: now,
            status: meta.status,
            ...(meta.expiresAt === undefined ? {} : { expiresAt: meta.expiresAt }),
          },
          deps,
        )
      ).entry;
      key = entry.userKey;
    } catch (error) {
      if (!(error instanceof MetaApiError)) throw error;
      reconcileError = `${error.status} ${error.metaCode ?? ''} ${error.message}`.replace(/\s+/g, ' ');
    }
  }
  const shown = entry ?? emptyEntry(phoneNumberId, key, user, now);
  return {
    ...view(shown, now, deps),
    history: await deps.permissions.history(phoneNumberId, key),
    ...(reconcileError === undefined ? {} : { reconcileError }),
  };
}

/** The API view of an entry at `now` (without history). */
export function view(
  entry: PermissionEntry,
  now: number,
  deps: Pick<LedgerDeps, 'limits'>,
): Omit<PermissionView, 'history'> {
  const limits = deps.limits ?? META_PERMISSION_LIMITS;
  const permission = effectivePermission(entry, now);
  const calls = connectedCallsInWindow(entry, now, limits);
  const nextRequest = nextRequestAllowedAt(entry, now, limits);
  return {
    phoneNumberId: entry.phoneNumberId,
    userKey: entry.userKey,
    user: entry.user,
    state: entry.state,
    effectiveState: permission.state,
    ...(entry.expiresAt === undefined ? {} : { expiresAt: entry.expiresAt }),
    ...(entry.source === undefined ? {} : { source: entry.source }),
    stateSince: entry.stateSince,
    callable:
      (permission.state === 'temporary' || permission.state === 'permanent') && calls.nextAllowedAt === undefined,
    requests: {
      last24h: entry.requests.filter((t) => now - t < DAY_MS).length,
      last7d: entry.requests.filter((t) => now - t < 7 * DAY_MS).length,
      ...(nextRequest === undefined ? {} : { nextAllowedAt: nextRequest }),
    },
    connectedCalls: {
      last24h: calls.count,
      ...(calls.nextAllowedAt === undefined ? {} : { nextAllowedAt: calls.nextAllowedAt }),
    },
    consecutiveUnanswered: entry.consecutiveUnanswered,
    ...(entry.reconciledAt === undefined ? {} : { reconciledAt: entry.reconciledAt }),
    updatedAt: entry.updatedAt,
  };
}

/**
 * Sends a permission request if Meta's rules allow one now, and records it in the ledger.
 * Meta's own refusals map to the same answers (138009 → 429 with Meta's next allowed time,
 * 138017 → 409, 138013 → 422); anything else from Meta → 502.
 */
export async function sendPermissionRequest(
  line: { readonly phoneNumberId: string; readonly businessNumber: string },
  user: WhatsAppUser,
  message: PermissionRequestMessage,
  deps: PermissionApiDeps,
): Promise<{ sent: true; messageId: string; permission: Omit<PermissionView, 'history'> } | PermissionRequestRefusal> {
  // Permission requests are unavailable where business-initiated calls are (§4.4).
  const blocked = blockedCountryOf(line.businessNumber, deps.blockedCountries);
  if (blocked) {
    return refused(
      'business-country-blocked',
      422,
      `Meta does not offer call permission requests from business numbers in ${blocked}`,
    );
  }
  const sanctioned = checkSanctions(user, deps.sanctions);
  if (sanctioned.sanctioned) {
    return refused(
      'sanctioned-user',
      403,
      `the user is in ${sanctioned.region ?? sanctioned.country}, where Meta offers no service`,
    );
  }
  const now = deps.now();
  const { entry } = await findPermission(deps.permissions, line.phoneNumberId, user);
  if (entry && effectivePermission(entry, now).state === 'permanent') {
    return refused(
      'permission-exists',
      409,
      'the user has granted permanent permission; no request is needed (Meta 138017)',
    );
  }
  const nextAllowedAt = entry ? nextRequestAllowedAt(entry, now, deps.limits ?? META_PERMISSION_LIMITS) : undefined;
  if (nextAllowedAt !== undefined) {
    return refused(
      'request-limit',
      429,
      `Meta allows 1 permission request per 24 h and 2 per 7 days; the next is allowed at ${new Date(nextAllowedAt).toISOString()} (or after any connected call)`,
      nextAllowedAt,
    );
  }
  let messageId: string;
  try {
    messageId = await deps.meta.sendPermissionRequest(line.phoneNumberId, user, message);
  } catch (error) {
    if (!(error instanceof MetaApiError)) throw error;
    if (error.metaCode === 138009) {
      const retryAt = error instanceof MetaLimitError ? error.retryAt : undefined;
      return refused('request-limit', 429, `Meta refused: ${error.details ?? error.message}`, retryAt);
    }
    if (error.metaCode === 138017) {
      await updatePermission(line.phoneNumberId, user, { type: 'reconcile', at: now, status: 'permanent' }, deps);
      return refused('permission-exists', 409, 'Meta says the user has granted permanent permission (138017)');
    }
    if (error.metaCode === 138013) return refused('business-country-blocked', 422, `Meta refused: ${error.message}`);
    // PERM26: a free-form request needs an open customer-service window (24 h since the user's last message or
    // call); outside it only a template can ask. Not a Meta failure: the caller must use a template.
    if (error.metaCode === META_WINDOW_CLOSED) return refused('service-window-closed', 409, windowClosedDetail(deps));
    // Cloud API template errors: 132001 no such template/language on the WABA, 132000 parameter count mismatch.
    if (error.metaCode === 132000 || error.metaCode === 132001) {
      return refused(
        'invalid-template',
        422,
        `Meta refused the template (${error.metaCode}): ${error.details ?? error.message}`,
      );
    }
    return refused(
      'meta-error',
      502,
      `Meta refused the request: ${error.status} ${error.metaCode ?? ''} ${error.message}`,
    );
  }
  const updated = await updatePermission(
    line.phoneNumberId,
    user,
    { type: 'request-sent', at: now, id: messageId, kind: message.kind },
    deps,
  );
  return { sent: true, messageId, permission: view(updated.entry, now, deps) };
}

function windowClosedDetail(deps: Pick<PermissionApiDeps, 'template'>): string {
  const why =
    "the user's customer-service window is closed (Meta 131047: a free-form permission request needs a message or call from the user in the last 24 h)";
  return deps.template === undefined
    ? `${why}; use a template: {"kind":"template","name","language"} naming an approved template with a call_permission_request component, or set PERMISSION_REQUEST_TEMPLATE`
    : `${why}; use a template: {"kind":"template"} sends PERMISSION_REQUEST_TEMPLATE (${deps.template.name}, ${deps.template.language})`;
}

function refused(
  reason: PermissionRequestRefusalReason,
  httpStatus: number,
  detail: string,
  retryAt?: number,
): PermissionRequestRefusal {
  return { sent: false, reason, detail, httpStatus, ...(retryAt === undefined ? {} : { retryAt }) };
}
