/**
 * Meta's answer window for user-initiated calls: Meta terminates a call the business has not
 * accepted "about 30 to 60 seconds after the Call Connect webhook" (M-REF26, meta-calling-api.md
 * §3.2). The window is counted from Meta's `connect`, not from the bridge's INVITE, so the time
 * spent in the webhook, the queue and the worker's set-up is already gone when the agent's phone
 * starts ringing.
 */

/** The earliest Meta may give up on an unaccepted call, ms after its connect webhook (M-REF26). */
export const META_ANSWER_WINDOW_MS = 30_000;

/** Kept free at the end of the window for the `accept` round trip after the agent answers, ms. */
export const META_ACCEPT_MARGIN_MS = 2_000;

/** Input of {@link ringTimeoutWithinMetaWindow}; all times in ms since the epoch. */
export interface MetaWindowInput {
  /** The configured SIP ring timeout (e.g. `SIP_RING_TIMEOUT_SECONDS` × 1000). */
  readonly configuredMs: number;
  /**
   * When Meta sent the connect: the webhook's `timestamp` (whole seconds, so up to 1 s early,
   * which errs on the safe side).
   */
  readonly connectAt: number;
  /** Now, when the agent is about to be rung. */
  readonly now: number;
  /** Meta's window. @default {@link META_ANSWER_WINDOW_MS} */
  readonly windowMs?: number;
  /** Margin for the `accept` round trip. @default {@link META_ACCEPT_MARGIN_MS} */
  readonly marginMs?: number;
  /**
   * Meta's voicemail TIMEOUT, ms after the connect (Corrections item 4: Meta diverts a call the business has not
   * accepted or rejected within `timeout_seconds` of ringing). When set, the window ends there if earlier, so the
   * bridge gives up before Meta takes the caller to voicemail. Unset: no voicemail.
   */
  readonly voicemailTimeoutMs?: number;
}

/**
 * How long the agent may ring: the configured ring timeout, bounded by what is left of Meta's
 * window (or of the voicemail timeout, if earlier) so that an agent never answers a call Meta has
 * already ended or diverted to voicemail. Zero when the window is
 * already spent (then do not ring at all).
 */
export function ringTimeoutWithinMetaWindow(input: MetaWindowInput): number {
  const windowMs = Math.min(
    input.windowMs ?? META_ANSWER_WINDOW_MS,
    input.voicemailTimeoutMs ?? Number.POSITIVE_INFINITY,
  );
  const marginMs = input.marginMs ?? META_ACCEPT_MARGIN_MS;
  const left = input.connectAt + windowMs - marginMs - input.now;
  return Math.max(0, Math.min(input.configuredMs, left));
}
