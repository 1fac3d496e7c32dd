/**
 * Which target a call we place (UAC) tries next: the ordered failover list, 3xx redirects followed
 * inside it (RFC 3261 §8.1.3.4) and targets cooling down after `503` with `Retry-After` (RFC 3261
 * §21.5.4, §20.33). Pure logic on an injected {@link Clock}, shared by both SIP adapters
 * (`outbound-call.ts`, `drachtio/drachtio-outbound.ts`), which only extract a final response's
 * status, Contacts and Retry-After and hand them here.
 *
 * What a final non-2xx response does to the call:
 * - 300, 301, 302 with usable Contacts: the Contacts, highest `q` first (RFC 3261 §20.10; ties keep
 *   their order), are tried next, before the configured targets still to come. A URI already
 *   tried or the redirecting target itself (a loop) is not tried again; non-SIP Contacts (tel:,
 *   mailto:, …) are dropped. At most {@link DEFAULT_MAX_REDIRECTS} redirects are followed per call.
 * - 305 Use Proxy and 380 Alternative Service are not followed (305 would route our INVITE through
 *   a proxy the far end names, which RFC 3261 §21.3.6 restricts to the proxy's own domain policy
 *   and we have no way to check; 380's alternative is described in a body, not a URI): like a
 *   redirect we cannot follow (no usable Contact, limit reached), the next configured target is tried.
 * - 408 and every 5xx: the next target (serial forking, RFC 3261 §16.7). A 503 with
 *   `Retry-After: N` also keeps the target from every call of this worker for N seconds (capped
 *   at {@link MAX_COOLDOWN_S}).
 * - Other 4xx and every 6xx (global failure, RFC 3261 §21.6): the call fails, nothing else tried.
 */
import { type Clock, realClock } from '#core/clock.ts';
import type { PlaceCallOptions, SipTarget } from './sip-port.ts';

/** Redirects followed per call at most. */
export const DEFAULT_MAX_REDIRECTS = 5;
/** A `Retry-After` longer than this (seconds) is cut to it, so a wrong header cannot retire a target for days. */
export const MAX_COOLDOWN_S = 3600;
/** Targets the cooldown map remembers at most (per worker). */
export const DEFAULT_MAX_COOLDOWNS = 256;

/** A Contact of a 3xx response. */
export interface RedirectContact {
  readonly uri: string;
  /** The Contact's `q` parameter (0–1), if any; absent counts as 1. */
  readonly q?: number | string | undefined;
}

/** What the adapter read off a final non-2xx response. */
export interface FinalResponseInfo {
  /** Contacts of a 3xx, in header order. */
  readonly contacts?: readonly RedirectContact[];
  /** The `Retry-After` header's text, if any. */
  readonly retryAfter?: string | undefined;
}

/**
 * A key under which two spellings of one target compare equal: scheme, host, port and URI
 * parameters are case-insensitive (RFC 3261 §19.1.4), the user part is not; URI headers (`?…`)
 * and angle brackets are dropped.
 */
export function targetKey(uri: string): string {
  const bare = uri
    .trim()
    .replace(/^<(.*)>$/, '$1')
    .replace(/\?.*$/, '');
  const m = /^(sips?):(?:([^@]*)@)?(.*)$/i.exec(bare);
  if (!m) return bare;
  return `${m[1]?.toLowerCase()}:${m[2] === undefined ? '' : `${m[2]}@`}${m[3]?.toLowerCase()}`;
}

/** Host part of a SIP URI, lower case (for deciding whether credentials follow a redirect). */
function hostOf(uri: string): string {
  return /^sips?:(?:[^@]*@)?(\[[^\]]+\]|[^:;?]+)/i.exec(targetKey(uri))?.[1] ?? '';
}

/** Seconds of a `Retry-After` value (RFC 3261 §20.33: `delta-seconds [comment] *(; params)`), or undefined. */
export function parseRetryAfter(text: string | undefined): number | undefined {
  const m = /^\s*(\d+)/.exec(text ?? '');
  return m?.[1] === undefined ? undefined : Number.parseInt(m[1], 10);
}

/**
 * Targets that answered `503` with `Retry-After`, and until when (per worker: one map shared by
 * every call of a {@link SipPort}). Bounded: expired entries go first, then the one that would
 * expire soonest.
 */
export class TargetCooldowns {
  readonly #until = new Map<string, number>();
  readonly #clock: Clock;
  readonly #max: number;

  constructor(options: { clock?: Clock; maxEntries?: number } = {}) {
    this.#clock = options.clock ?? realClock;
    this.#max = Math.max(1, options.maxEntries ?? DEFAULT_MAX_COOLDOWNS);
  }

  /** Keep `uri` from new attempts for `seconds` (capped at {@link MAX_COOLDOWN_S}). */
  coolDown(uri: string, seconds: number): void {
    if (!(seconds > 0)) return;
    const key = targetKey(uri);
    const until = this.#clock.now() + Math.min(seconds, MAX_COOLDOWN_S) * 1000;
    this.#until.delete(key);
    this.#until.set(key, Math.max(until, this.#until.get(key) ?? 0));
    if (this.#until.size > this.#max) this.#evict();
  }

  /** Milliseconds `uri` still cools down (0 when it may be tried). */
  remainingMs(uri: string): number {
    const key = targetKey(uri);
    const until = this.#until.get(key);
    if (until === undefined) return 0;
    const left = until - this.#clock.now();
    if (left > 0) return left;
    this.#until.delete(key);
    return 0;
  }

  /** Entries held (expired ones included until looked at or evicted). */
  get size(): number {
    return this.#until.size;
  }

  #evict(): void {
    const now = this.#clock.now();
    for (const [key, until] of this.#until) if (until <= now) this.#until.delete(key);
    while (this.#until.size > this.#max) {
      let soonest: [string, number] | undefined;
      for (const entry of this.#until) if (!soonest || entry[1] < soonest[1]) soonest = entry;
      if (!soonest) return;
      this.#until.delete(soonest[0]);
    }
  }
}

/** A target picked by {@link TargetPlan.next}. */
export interface PlannedTarget extends SipTarget {
  /** URI of the target whose 3xx named this one; undefined for a configured target. */
  readonly redirectedFrom?: string;
}

/** Status and reason of a call that fails before any INVITE because every target cools down. */
/**
 * The synchronous checks `placeCall` makes in both adapters: at least one target, a positive answer
 * timeout, every target a SIP URI as the adapter's own parser reads it.
 *
 * @throws TypeError naming what is wrong
 */
export function assertPlaceCallOptions(opts: PlaceCallOptions, isSipUri: (uri: string) => boolean): void {
  if (opts.targets.length === 0) throw new TypeError('placeCall needs at least one target');
  if (!(opts.answerTimeoutMs > 0)) throw new TypeError('answerTimeoutMs must be positive');
  const bad = opts.targets.find((t) => !isSipUri(t.uri));
  if (bad) throw new TypeError(`invalid SIP target URI: ${bad.uri}`);
}

export const ALL_COOLING_DOWN = {
  status: 503,
  reason: 'Service Unavailable (every target is cooling down after 503 Retry-After)',
} as const;

/** The targets of one call, in the order they are to be tried. */
export class TargetPlan {
  readonly #queue: PlannedTarget[];
  readonly #tried = new Set<string>();
  readonly #cooldowns: TargetCooldowns;
  readonly #maxRedirects: number;
  readonly #isValid: (uri: string) => boolean;
  #redirects = 0;
  #skippedCooling = 0;

  /**
   * @param targets the configured failover list
   * @param cooldowns the worker's cooldown map
   * @param options.isValid the adapter's check that it can send to a URI (redirect Contacts failing it are dropped)
   */
  constructor(
    targets: readonly SipTarget[],
    cooldowns: TargetCooldowns,
    options: { maxRedirects?: number; isValid?: (uri: string) => boolean } = {},
  ) {
    this.#queue = [...targets];
    this.#cooldowns = cooldowns;
    this.#maxRedirects = options.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
    this.#isValid = options.isValid ?? (() => true);
  }

  /** Redirects followed so far. */
  get redirects(): number {
    return this.#redirects;
  }

  /** Targets passed over because they cool down. */
  get skippedCooling(): number {
    return this.#skippedCooling;
  }

  /**
   * The next target to send an INVITE to, or undefined when none is left. Targets tried before
   * (in any spelling, {@link targetKey}) and targets cooling down are passed over.
   */
  next(): PlannedTarget | undefined {
    for (let t = this.#queue.shift(); t; t = this.#queue.shift()) {
      const key = targetKey(t.uri);
      if (this.#tried.has(key)) continue;
      if (this.#cooldowns.remainingMs(t.uri) > 0) {
        this.#skippedCooling += 1;
        continue;
      }
      this.#tried.add(key);
      return t;
    }
    return undefined;
  }

  /**
   * Record target `target`'s final non-2xx `status`; true when the call goes on to {@link next}
   * (which may still find nothing), false when the call fails with this status.
   */
  failed(target: PlannedTarget, status: number, info: FinalResponseInfo = {}): boolean {
    if (status === 503) {
      const seconds = parseRetryAfter(info.retryAfter);
      if (seconds !== undefined) this.#cooldowns.coolDown(target.uri, seconds);
    }
    if (status >= 300 && status < 400) {
      if (status <= 302) this.#redirect(target, info.contacts ?? []);
      return true;
    }
    return status === 408 || (status >= 500 && status < 600);
  }

  /** Put a 3xx's Contacts first, highest q first (RFC 3261 §8.1.3.4). */
  #redirect(from: PlannedTarget, contacts: readonly RedirectContact[]): void {
    if (this.#redirects >= this.#maxRedirects) return;
    const fromHost = hostOf(from.uri);
    const seen = new Set<string>();
    const usable = contacts
      .map((c, order) => ({
        uri: c.uri
          .trim()
          .replace(/^<(.*)>$/, '$1')
          .replace(/\?.*$/, ''),
        q: qOf(c.q),
        order,
      }))
      .filter((c) => {
        const key = targetKey(c.uri);
        if (!/^sips?:/i.test(c.uri) || this.#tried.has(key) || seen.has(key) || !this.#isValid(c.uri)) return false;
        seen.add(key);
        return true;
      })
      .sort((a, b) => b.q - a.q || a.order - b.order);
    if (usable.length === 0) return;
    this.#redirects += 1;
    // Credentials go with the redirect only to the same host: never hand a password to a host
    // a response named.
    this.#queue.unshift(
      ...usable.map((c) => ({
        uri: c.uri,
        redirectedFrom: from.uri,
        ...(from.auth && hostOf(c.uri) === fromHost ? { auth: from.auth } : {}),
      })),
    );
  }
}

function qOf(q: number | string | undefined): number {
  const n = typeof q === 'number' ? q : q === undefined ? Number.NaN : Number.parseFloat(q);
  return Number.isFinite(n) ? Math.min(1, Math.max(0, n)) : 1;
}
