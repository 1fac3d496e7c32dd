/**
 * The call-permission ledger: what the bridge knows about one business number's permission to call
 * one WhatsApp user, as a pure state function. Every change is an event; {@link applyPermissionEvent}
 * returns the new entry and one history entry, and nothing here reads a clock or a store.
 *
 * Meta's rules this encodes (meta-calling-api.md §4.1, §2.9):
 * - a temporary permission lasts 7 days from approval; a permanent one until the user revokes it;
 * - no webhook is sent when a temporary permission lapses, so expiry is checked against the clock at
 *   use ({@link effectivePermission}), never left to a TTL;
 * - permission requests: at most 1 per 24 h and 2 per 7 days; any connected call resets both;
 * - at most 100 connected business-initiated calls per pair per rolling 24 h;
 * - 4 unanswered or rejected business-initiated calls in a row revoke the permission.
 */
import type { WhatsAppUser } from '../meta/webhook.ts';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** Where the ledger stands for a business number and user. */
export const PERMISSION_STATES = ['none', 'requested', 'temporary', 'permanent', 'rejected', 'revoked'] as const;
export type PermissionState = (typeof PERMISSION_STATES)[number];

/** Who or what caused the current state. */
export type PermissionSource = 'user-action' | 'automatic' | 'callback-grant' | 'reconcile' | 'bridge';

/** Meta's limits (§4.1); the sandbox has relaxed ones, so they are parameters. */
export interface PermissionLimits {
  /** Lifetime of a temporary permission when Meta sends no expiry. Meta: 7 days. */
  readonly temporaryTtlMs: number;
  /** Permission requests per rolling 24 h. Meta: 1. */
  readonly requestsPer24h: number;
  /** Permission requests per rolling 7 days. Meta: 2. */
  readonly requestsPer7d: number;
  /** Connected business-initiated calls per pair per rolling 24 h. Meta: 100 (since Dec 19, 2025). */
  readonly connectedCallsPer24h: number;
  /** Unanswered or rejected business-initiated calls in a row that revoke the permission. Meta: 4. */
  readonly revokeAfterUnanswered: number;
}

/** Meta's production limits (§4.1). */
export const META_PERMISSION_LIMITS: PermissionLimits = {
  temporaryTtlMs: 7 * DAY_MS,
  requestsPer24h: 1,
  requestsPer7d: 2,
  connectedCallsPer24h: 100,
  revokeAfterUnanswered: 4,
};

/**
 * Meta's limits for sandbox and public test numbers (OVR26, Tech Partners): 25 permission requests per 24 h,
 * 100 per 7 days, and revocation after 10 unanswered calls in a row; the rest as in production.
 */
export const SANDBOX_PERMISSION_LIMITS: PermissionLimits = {
  ...META_PERMISSION_LIMITS,
  requestsPer24h: 25,
  requestsPer7d: 100,
  revokeAfterUnanswered: 10,
};

/** Which of Meta's limit sets a business number is under (setting `META_PERMISSION_LIMITS`). */
export const PERMISSION_LIMIT_PROFILES = ['production', 'sandbox'] as const;
export type PermissionLimitProfile = (typeof PERMISSION_LIMIT_PROFILES)[number];

/** The limits of a profile: production numbers, or sandbox/public test numbers (OVR26). */
export function permissionLimitsFor(profile: PermissionLimitProfile): PermissionLimits {
  return profile === 'sandbox' ? SANDBOX_PERMISSION_LIMITS : META_PERMISSION_LIMITS;
}

/** How many message and call ids an entry remembers to make replayed events no-ops. */
const REMEMBERED_IDS = 50;

/** One ledger entry: a business number (phone number id) and a user. */
export interface PermissionEntry {
  readonly phoneNumberId: string;
  /** Phone digits, or the BSUID of a phone-less user (see `userKeyOf`). */
  readonly userKey: string;
  /** Every identifier Meta has sent for the user. */
  readonly user: WhatsAppUser;
  readonly state: PermissionState;
  /** Expiry of a temporary permission, ms. */
  readonly expiresAt?: number;
  readonly source?: PermissionSource;
  /** When the state last changed, ms. */
  readonly stateSince: number;
  /** Meta's time of the newest permission reply applied, ms (older replies are stale). */
  readonly lastReplyAt?: number;
  /** Times permission requests were sent within the last 7 days, ms, oldest first. */
  readonly requests: readonly number[];
  /** Times business-initiated calls connected within the last 24 h, ms, oldest first. */
  readonly connectedCalls: readonly number[];
  /** Unanswered or rejected business-initiated calls in a row. */
  readonly consecutiveUnanswered: number;
  /** When the entry was last compared with Meta's `call_permissions`, ms. */
  readonly reconciledAt?: number;
  /**
   * Meta refused a call with 138012 (business-initiated calls limit): no call before this time, ms,
   * Meta's `error_data.next_allowed_time`.
   */
  readonly callsBlockedUntil?: number;
  /** Message and call ids already applied (newest last), so duplicates change nothing. */
  readonly appliedIds: readonly string[];
  /** Incremented by every write (optimistic concurrency). */
  readonly version: number;
  readonly updatedAt: number;
}

/**
 * What can happen to a permission. `at` is when the bridge learnt of it, ms; `id` (message or call
 * id) makes the event idempotent. Replies also carry Meta's own time (`metaAt`, whole seconds),
 * which orders replies against each other.
 */
export type PermissionEvent =
  | {
      readonly type: 'request-sent';
      readonly at: number;
      readonly id: string;
      readonly kind: 'interactive' | 'template';
    }
  | {
      readonly type: 'reply-accept';
      readonly at: number;
      readonly id: string;
      readonly metaAt?: number;
      readonly permanent: boolean;
      readonly expiresAt?: number;
      readonly contextId?: string;
    }
  | {
      readonly type: 'reply-reject';
      readonly at: number;
      readonly id: string;
      readonly metaAt?: number;
      readonly contextId?: string;
    }
  | { readonly type: 'auto-revoke'; readonly at: number; readonly id: string; readonly metaAt?: number }
  | {
      readonly type: 'callback-grant';
      readonly at: number;
      readonly id: string;
      readonly callId: string;
      readonly expiresAt?: number;
    }
  | {
      readonly type: 'reconcile';
      readonly at: number;
      readonly status: 'no_permission' | 'temporary' | 'permanent';
      readonly expiresAt?: number;
    }
  | {
      readonly type: 'call-connected';
      readonly at: number;
      readonly callId: string;
      readonly direction: 'business-initiated' | 'user-initiated';
    }
  | { readonly type: 'call-unanswered'; readonly at: number; readonly callId: string }
  | {
      /** Meta refused a `connect` with 138012; `until` is its `next_allowed_time` (M-TRB). */
      readonly type: 'call-limit-hit';
      readonly at: number;
      readonly until: number;
    };

/** One line of an entry's history. */
export interface PermissionHistoryEntry {
  readonly at: number;
  readonly event: PermissionEvent['type'];
  readonly from: PermissionState;
  readonly to: PermissionState;
  readonly detail?: Record<string, unknown>;
}

/** The result of applying an event. `changed: false` means a duplicate or stale event: write nothing. */
export type PermissionUpdate =
  | { readonly changed: true; readonly entry: PermissionEntry; readonly history: PermissionHistoryEntry }
  | { readonly changed: false; readonly entry: PermissionEntry; readonly why: 'duplicate' | 'stale' };

/** An entry for a pair the ledger has never seen. */
export function emptyEntry(phoneNumberId: string, userKey: string, user: WhatsAppUser, at: number): PermissionEntry {
  return {
    phoneNumberId,
    userKey,
    user,
    state: 'none',
    stateSince: at,
    requests: [],
    connectedCalls: [],
    consecutiveUnanswered: 0,
    appliedIds: [],
    version: 0,
    updatedAt: at,
  };
}

/**
 * The one transition function of the ledger.
 *
 * @param current - the stored entry (use {@link emptyEntry} for a new pair).
 * @param event - what happened.
 * @param limits - Meta's limits; defaults to production ones.
 */
export function applyPermissionEvent(
  current: PermissionEntry,
  event: PermissionEvent,
  limits: PermissionLimits = META_PERMISSION_LIMITS,
): PermissionUpdate {
  const id = eventId(event);
  if (id !== undefined && current.appliedIds.includes(id)) return { changed: false, entry: current, why: 'duplicate' };
  // Meta delivers webhooks in any order (§2.4): a reply older than the newest applied one is stale.
  const replyAt =
    event.type === 'reply-accept' || event.type === 'reply-reject' || event.type === 'auto-revoke'
      ? (event.metaAt ?? event.at)
      : undefined;
  if (replyAt !== undefined && current.lastReplyAt !== undefined && replyAt < current.lastReplyAt) {
    return { changed: false, entry: current, why: 'stale' };
  }
  const at = event.at;
  const base = pruned(current, at);
  let next: PermissionEntry = base;
  let detail: Record<string, unknown> | undefined;
  const move = (state: PermissionState, source: PermissionSource, expiresAt?: number): PermissionEntry => {
    const { expiresAt: _old, ...rest } = next;
    return {
      ...rest,
      state,
      source,
      stateSince: state === next.state && expiresAt === next.expiresAt ? next.stateSince : at,
      ...(expiresAt === undefined ? {} : { expiresAt }),
    };
  };

  switch (event.type) {
    case 'request-sent': {
      next = { ...next, requests: [...next.requests, at] };
      // A request to a user who already holds a valid temporary permission may upgrade it; keep it.
      const holding = effectivePermission(next, at);
      if (holding.state !== 'temporary' && holding.state !== 'permanent') next = move('requested', 'bridge');
      detail = { kind: event.kind, messageId: event.id };
      break;
    }
    case 'reply-accept': {
      if (event.permanent) next = move('permanent', 'user-action');
      else if (next.state !== 'permanent') {
        next = move('temporary', 'user-action', event.expiresAt ?? at + limits.temporaryTtlMs);
      }
      next = { ...next, consecutiveUnanswered: 0, lastReplyAt: replyAt };
      detail = { permanent: event.permanent, messageId: event.id, ...opt('contextId', event.contextId) };
      break;
    }
    case 'reply-reject':
      // The user's own decision takes effect at once, even over a permanent permission (§4.1).
      next = { ...move('rejected', 'user-action'), lastReplyAt: replyAt, consecutiveUnanswered: 0 };
      detail = { messageId: event.id, ...opt('contextId', event.contextId) };
      break;
    case 'auto-revoke':
      // Meta's automatic revocation after 4 unanswered calls in a row (§2.9).
      next = { ...move('revoked', 'automatic'), lastReplyAt: replyAt, consecutiveUnanswered: 0 };
      detail = { messageId: event.id };
      break;
    case 'callback-grant':
      // The user called a number with callback permission on: a temporary grant (§2.9). It never
      // downgrades a permanent permission.
      if (next.state !== 'permanent') {
        next = move('temporary', 'callback-grant', event.expiresAt ?? at + limits.temporaryTtlMs);
      }
      next = { ...next, consecutiveUnanswered: 0 };
      detail = { callId: event.callId, messageId: event.id };
      break;
    case 'reconcile': {
      const held = effectivePermission(next, at).state;
      if (event.status === 'permanent') {
        if (held !== 'permanent') next = move('permanent', 'reconcile');
      } else if (event.status === 'temporary') {
        if (held !== 'temporary' || next.expiresAt !== event.expiresAt) {
          next = move('temporary', 'reconcile', event.expiresAt ?? at + limits.temporaryTtlMs);
        }
      } else if (held === 'temporary' || held === 'permanent' || held === 'expired') {
        // Meta holds no permission: it lapsed or was revoked without a webhook reaching us.
        next = move(held === 'expired' ? 'none' : 'revoked', 'reconcile');
      }
      next = { ...next, reconciledAt: at };
      detail = { meta: event.status, ...opt('expiresAt', event.expiresAt) };
      break;
    }
    case 'call-connected':
      // Any connected call resets the request limits; a business-initiated one also counts towards
      // the daily limit and ends the unanswered streak (§4.1).
      next = { ...next, requests: [] };
      if (event.direction === 'business-initiated') {
        next = { ...next, connectedCalls: [...next.connectedCalls, at], consecutiveUnanswered: 0 };
      }
      detail = { callId: event.callId, direction: event.direction };
      break;
    case 'call-limit-hit':
      next = { ...next, callsBlockedUntil: Math.max(event.until, next.callsBlockedUntil ?? 0) };
      detail = { until: event.until };
      break;
    case 'call-unanswered': {
      const streak = next.consecutiveUnanswered + 1;
      next = { ...next, consecutiveUnanswered: streak };
      const held = effectivePermission(next, at).state;
      if (streak >= limits.revokeAfterUnanswered && (held === 'temporary' || held === 'permanent')) {
        next = { ...move('revoked', 'automatic'), consecutiveUnanswered: 0 };
      }
      detail = { callId: event.callId, streak };
      break;
    }
  }
  const entry: PermissionEntry = {
    ...next,
    appliedIds: id === undefined ? next.appliedIds : [...next.appliedIds, id].slice(-REMEMBERED_IDS),
    updatedAt: at,
  };
  return {
    changed: true,
    entry,
    history: { at, event: event.type, from: current.state, to: entry.state, ...(detail ? { detail } : {}) },
  };
}

/** The permission as it stands at `now`: a lapsed temporary permission reads `expired`. */
export function effectivePermission(
  entry: Pick<PermissionEntry, 'state' | 'expiresAt'>,
  now: number,
): { state: PermissionState | 'expired'; expiresAt?: number } {
  if (entry.state === 'temporary' && (entry.expiresAt === undefined || now >= entry.expiresAt)) {
    return { state: 'expired', ...opt('expiresAt', entry.expiresAt) };
  }
  return { state: entry.state, ...opt('expiresAt', entry.expiresAt) };
}

/**
 * When the next permission request is allowed, or `undefined` if one may be sent now (1 per 24 h,
 * 2 per 7 days, §4.1). Counts only requests inside the rolling windows at `now`.
 */
export function nextRequestAllowedAt(
  entry: Pick<PermissionEntry, 'requests'>,
  now: number,
  limits: PermissionLimits = META_PERMISSION_LIMITS,
): number | undefined {
  const in7d = entry.requests.filter((t) => now - t < 7 * DAY_MS).sort((a, b) => a - b);
  const in24h = in7d.filter((t) => now - t < DAY_MS);
  let next: number | undefined;
  if (in24h.length >= limits.requestsPer24h) next = in24h[in24h.length - limits.requestsPer24h]! + DAY_MS;
  if (in7d.length >= limits.requestsPer7d) {
    const at = in7d[in7d.length - limits.requestsPer7d]! + 7 * DAY_MS;
    next = next === undefined ? at : Math.max(next, at);
  }
  return next;
}

/** Connected business-initiated calls in the rolling 24 h before `now`, and when the oldest leaves it. */
export function connectedCallsInWindow(
  entry: Pick<PermissionEntry, 'connectedCalls'>,
  now: number,
  limits: PermissionLimits = META_PERMISSION_LIMITS,
): { count: number; nextAllowedAt?: number } {
  const inWindow = entry.connectedCalls.filter((t) => now - t < DAY_MS).sort((a, b) => a - b);
  if (inWindow.length < limits.connectedCallsPer24h) return { count: inWindow.length };
  return { count: inWindow.length, nextAllowedAt: inWindow[inWindow.length - limits.connectedCallsPer24h]! + DAY_MS };
}

function pruned(entry: PermissionEntry, at: number): PermissionEntry {
  return {
    ...entry,
    requests: entry.requests.filter((t) => at - t < 7 * DAY_MS),
    connectedCalls: entry.connectedCalls.filter((t) => at - t < DAY_MS),
  };
}

function eventId(event: PermissionEvent): string | undefined {
  switch (event.type) {
    case 'reconcile':
    case 'call-limit-hit':
      return undefined;
    case 'call-connected':
      return `connected:${event.callId}`;
    case 'call-unanswered':
      return `unanswered:${event.callId}`;
    default:
      return event.id;
  }
}

function opt<K extends string, V>(key: K, v: V | undefined): { [P in K]?: V } {
  return (v === undefined ? {} : { [key]: v }) as { [P in K]?: V };
}
