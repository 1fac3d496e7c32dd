/**
 * Ledger updates: read the entry, apply one event with the pure {@link applyPermissionEvent}, write
 * it back with a version condition, retry when another writer won. Also the entry points other
 * parts of the bridge call: permission-reply webhooks, and call outcomes the media worker reports
 * ({@link recordConnectedCall}, {@link recordUnansweredCall}, {@link recordUserCallAnswered}).
 */
import { randomUUID } from 'node:crypto';
import { BridgeError } from '../errors.ts';
import type { PermissionReply, WhatsAppUser } from '../meta/webhook.ts';
import {
  applyPermissionEvent,
  emptyEntry,
  META_PERMISSION_LIMITS,
  type PermissionEntry,
  type PermissionEvent,
  type PermissionLimits,
} from './ledger.ts';
import type { PermissionStore } from './store.ts';

/** What ledger updates need. */
export interface LedgerDeps {
  readonly permissions: PermissionStore;
  readonly now: () => number;
  readonly limits?: PermissionLimits;
}

/** A ledger write lost every race for the entry. */
export class LedgerConflictError extends BridgeError {
  override name = 'LedgerConflictError';
  readonly phoneNumberId: string;
  readonly userKey: string;

  constructor(phoneNumberId: string, userKey: string) {
    super(`permission ledger entry ${phoneNumberId}/${userKey} kept changing; update abandoned`);
    this.phoneNumberId = phoneNumberId;
    this.userKey = userKey;
  }
}

/** A user must carry a phone number or a BSUID to have a ledger entry. */
export class UnknownUserError extends BridgeError {
  override name = 'UnknownUserError';
}

/** The outcome of one ledger update. */
export interface LedgerUpdateResult {
  readonly entry: PermissionEntry;
  /** False for a duplicate or stale event (nothing written). */
  readonly changed: boolean;
}

/** Attempts before giving up; writers that lost back off with jitter, so a burst for one pair drains. */
const ATTEMPTS = 12;

/**
 * Applies one event to the pair's entry with optimistic concurrency.
 *
 * @throws {@link UnknownUserError} for a user with neither phone nor BSUID;
 *   {@link LedgerConflictError} after {@link ATTEMPTS} lost races.
 */
export async function updatePermission(
  phoneNumberId: string,
  user: WhatsAppUser,
  event: PermissionEvent,
  deps: LedgerDeps,
): Promise<LedgerUpdateResult> {
  let userKey = ledgerKeyOf(user);
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const found = await findPermission(deps.permissions, phoneNumberId, user);
    userKey = found.key;
    const stored = found.entry;
    const current = stored ?? emptyEntry(phoneNumberId, userKey, user, event.at);
    const user2 = mergeUser(current.user, user);
    const update = applyPermissionEvent({ ...current, user: user2 }, event, deps.limits ?? META_PERMISSION_LIMITS);
    if (!update.changed) return { entry: current, changed: false };
    const entry = { ...update.entry, version: current.version + 1 };
    if (await deps.permissions.put(entry, current.version, update.history)) {
      // The user's other identifier points at this entry, so a later sighting by either finds it.
      const other = otherKeyOf(user2, userKey);
      if (other !== undefined && (stored === undefined || otherKeyOf(stored.user, userKey) !== other)) {
        await deps.permissions.putAlias(phoneNumberId, other, userKey);
      }
      return { entry, changed: true };
    }
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * (attempt + 1)));
  }
  throw new LedgerConflictError(phoneNumberId, userKey);
}

/**
 * The key a new ledger entry is written under: the BSUID when Meta sent one, else the phone digits.
 * Meta sends the BSUID on every webhook since Mar 31 2026 but the phone only under conditions
 * (BSUID-F), so the BSUID is the stable identity and the phone an alias ({@link findPermission}).
 * `""` is never a key (an earlier BSUID revision sent it for "no phone").
 */
export function ledgerKeyOf(user: WhatsAppUser): string {
  const key = nonEmpty(user.userId) ?? nonEmpty(user.phone);
  if (key === undefined) throw new UnknownUserError('a WhatsApp user needs a phone number or a BSUID');
  return key;
}

/**
 * Finds a user's one ledger entry, whichever identifier it is stored under: by BSUID, by phone,
 * each directly or through an alias. Entries keyed by phone before BSUIDs existed are found by
 * phone, so stored data needs no migration. An entry whose recorded BSUID differs from the user's
 * is another person's (a recycled phone number) and is not used. Without a match, `key` is where a
 * new entry goes ({@link ledgerKeyOf}).
 *
 * @throws {@link UnknownUserError} for a user with neither phone nor BSUID.
 */
export async function findPermission(
  store: Pick<PermissionStore, 'get' | 'alias'>,
  phoneNumberId: string,
  user: WhatsAppUser,
): Promise<{ key: string; entry?: PermissionEntry }> {
  const key = ledgerKeyOf(user);
  const userId = nonEmpty(user.userId);
  const candidates = [userId, nonEmpty(user.phone)].filter((k): k is string => k !== undefined);
  const same = (entry: PermissionEntry) => {
    const stored = nonEmpty(entry.user.userId);
    return stored === undefined || userId === undefined || stored === userId;
  };
  for (const candidate of candidates) {
    const direct = await store.get(phoneNumberId, candidate);
    if (direct && same(direct)) return { key: candidate, entry: direct };
    const target = await store.alias(phoneNumberId, candidate);
    if (target !== undefined && target !== candidate) {
      const aliased = await store.get(phoneNumberId, target);
      if (aliased && same(aliased)) return { key: target, entry: aliased };
    }
  }
  return { key };
}

/** The user's identifier that is not `key`, if the user has one: the alias to record. */
function otherKeyOf(user: WhatsAppUser, key: string): string | undefined {
  return [nonEmpty(user.userId), nonEmpty(user.phone)].find((k) => k !== undefined && k !== key);
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v;
}

/**
 * The ledger event a `call_permission_reply` webhook means (meta-calling-api.md §2.9 scenario
 * table): an automatic accept whose context is a `wacid.` call id is a callback grant; an automatic
 * reject is Meta's revocation after 4 unanswered calls; the rest are the user's own answers.
 */
export function eventOfReply(reply: PermissionReply, receivedAt: number): PermissionEvent {
  const at = receivedAt;
  const metaAt = reply.timestamp;
  const automatic = reply.source === 'automatic';
  if (reply.response === 'reject') {
    return automatic
      ? { type: 'auto-revoke', at, metaAt, id: reply.messageId }
      : { type: 'reply-reject', at, metaAt, id: reply.messageId, ...opt('contextId', reply.contextId) };
  }
  if (automatic && reply.contextId?.startsWith('wacid.')) {
    return {
      type: 'callback-grant',
      at,
      id: reply.messageId,
      callId: reply.contextId,
      ...opt('expiresAt', reply.expiresAt),
    };
  }
  return {
    type: 'reply-accept',
    at,
    metaAt,
    id: reply.messageId,
    permanent: reply.permanent,
    ...opt('expiresAt', reply.permanent ? undefined : reply.expiresAt),
    ...opt('contextId', reply.contextId),
  };
}

/**
 * Moves the ledger for a `call_permission_reply` webhook. Idempotent: a redelivered reply (same
 * message id) changes nothing, and a reply older than the newest applied one is ignored.
 */
export async function applyPermissionReply(reply: PermissionReply, deps: LedgerDeps): Promise<LedgerUpdateResult> {
  return updatePermission(reply.line.phoneNumberId, reply.user, eventOfReply(reply, deps.now()), deps);
}

/** Identifies a call whose outcome the worker reports. */
export interface CallOutcome {
  readonly phoneNumberId: string;
  readonly user: WhatsAppUser;
  /** Meta's call id; makes the report idempotent. */
  readonly callId: string;
}

/**
 * A business-initiated call connected (the user answered). Counts towards the 100-per-24-h limit,
 * ends the unanswered streak and resets the permission-request limits (§4.1). Idempotent per call.
 */
export async function recordConnectedCall(outcome: CallOutcome, deps: LedgerDeps): Promise<LedgerUpdateResult> {
  return updatePermission(
    outcome.phoneNumberId,
    outcome.user,
    { type: 'call-connected', at: deps.now(), callId: outcome.callId, direction: 'business-initiated' },
    deps,
  );
}

/**
 * A user-initiated call was answered: resets the permission-request limits (any connected call
 * does, §4.1). Idempotent per call.
 */
export async function recordUserCallAnswered(outcome: CallOutcome, deps: LedgerDeps): Promise<LedgerUpdateResult> {
  return updatePermission(
    outcome.phoneNumberId,
    outcome.user,
    { type: 'call-connected', at: deps.now(), callId: outcome.callId, direction: 'user-initiated' },
    deps,
  );
}

/**
 * A business-initiated call ended unanswered or rejected by the user. The 4th in a row revokes the
 * permission at once (§4.1); Meta's own `reject`/`automatic` webhook then finds it revoked.
 * Idempotent per call. `revoked` says whether this report revoked the permission.
 */
export async function recordUnansweredCall(
  outcome: CallOutcome,
  deps: LedgerDeps,
): Promise<LedgerUpdateResult & { revoked: boolean }> {
  const before = (await findPermission(deps.permissions, outcome.phoneNumberId, outcome.user)).entry;
  const result = await updatePermission(
    outcome.phoneNumberId,
    outcome.user,
    { type: 'call-unanswered', at: deps.now(), callId: outcome.callId },
    deps,
  );
  return { ...result, revoked: result.changed && result.entry.state === 'revoked' && before?.state !== 'revoked' };
}

/** What {@link recordTerminatedBusinessCall} reads of Meta's `terminate` and the call's record. */
export interface TerminatedBusinessCall {
  readonly callId: string;
  readonly phoneNumberId: string;
  /** The user as the call's record knows them (phone and/or BSUID; the ledger resolves aliases). */
  readonly user: WhatsAppUser;
  /** The terminate carried `start_time` or `duration`: Meta counts the call as connected (§2.7). */
  readonly answered: boolean;
  /** Meta's `errors[]` codes on the terminate. */
  readonly errorCodes: readonly number[];
}

/**
 * Counts a business-initiated call from Meta's `terminate`, the one signal Meta always sends and
 * the one it counts by (Corrections §3: answered or unanswered is the terminate's
 * `start_time`/`duration`): connected, or one more unanswered in a row (the 4th revokes, §4.1).
 * The webhook calls it for every business-initiated terminate, so a call the bridge ended while
 * the phone rang (the PBX's CANCEL, an API cancel), whose worker stopped listening before Meta's
 * terminate came, is still counted. The worker may report the same call too: the ledger applies
 * each call once (`connected:<id>` / `unanswered:<id>` among its applied ids, conditional writes).
 * A call that failed unanswered (`errors[]`: 138007 the business did not apply Meta's answer in
 * time, so the phone never rang; 138019/138020 the user's client could not set the call up, M-TRB)
 * was not the user's to answer and is not counted. Returns what was recorded.
 */
export async function recordTerminatedBusinessCall(
  call: TerminatedBusinessCall,
  deps: LedgerDeps,
): Promise<'connected' | 'unanswered' | 'not-counted'> {
  if (call.user.phone === undefined && call.user.userId === undefined) return 'not-counted';
  const outcome = { phoneNumberId: call.phoneNumberId, user: call.user, callId: call.callId };
  if (call.answered) {
    await recordConnectedCall(outcome, deps);
    return 'connected';
  }
  if (call.errorCodes.length > 0) return 'not-counted';
  await recordUnansweredCall(outcome, deps);
  return 'unanswered';
}

/**
 * Meta refused a business-initiated `connect`; corrects the ledger from Meta's answer (M-TRB):
 * 138006 (no approved permission) reconciles the entry to `no_permission`; 138012 (calls limit)
 * blocks calls until Meta's next allowed time. Other codes change nothing (`undefined`).
 */
export async function recordMetaRefusal(
  phoneNumberId: string,
  user: WhatsAppUser,
  refusal: { readonly code: number; readonly nextAllowedAt?: number },
  deps: LedgerDeps,
): Promise<LedgerUpdateResult | undefined> {
  const at = deps.now();
  if (refusal.code === 138006) {
    return updatePermission(phoneNumberId, user, { type: 'reconcile', at, status: 'no_permission' }, deps);
  }
  if (refusal.code === 138012 && refusal.nextAllowedAt !== undefined) {
    return updatePermission(phoneNumberId, user, { type: 'call-limit-hit', at, until: refusal.nextAllowedAt }, deps);
  }
  return undefined;
}

function mergeUser(stored: WhatsAppUser, seen: WhatsAppUser): WhatsAppUser {
  const merged: Record<string, string> = { ...(stored as Record<string, string>) };
  for (const [k, v] of Object.entries(seen)) if (typeof v === 'string') merged[k] = v;
  return merged as WhatsAppUser;
}

function opt<K extends string, V>(key: K, v: V | undefined): { [P in K]?: V } {
  return (v === undefined ? {} : { [key]: v }) as { [P in K]?: V };
}

/**
 * The ledger as the media worker's `BusinessCallOutcomes` port (`media-worker/src/calls/ports.ts`):
 * `connected` / `unanswered` / `metaRefused` for business-initiated calls, `userCallAnswered` for
 * user-initiated ones. Pass Meta's call id so a repeated report counts once; without it every report counts.
 */
export function ledgerOutcomes(deps: LedgerDeps) {
  const id = (callId: string | undefined) => callId ?? `unidentified.${randomUUID()}`;
  return {
    async connected(phoneNumberId: string, user: WhatsAppUser, callId?: string): Promise<void> {
      await recordConnectedCall({ phoneNumberId, user, callId: id(callId) }, deps);
    },
    async unanswered(phoneNumberId: string, user: WhatsAppUser, callId?: string): Promise<void> {
      await recordUnansweredCall({ phoneNumberId, user, callId: id(callId) }, deps);
    },
    async userCallAnswered(phoneNumberId: string, user: WhatsAppUser, callId?: string): Promise<void> {
      await recordUserCallAnswered({ phoneNumberId, user, callId: id(callId) }, deps);
    },
    async metaRefused(
      phoneNumberId: string,
      user: WhatsAppUser,
      refusal: { readonly code: number; readonly nextAllowedAt?: number },
    ): Promise<void> {
      await recordMetaRefusal(phoneNumberId, user, refusal, deps);
    },
  };
}
