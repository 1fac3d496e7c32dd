/**
 * The rules checked before every business-initiated call, for the control API (`POST /v1/calls`)
 * and for calls a PBX starts with an INVITE (the media worker). See `contract.ts`.
 *
 * In order: the user is identifiable; the business number is served here; its country is not one
 * where Meta blocks business-initiated calls (§4.4); neither side is in a sanctioned country or
 * region (§4.4); a valid permission, checked against the clock at use (§4.1, no webhook is sent when
 * a temporary one lapses, §2.9); at most 100 connected calls per pair per rolling 24 h (§4.1);
 * the per-number concurrency cap (§4.2). Four unanswered calls in a row revoke the permission
 * in the ledger (`recordUnansweredCall`), so that rule shows here as `permission-revoked`.
 *
 * The check reads only; it takes no concurrency slot. Whoever creates the call record takes the
 * slot with `CallStore.acquireSlot` (the control API does so for the request record it writes).
 */
import { getCountries, getCountryCallingCode, parsePhoneNumberFromString } from 'libphonenumber-js/max';
import type { CallStore } from '../calls/call-record.ts';
import { checkSanctions, type SanctionsLists } from '../checks/sanctions.ts';
import { MetaApiError } from '../errors.ts';
import {
  connectedCallsInWindow,
  effectivePermission,
  META_PERMISSION_LIMITS,
  type PermissionEntry,
  type PermissionLimits,
} from '../permissions/ledger.ts';
import type { MetaPermissionsApi } from '../permissions/meta-permissions.ts';
import { findPermission, updatePermission } from '../permissions/service.ts';
import type { PermissionStore } from '../permissions/store.ts';
import type { Allowance, BusinessCallRequest, CheckBusinessCall, Refusal, RefusalReason } from './contract.ts';

/**
 * Countries whose business numbers cannot place business-initiated calls: Meta's availability list
 * of Jun 26 2026 (OVR26) excludes only these. Turkey is no longer excluded (only the Nov 2025 FAQ
 * named it); where Meta blocks a country it answers 138013 itself.
 */
export const DEFAULT_BIC_BLOCKED_COUNTRIES: readonly string[] = ['US', 'CA', 'EG', 'VN', 'NG'];

/** HTTP and SIP answers of each refusal. Stable: API clients and PBX dial plans rely on them. */
export const REFUSAL_STATUS: Readonly<Record<RefusalReason, { readonly http: number; readonly sip: number }>> = {
  'no-permission': { http: 403, sip: 403 },
  'permission-expired': { http: 403, sip: 403 },
  'permission-revoked': { http: 403, sip: 403 },
  'unknown-user': { http: 404, sip: 404 },
  'business-country-blocked': { http: 422, sip: 403 },
  'sanctioned-user': { http: 403, sip: 403 },
  'sanctioned-business': { http: 422, sip: 403 },
  'daily-limit': { http: 429, sip: 480 },
  'over-capacity': { http: 429, sip: 503 },
  'number-not-configured': { http: 404, sip: 404 },
  'invalid-request': { http: 422, sip: 404 },
};

/**
 * Meta's `call_permissions`, asked when the ledger has no entry for the user or a refusing entry
 * that was not compared with Meta for `staleAfterMs` — a permission granted before deployment, or
 * whose reply webhook was lost, is then found instead of refused forever (REF26).
 */
export interface MetaPermissionCheck {
  readonly api: Pick<MetaPermissionsApi, 'getCallPermissions'>;
  /** Give up on Meta after this long and refuse as the ledger says (with the reason). */
  readonly timeoutMs: number;
  /** A refusing entry compared with Meta longer ago than this is asked again. */
  readonly staleAfterMs: number;
}

/** Collaborators and settings of the rules. */
export interface BusinessCallRulesDeps {
  readonly permissions: PermissionStore;
  /** Ask Meta on a ledger miss; without it the ledger alone decides. */
  readonly meta?: MetaPermissionCheck;
  readonly calls: Pick<CallStore, 'slotsInUse'>;
  /** The business numbers served here. */
  readonly lines: ReadonlyArray<{ readonly phoneNumberId: string; readonly businessNumber: string }>;
  /** ISO country codes where business-initiated calls are blocked (`BIC_BLOCKED_COUNTRIES`). */
  readonly blockedCountries: readonly string[];
  readonly sanctions?: SanctionsLists;
  /** Concurrent calls per business number (`MAX_CONCURRENT_CALLS`). */
  readonly maxConcurrentCalls: number;
  readonly limits?: PermissionLimits;
  readonly now: () => number;
}

/** Builds a refusal with its statuses. */
export function refusal(reason: RefusalReason, detail: string, retryAt?: number): Refusal {
  const status = REFUSAL_STATUS[reason];
  return {
    allowed: false,
    reason,
    detail,
    httpStatus: status.http,
    sipStatus: status.sip,
    ...(retryAt === undefined ? {} : { retryAt }),
  };
}

/**
 * Builds the rules check. The worker calls it for every INVITE from the PBX:
 * `const verdict = await check({ phoneNumberId, user: { phone } })`; on `allowed: false`, answer
 * `verdict.sipStatus` with `Reason: Q.850;cause=21;text="<verdict.reason>"`.
 */
export function createBusinessCallRules(deps: BusinessCallRulesDeps): CheckBusinessCall {
  const limits = deps.limits ?? META_PERMISSION_LIMITS;
  return async (request: BusinessCallRequest): Promise<Allowance | Refusal> => {
    const { user } = request;
    const hasPhone = user.phone !== undefined && user.phone !== '';
    const hasBsuid = user.userId !== undefined && user.userId !== '';
    if ((!hasPhone && !hasBsuid) || (hasPhone && !/^\d{6,15}$/.test(user.phone!))) {
      return refusal('unknown-user', 'the user needs a phone number (digits) or a BSUID');
    }
    const line = deps.lines.find((l) => l.phoneNumberId === request.phoneNumberId);
    if (!line) {
      return refusal('number-not-configured', `phone number id ${request.phoneNumberId} is not served here`);
    }
    const blocked = blockedCountryOf(line.businessNumber, deps.blockedCountries);
    if (blocked) {
      return refusal(
        'business-country-blocked',
        `Meta does not offer business-initiated calls from business numbers in ${blocked}`,
      );
    }
    const business = checkSanctions({ phone: line.businessNumber }, deps.sanctions);
    if (business.sanctioned) {
      return refusal('sanctioned-business', `the business number is in ${business.region ?? business.country}`);
    }
    const callee = checkSanctions(user, deps.sanctions);
    if (callee.sanctioned) {
      return refusal(
        'sanctioned-user',
        `the user is in ${callee.region ?? callee.country}, where Meta offers no service`,
      );
    }

    const now = deps.now();
    let { entry } = await findPermission(deps.permissions, request.phoneNumberId, user);
    let held = permissionRefusal(entry, now);
    if (held.allowed === false && deps.meta && askMeta(entry, held, now, deps.meta)) {
      const asked = await reconcileWithMeta(request, deps, deps.meta, now);
      if (asked.entry) entry = asked.entry;
      held = asked.entry ? permissionRefusal(entry, now) : held;
      if (held.allowed === false) held = { ...held, detail: `${held.detail} (${asked.note})` };
    }
    if (held.allowed === false) return held;
    if (entry?.callsBlockedUntil !== undefined && now < entry.callsBlockedUntil) {
      return refusal(
        'daily-limit',
        `Meta refused the last call to this user with 138012; the next is allowed at ${new Date(entry.callsBlockedUntil).toISOString()}`,
        entry.callsBlockedUntil,
      );
    }

    const window = connectedCallsInWindow(entry!, now, limits);
    if (window.nextAllowedAt !== undefined) {
      return refusal(
        'daily-limit',
        `${window.count} connected calls to this user in the last 24 h (limit ${limits.connectedCallsPer24h}); next allowed at ${new Date(window.nextAllowedAt).toISOString()}`,
        window.nextAllowedAt,
      );
    }
    const inUse = await deps.calls.slotsInUse(request.phoneNumberId);
    if (inUse >= deps.maxConcurrentCalls) {
      return refusal('over-capacity', `${inUse} of ${deps.maxConcurrentCalls} concurrent calls in use on this number`);
    }
    return held;
  };
}

/**
 * Whether a refusal is a ledger miss worth asking Meta about: no entry, or no valid permission
 * (never granted, requested, lapsed) and not compared with Meta lately. A decline or revocation the
 * ledger recorded (the user's reply, Meta's webhook, 4 unanswered calls) is not a miss.
 */
function askMeta(entry: PermissionEntry | undefined, held: Refusal, now: number, meta: MetaPermissionCheck): boolean {
  if (held.reason !== 'no-permission' && held.reason !== 'permission-expired') return false;
  if (!entry) return true;
  return entry.reconciledAt === undefined || now - entry.reconciledAt >= meta.staleAfterMs;
}

/**
 * Asks Meta's `call_permissions` within `timeoutMs` and records its answer in the ledger
 * (`reconcile`). Returns the updated entry, or no entry and why Meta could not be asked.
 */
async function reconcileWithMeta(
  request: BusinessCallRequest,
  deps: BusinessCallRulesDeps,
  meta: MetaPermissionCheck,
  now: number,
): Promise<{ entry?: PermissionEntry; note: string }> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), meta.timeoutMs);
  });
  try {
    const view = await Promise.race([meta.api.getCallPermissions(request.phoneNumberId, request.user), timeout]);
    if (view === 'timeout') {
      return { note: `Meta's call_permissions did not answer within ${meta.timeoutMs} ms; the ledger decided` };
    }
    const { entry } = await updatePermission(
      request.phoneNumberId,
      request.user,
      {
        type: 'reconcile',
        at: now,
        status: view.status,
        ...(view.expiresAt === undefined ? {} : { expiresAt: view.expiresAt }),
      },
      { permissions: deps.permissions, now: deps.now, ...(deps.limits ? { limits: deps.limits } : {}) },
    );
    return { entry, note: `Meta's call_permissions says ${view.status}` };
  } catch (error) {
    const why =
      error instanceof MetaApiError ? `${error.status} ${error.metaCode ?? ''} ${error.message}` : String(error);
    return {
      note: `Meta's call_permissions could not be asked (${why.replace(/\s+/g, ' ').trim()}); the ledger decided`,
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Whether the entry holds a valid permission at `now`. */
function permissionRefusal(entry: PermissionEntry | undefined, now: number): Allowance | Refusal {
  if (!entry) return refusal('no-permission', 'the user has not granted call permission');
  const permission = effectivePermission(entry, now);
  switch (permission.state) {
    case 'permanent':
      return { allowed: true, permission: 'permanent' };
    case 'temporary':
      return { allowed: true, permission: 'temporary', expiresAt: permission.expiresAt! };
    case 'expired':
      return refusal(
        'permission-expired',
        `the temporary permission expired at ${new Date(permission.expiresAt ?? 0).toISOString()}`,
      );
    case 'rejected':
      return refusal('permission-revoked', 'the user declined the permission request');
    case 'revoked':
      return refusal(
        'permission-revoked',
        entry.source === 'automatic'
          ? 'the permission was revoked after unanswered calls in a row'
          : 'the permission was revoked',
      );
    case 'requested':
      return refusal('no-permission', 'a permission request was sent and not accepted yet');
    default:
      return refusal('no-permission', 'the user has not granted call permission');
  }
}

/**
 * The country of a business number if it is in `blocked`. libphonenumber places the number
 * (+1 876 is Jamaica, not blocked); a number it cannot place (a fictional 555 number) is judged by
 * its calling code: blocked if any blocked country shares it.
 */
export function blockedCountryOf(businessNumber: string, blocked: readonly string[]): string | undefined {
  const parsed = parsePhoneNumberFromString(`+${businessNumber}`);
  if (parsed?.country) return blocked.includes(parsed.country) ? parsed.country : undefined;
  const candidates = blocked.filter((c) => {
    try {
      return businessNumber.startsWith(getCountryCallingCode(c as Parameters<typeof getCountryCallingCode>[0]));
    } catch {
      return false;
    }
  });
  return candidates[0];
}

/** ISO codes libphonenumber knows (for validating `BIC_BLOCKED_COUNTRIES`). */
export function knownCountries(): readonly string[] {
  return getCountries();
}
