/**
 * Simulated user call permissions for one business phone number (meta-calling-api.md §3.3, §4.1, §2.9),
 * plus the directory of simulated WhatsApp users and their scripted behaviour (how they answer permission
 * requests and business-initiated calls).
 *
 * All windows are rolling and measured on the injected {@link SimClock}, so tests can cross 24 h / 7 d
 * boundaries with a {@link ManualClock}.
 *
 * @module
 */
import type { SimClock } from './clock.ts';
import { bicDailyLimit, noCallPermission, permanentPermissionExists, permissionRequestLimit } from './errors.ts';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** `permission.status` values of `GET /{pnid}/call_permissions` (§3.3). */
export type PermissionStatus = 'no_permission' | 'temporary' | 'permanent';

/** Numeric limits of the permission engine (§4.1). */
export interface PermissionLimits {
  /** Lifetime of a temporary permission. Meta: 7 days (168 h). */
  temporaryTtlMs: number;
  /** Permission requests per rolling 24 h. Meta: 1 (sandbox 25). */
  requestsPer24h: number;
  /** Permission requests per rolling 7 days. Meta: 2 (sandbox 100). */
  requestsPer7d: number;
  /** Connected business-initiated calls per rolling 24 h per pair. Meta: 100 since Dec 19, 2025. */
  connectedCallsPer24h: number;
  /** Consecutive unanswered/rejected BICs before the user is nudged. Meta: 2 (sandbox 5). */
  nudgeAfterUnanswered: number;
  /** Consecutive unanswered/rejected BICs before auto-revocation. Meta: 4 (sandbox 10). */
  revokeAfterUnanswered: number;
}

/** Production limits (§4.1). */
export const META_PERMISSION_LIMITS: Readonly<PermissionLimits> = {
  temporaryTtlMs: 7 * DAY_MS,
  requestsPer24h: 1,
  requestsPer7d: 2,
  connectedCallsPer24h: 100,
  nudgeAfterUnanswered: 2,
  revokeAfterUnanswered: 4,
};

/** Sandbox / public test number limits (§4.1). */
export const SANDBOX_PERMISSION_LIMITS: Readonly<PermissionLimits> = {
  ...META_PERMISSION_LIMITS,
  requestsPer24h: 25,
  requestsPer7d: 100,
  nudgeAfterUnanswered: 5,
  revokeAfterUnanswered: 10,
};

/** One entry of `actions[].limits[]` (§3.3). */
export interface PermissionLimitView {
  time_period: 'PT24H' | 'P7D';
  max_allowed: number;
  current_usage: number;
  /** Present only when the limit is exhausted (Unix seconds). */
  limit_expiration_time?: number;
}

/** The `GET /{pnid}/call_permissions` success body (§3.3). */
export interface CallPermissionsBody {
  messaging_product: 'whatsapp';
  permission: { status: PermissionStatus; expiration_time?: number };
  actions: Array<{
    action_name: 'send_call_permission_request' | 'start_call';
    can_perform_action: boolean;
    limits: PermissionLimitView[];
  }>;
}

/** Outcome of recording an unanswered business-initiated call. */
export type UnansweredOutcome = 'counted' | 'nudged' | 'revoked';

interface PermissionRecord {
  status: 'none' | 'temporary' | 'permanent';
  expiresAt?: number;
  requests: number[];
  connectedBic: number[];
  consecutiveUnanswered: number;
  /** Last time the user opened or refreshed the customer-service window (message, call, accepted call), ms. */
  windowOpenedAt?: number;
}

/** Options of {@link PermissionEngine}. */
export interface PermissionEngineOptions {
  clock: SimClock;
  /** Use the relaxed sandbox/test-number limits (§4.1). */
  sandbox?: boolean;
  /** Override individual limits. */
  limits?: Partial<PermissionLimits>;
}

const toSec = (ms: number): number => Math.floor(ms / 1000);

/**
 * Per business-number permission state for every simulated user, keyed by the user's key
 * (`wa_id ?? user_id`, see {@link userKey}).
 */
export class PermissionEngine {
  /** Effective limits. */
  readonly limits: Readonly<PermissionLimits>;
  readonly #clock: SimClock;
  readonly #records = new Map<string, PermissionRecord>();

  /** Create an engine on `opts.clock`. */
  constructor(opts: PermissionEngineOptions) {
    this.#clock = opts.clock;
    this.limits = { ...(opts.sandbox ? SANDBOX_PERMISSION_LIMITS : META_PERMISSION_LIMITS), ...opts.limits };
  }

  #rec(key: string): PermissionRecord {
    let r = this.#records.get(key);
    if (!r) {
      r = { status: 'none', requests: [], connectedBic: [], consecutiveUnanswered: 0 };
      this.#records.set(key, r);
    }
    const now = this.#clock.now();
    // A temporary permission simply lapses; no webhook is sent (§2.9).
    if (r.status === 'temporary' && r.expiresAt !== undefined && now >= r.expiresAt) {
      r.status = 'none';
      delete r.expiresAt;
    }
    r.requests = r.requests.filter((t) => now - t < 7 * DAY_MS);
    r.connectedBic = r.connectedBic.filter((t) => now - t < DAY_MS);
    return r;
  }

  /** Current permission for `key`; `expiresAt` (epoch ms) only for temporary permissions. */
  status(key: string): { status: PermissionStatus; expiresAt?: number } {
    const r = this.#rec(key);
    if (r.status === 'none') return { status: 'no_permission' };
    if (r.status === 'permanent') return { status: 'permanent' };
    return { status: 'temporary', expiresAt: r.expiresAt ?? 0 };
  }

  /** Grant a permission (user accepted a request, callback auto-grant, or a test fixture). Returns its expiry. */
  grant(key: string, opts: { permanent: boolean }): { expiresAt?: number } {
    const r = this.#rec(key);
    if (opts.permanent) {
      r.status = 'permanent';
      delete r.expiresAt;
      return {};
    }
    // A temporary grant never downgrades a permanent one (only the user can revoke permanent, §4.1).
    if (r.status === 'permanent') return {};
    r.status = 'temporary';
    r.expiresAt = this.#clock.now() + this.limits.temporaryTtlMs;
    r.consecutiveUnanswered = 0;
    return { expiresAt: r.expiresAt };
  }

  /** Remove any permission (user declined, or automatic revocation). */
  revoke(key: string): void {
    const r = this.#rec(key);
    r.status = 'none';
    delete r.expiresAt;
    r.consecutiveUnanswered = 0;
  }

  #requestBlock(r: PermissionRecord): { reason: string; nextAllowed: number } | undefined {
    const now = this.#clock.now();
    const in24 = r.requests.filter((t) => now - t < DAY_MS);
    if (in24.length >= this.limits.requestsPer24h) {
      const oldest = Math.min(...in24);
      return {
        reason: `Limit of ${this.limits.requestsPer24h} call permission request(s) per 24 hours reached`,
        nextAllowed: oldest + DAY_MS,
      };
    }
    if (r.requests.length >= this.limits.requestsPer7d) {
      const oldest = Math.min(...r.requests);
      return {
        reason: `Limit of ${this.limits.requestsPer7d} call permission requests per 7 days reached`,
        nextAllowed: oldest + 7 * DAY_MS,
      };
    }
    return undefined;
  }

  /**
   * Throw the Graph error Meta returns if a permission request may not be sent now: 138017 when a permanent
   * permission exists, 138009 (with `next_allowed_time`) when the 1/24 h or 2/7 d limit is hit (§3.4, §4.1).
   */
  assertCanRequest(key: string): void {
    const r = this.#rec(key);
    if (r.status === 'permanent') throw permanentPermissionExists();
    const block = this.#requestBlock(r);
    if (block) {
      throw permissionRequestLimit(
        `${block.reason}. Next request allowed at ${new Date(block.nextAllowed).toISOString()}; any connected call resets this limit.`,
        toSec(block.nextAllowed),
      );
    }
  }

  /** Count a sent permission request (call after {@link assertCanRequest}). */
  recordRequest(key: string): void {
    this.#rec(key).requests.push(this.#clock.now());
  }

  /** Throw 138006 without a valid permission, 138012 when the connected-BIC 24 h limit is exhausted (§4.1). */
  assertCanStartCall(key: string): void {
    const r = this.#rec(key);
    if (r.status === 'none') throw noCallPermission();
    if (r.connectedBic.length >= this.limits.connectedCallsPer24h) {
      const oldest = Math.min(...r.connectedBic);
      throw bicDailyLimit(this.limits.connectedCallsPer24h, toSec(oldest + DAY_MS));
    }
  }

  /**
   * A call connected. Any connected call (either direction) resets the permission-request limits; a connected
   * business-initiated call counts towards the 24 h limit and breaks the unanswered streak (§4.1).
   */
  recordConnectedCall(key: string, opts: { businessInitiated: boolean }): void {
    const r = this.#rec(key);
    r.requests = [];
    if (opts.businessInitiated) {
      // A user accepting the business's call opens or refreshes the customer-service window (§4.5, M-PRICE).
      r.windowOpenedAt = this.#clock.now();
      r.connectedBic.push(this.#clock.now());
      r.consecutiveUnanswered = 0;
    }
  }

  /**
   * The user messaged or called the business: the 24 h customer-service window opens or refreshes
   * (§4.5: "when a user calls you (answered or not) and when a user accepts your call"; a user message, M-PRICE).
   */
  openServiceWindow(key: string): void {
    this.#rec(key).windowOpenedAt = this.#clock.now();
  }

  /**
   * Whether the user's customer-service window is open now: the last user message or call is less than 24 h old.
   * Free-form permission requests and call-button messages need it (PERM26, BTN26).
   */
  serviceWindowOpen(key: string): boolean {
    const at = this.#rec(key).windowOpenedAt;
    return at !== undefined && this.#clock.now() - at < DAY_MS;
  }

  /**
   * A business-initiated call went unanswered or was rejected. At `nudgeAfterUnanswered` the user is nudged
   * (no webhook); at `revokeAfterUnanswered` the permission is revoked and the caller must emit a
   * `call_permission_reply` reject/automatic webhook (§4.1, §2.9).
   */
  recordUnansweredCall(key: string): UnansweredOutcome {
    const r = this.#rec(key);
    r.consecutiveUnanswered += 1;
    if (r.consecutiveUnanswered >= this.limits.revokeAfterUnanswered && r.status !== 'none') {
      this.revoke(key);
      return 'revoked';
    }
    return r.consecutiveUnanswered === this.limits.nudgeAfterUnanswered ? 'nudged' : 'counted';
  }

  /** Consecutive unanswered business-initiated calls so far. */
  consecutiveUnanswered(key: string): number {
    return this.#rec(key).consecutiveUnanswered;
  }

  /** The `GET /{pnid}/call_permissions` body for `key` (§3.3). */
  describe(key: string): CallPermissionsBody {
    const r = this.#rec(key);
    const now = this.#clock.now();
    const st = this.status(key);
    const permission: CallPermissionsBody['permission'] = { status: st.status };
    if (st.expiresAt !== undefined) permission.expiration_time = toSec(st.expiresAt);

    const in24 = r.requests.filter((t) => now - t < DAY_MS);
    const reqLimit24: PermissionLimitView = {
      time_period: 'PT24H',
      max_allowed: this.limits.requestsPer24h,
      current_usage: in24.length,
    };
    if (in24.length >= this.limits.requestsPer24h && in24.length > 0) {
      reqLimit24.limit_expiration_time = toSec(Math.min(...in24) + DAY_MS);
    }
    const reqLimit7d: PermissionLimitView = {
      time_period: 'P7D',
      max_allowed: this.limits.requestsPer7d,
      current_usage: r.requests.length,
    };
    if (r.requests.length >= this.limits.requestsPer7d && r.requests.length > 0) {
      reqLimit7d.limit_expiration_time = toSec(Math.min(...r.requests) + 7 * DAY_MS);
    }
    const callLimit: PermissionLimitView = {
      time_period: 'PT24H',
      max_allowed: this.limits.connectedCallsPer24h,
      current_usage: r.connectedBic.length,
    };
    if (r.connectedBic.length >= this.limits.connectedCallsPer24h && r.connectedBic.length > 0) {
      callLimit.limit_expiration_time = toSec(Math.min(...r.connectedBic) + DAY_MS);
    }
    return {
      messaging_product: 'whatsapp',
      permission,
      actions: [
        {
          action_name: 'send_call_permission_request',
          can_perform_action: r.status !== 'permanent' && this.#requestBlock(r) === undefined,
          limits: [reqLimit24, reqLimit7d],
        },
        {
          action_name: 'start_call',
          can_perform_action: r.status !== 'none' && callLimit.limit_expiration_time === undefined,
          limits: [callLimit],
        },
      ],
    };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Simulated users
// ---------------------------------------------------------------------------------------------------------------

/** How a simulated user answers a call permission request (§2.9 scenario table). */
export type PermissionReplyScript = 'accept_temporary' | 'accept_permanent' | 'reject' | 'none';

/** How a simulated user answers a business-initiated call (§2.8). */
export type BicAnswerScript = 'accept' | 'reject' | 'no_answer';

/**
 * Faults of the `ACCEPTED` status webhook of this user's business-initiated calls. Meta: it "will typically always
 * arrive after the call has been established… primarily sent for call event auditing" (M-BIC, §2.8) and webhook
 * delivery is at least once, unordered and not guaranteed (§2.4).
 */
export interface AcceptedStatusScript {
  /** Sent this long after pickup instead of the engine's `bicAcceptedStatusDelayMs` (a late status). */
  delayMs?: number;
  /** Extra identical copies POSTed with it. */
  duplicates?: number;
  /** Never sent. */
  lost?: boolean;
}

/** Scripted behaviour of one simulated user. */
export interface UserScript {
  /** Reply to a permission request. Default `accept_temporary`. */
  permissionReply: PermissionReplyScript;
  /** Delay before the permission reply webhook. Default 100 ms. */
  permissionReplyDelayMs: number;
  /** What the user does when a business calls. Default `accept`. */
  bicAnswer: BicAnswerScript;
  /** Ringing time before the user accepts/rejects (ignored for `no_answer`). Default 300 ms. */
  bicAnswerDelayMs: number;
  /** Faults of the `ACCEPTED` status when the user picks up a business-initiated call. Default none. */
  acceptedStatus: AcceptedStatusScript;
  /** The user is not callable (not on WhatsApp / old client): connect returns 138001. Default false. */
  uncallable: boolean;
}

/** Default script for users that were never scripted. */
export const DEFAULT_USER_SCRIPT: Readonly<UserScript> = {
  permissionReply: 'accept_temporary',
  permissionReplyDelayMs: 100,
  bicAnswer: 'accept',
  bicAnswerDelayMs: 300,
  acceptedStatus: {},
  uncallable: false,
};

/** A WhatsApp consumer as the webhook builders describe it (mirrors the webhooks helper's `SimUser`). */
export interface SimUserIdentity {
  waId?: string;
  userId?: string;
  parentUserId?: string;
  name?: string;
  username?: string;
}

/**
 * A business-scoped user id as Meta issues it (BSUID-F, Feb 2026): an ISO country prefix and a dot,
 * then up to 128 alphanumerics (`US.13491208655302741918`); parent ids carry `ENT.` after the prefix
 * (`US.ENT.11815799212886844830`).
 */
export const BSUID_PATTERN = /^[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}$/;

/** Whether `value` has the shape of a BSUID ({@link BSUID_PATTERN}). */
export function isBsuid(value: unknown): value is string {
  return typeof value === 'string' && BSUID_PATTERN.test(value);
}

/** The stable key of a user: `wa_id ?? user_id` (§2.6: key users on `wa_id ?? user_id`). */
export function userKey(user: SimUserIdentity): string {
  const key = user.waId ?? user.userId;
  if (!key) throw new TypeError('A simulated user needs a waId or a userId');
  return key;
}

/** Directory of simulated users, addressable by `wa_id` or BSUID, each with a {@link UserScript}. */
export class UserDirectory {
  readonly #users = new Map<string, { identity: SimUserIdentity; script: UserScript }>();

  /** Find a user by wa_id or BSUID. */
  find(ref: string): { identity: SimUserIdentity; script: UserScript } | undefined {
    const direct = this.#users.get(ref);
    if (direct) return direct;
    for (const u of this.#users.values()) {
      if (u.identity.waId === ref || u.identity.userId === ref) return u;
    }
    return undefined;
  }

  /** Register or merge a user; returns the stored identity. */
  upsert(identity: SimUserIdentity): SimUserIdentity {
    const existing =
      (identity.waId ? this.find(identity.waId) : undefined) ??
      (identity.userId ? this.find(identity.userId) : undefined);
    if (existing) {
      const merged = { ...existing.identity };
      for (const [k, v] of Object.entries(identity) as Array<[keyof SimUserIdentity, string | undefined]>) {
        if (v !== undefined) merged[k] = v;
      }
      existing.identity = merged;
      return merged;
    }
    const stored = { identity: { ...identity }, script: { ...DEFAULT_USER_SCRIPT } };
    this.#users.set(userKey(identity), stored);
    return stored.identity;
  }

  /** Resolve a Graph `to`/`recipient` into a user, creating an unscripted one if unknown. */
  resolve(ref: { to?: string; recipient?: string }): SimUserIdentity {
    // `to` wins if both are present (§3.1).
    if (ref.to) return this.find(ref.to)?.identity ?? this.upsert({ waId: ref.to });
    if (ref.recipient) return this.find(ref.recipient)?.identity ?? this.upsert({ userId: ref.recipient });
    throw new TypeError('to or recipient required');
  }

  /** The script for a user (defaults when unknown). */
  script(ref: string): UserScript {
    return this.find(ref)?.script ?? { ...DEFAULT_USER_SCRIPT };
  }

  /** Merge a partial script into a user's script, registering the user (as wa_id or BSUID) if unknown. */
  setScript(ref: string, patch: Partial<UserScript>): UserScript {
    let u = this.find(ref);
    if (!u) {
      this.upsert(/^\d+$/.test(ref) ? { waId: ref } : { userId: ref });
      u = this.find(ref);
    }
    if (!u) throw new Error(`user ${ref} could not be registered`);
    u.script = { ...u.script, ...patch };
    return u.script;
  }

  /** Every known user. */
  list(): Array<{ identity: SimUserIdentity; script: UserScript }> {
    return [...this.#users.values()].map((u) => ({ identity: { ...u.identity }, script: { ...u.script } }));
  }
}
