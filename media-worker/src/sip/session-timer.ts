/**
 * Session timers (RFC 4028), the stack-independent half: header parsing, the negotiation rules of
 * the UAS (§9) and of the UAC reading its 2xx (§7.2), the refresh and expiry arithmetic (§10), and
 * {@link SessionTimer}, which runs them on an injected {@link Clock}. Both SIP adapters use it, so
 * they advertise, negotiate, refresh and expire sessions the same way.
 */

import type { Clock, ClockTimer } from '#core/clock.ts';

/** RFC 4028 §4: no session interval may be below 90 s; our Min-SE. */
export const MIN_SESSION_EXPIRES_S = 90;

/** The interval we ask for in our INVITEs (RFC 4028 §4 recommends 1800 s). */
export const DEFAULT_SESSION_EXPIRES_S = 1800;

/** Who refreshes the session (RFC 4028 §4, the `refresher` parameter). */
export type Refresher = 'uac' | 'uas';

/** A Session-Expires header: delta-seconds and, when given, who refreshes. */
export interface SessionExpires {
  readonly seconds: number;
  readonly refresher?: Refresher;
}

/** The session interval in force in a dialog and who refreshes it. */
export interface SessionInterval {
  readonly seconds: number;
  readonly refresher: Refresher;
}

/** Parse a Session-Expires value (`1800;refresher=uac`, RFC 4028 §4); `undefined` when absent or malformed. */
export function parseSessionExpires(text: string | undefined): SessionExpires | undefined {
  if (text === undefined) return undefined;
  const [delta, ...params] = text.split(';').map((p) => p.trim());
  if (!delta || !/^\d{1,10}$/.test(delta)) return undefined;
  const seconds = Number(delta);
  let refresher: Refresher | undefined;
  for (const p of params) {
    const [name, value] = p.split('=').map((s) => s.trim().toLowerCase());
    if (name === 'refresher' && (value === 'uac' || value === 'uas')) refresher = value;
  }
  return refresher === undefined ? { seconds } : { seconds, refresher };
}

/** Parse a Min-SE value (delta-seconds, RFC 4028 §5); `undefined` when absent or malformed. */
export function parseMinSe(text: string | undefined): number | undefined {
  const m = /^\s*(\d{1,10})\s*(;.*)?$/.exec(text ?? '');
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

/** A Session-Expires value for the wire. */
export function formatSessionExpires(se: SessionExpires): string {
  return se.refresher === undefined ? String(se.seconds) : `${se.seconds};refresher=${se.refresher}`;
}

/** True when a Supported or Require value lists the `timer` option tag. */
export function listsTimer(optionTags: string | undefined): boolean {
  return (optionTags ?? '')
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .includes('timer');
}

/** The option tags of a Require value other than those we support (`timer`): what gets 420. */
export function unsupportedRequired(require: string | undefined): string[] {
  return (require ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '' && t.toLowerCase() !== 'timer');
}

/** What a UAS answers to an INVITE or UPDATE as far as session timers go (RFC 4028 §9). */
export type UasSessionDecision =
  /** No Session-Expires in the request: no session timer. */
  | { readonly kind: 'none' }
  /** The interval is below our Min-SE: answer 422 with `Min-SE: minSe`. */
  | { readonly kind: 'too-small'; readonly minSe: number }
  /**
   * Run a session timer: put `Session-Expires: seconds;refresher=…` in the 2xx, and `Require: timer`
   * when the UAC supports timers (§9: a UAC that does not cannot be told to refresh).
   */
  | { readonly kind: 'timer'; readonly interval: SessionInterval; readonly requireTimer: boolean };

/**
 * RFC 4028 §9 for the UAS: a Session-Expires below our Min-SE gets 422; otherwise the interval is
 * taken as asked, the refresher is the request's choice, else the UAC when it supports timers
 * (it asked for them), else us — a UAC without timer support never refreshes.
 */
export function decideAsUas(
  request: { readonly sessionExpires: SessionExpires | undefined; readonly uacSupportsTimer: boolean },
  minSe: number = MIN_SESSION_EXPIRES_S,
): UasSessionDecision {
  const se = request.sessionExpires;
  if (se === undefined) return { kind: 'none' };
  if (se.seconds < minSe) return { kind: 'too-small', minSe };
  const refresher: Refresher = request.uacSupportsTimer ? (se.refresher ?? 'uac') : 'uas';
  return { kind: 'timer', interval: { seconds: se.seconds, refresher }, requireTimer: request.uacSupportsTimer };
}

/**
 * RFC 4028 §7.2 for the UAC reading the 2xx of its INVITE (or refresh): no Session-Expires means no
 * session timer; one without a refresher (the UAS does not support timers, a proxy asked) makes
 * the UAC the refresher.
 */
export function intervalFromUacResponse(sessionExpires: SessionExpires | undefined): SessionInterval | undefined {
  if (sessionExpires === undefined) return undefined;
  return { seconds: sessionExpires.seconds, refresher: sessionExpires.refresher ?? 'uac' };
}

/**
 * The interval to retry with after a 422 (RFC 4028 §6): the response's Min-SE; `undefined` when the
 * 422 carries none, or one not above what we asked (a retry would meet the same 422).
 */
export function intervalAfter422(minSeHeader: string | undefined, asked: number): number | undefined {
  const minSe = parseMinSe(minSeHeader);
  return minSe === undefined || minSe <= asked ? undefined : minSe;
}

/** The refresher sends its refresh half way through the interval (RFC 4028 §10). */
export function refreshDelayMs(seconds: number): number {
  return (seconds * 1000) / 2;
}

/**
 * The side that does not refresh ends the session when no refresh came by the interval less
 * min(32 s, interval/3) (RFC 4028 §10: "slightly before session expiration").
 */
export function expiryDelayMs(seconds: number): number {
  return (seconds - Math.min(32, seconds / 3)) * 1000;
}

/** What a {@link SessionTimer} does when its time comes. */
export interface SessionTimerHandlers {
  /** We are the refresher and half the interval has passed: send a refresh (re-INVITE or UPDATE). */
  refresh(): void;
  /** The far end is the refresher and no refresh came in time: send BYE, end the call. */
  expire(): void;
}

/** The session interval a dialog runs on, from our side. */
export interface ArmedInterval {
  readonly seconds: number;
  /** True when we send the refreshes. */
  readonly weRefresh: boolean;
}

/**
 * Our side of an interval negotiated in a transaction where we were `role`: `refresher` names the
 * UAC or UAS *of that transaction* (RFC 4028 §4), so a refresh the callee sends with
 * `refresher=uac` makes the callee the refresher.
 */
export function armedFor(interval: SessionInterval, role: Refresher): ArmedInterval {
  return { seconds: interval.seconds, weRefresh: interval.refresher === role };
}

/**
 * The session timer of one dialog (RFC 4028 §10) on an injected clock: {@link SessionTimer.start}
 * (again after every refresh, either way) arms the refresh at half the interval when we refresh,
 * else the expiry; {@link SessionTimer.stop} when the dialog ends or timers are switched off.
 */
export class SessionTimer {
  readonly #clock: Clock;
  readonly #handlers: SessionTimerHandlers;
  #timer: ClockTimer | undefined;
  #armed: ArmedInterval | undefined;

  constructor(clock: Clock, handlers: SessionTimerHandlers) {
    this.#clock = clock;
    this.#handlers = handlers;
  }

  /** The interval in force, if any. */
  get armed(): ArmedInterval | undefined {
    return this.#armed;
  }

  /** (Re)arm for `armed`: the dialog just started, or a refresh went through either way. */
  start(armed: ArmedInterval): void {
    this.stop();
    this.#armed = armed;
    this.#timer = armed.weRefresh
      ? this.#clock.setTimeout(() => this.#handlers.refresh(), refreshDelayMs(armed.seconds))
      : this.#clock.setTimeout(() => this.#handlers.expire(), expiryDelayMs(armed.seconds));
  }

  /** Disarm (the dialog ended, or a refresh switched timers off). */
  stop(): void {
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armed = undefined;
  }
}
