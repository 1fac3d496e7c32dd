/**
 * The call state machine. States are string literals; `transition` is the only place that decides
 * whether a move is legal, and stores persist a move with a conditional write on the expected
 * state, so duplicate webhooks, SQS redeliveries and racing workers cannot double-act.
 *
 * ```
 *  user-initiated:      admitting ─▶ queued ─▶ claimed ─▶ pre-accepted ─▶ ringing ─▶ answered ─▶ ended
 *                           │           │         │            │              │           │
 *                           └───────────┴─────────┴────────────┴──────────────┴───────────┴──▶ ended
 * ```
 * `admitting` is held only while the webhook function runs its checks; `queued` means one call job
 * is on the job queue; `claimed` means a media worker owns the call. Every state may end.
 */

/** Every state a call can be in. */
export const CALL_STATES = ['admitting', 'queued', 'claimed', 'pre-accepted', 'ringing', 'answered', 'ended'] as const;
export type CallState = (typeof CALL_STATES)[number];

/** Who started the call. */
export type CallDirection = 'user-initiated' | 'business-initiated';

/** Why a call ended. Stable strings: dashboards and the control API expose them. */
export type EndReason =
  | 'caller-hung-up'
  | 'agent-hung-up'
  | 'terminated-before-connect'
  | 'meta-terminated'
  | 'sanctioned-caller'
  | 'after-hours'
  | 'over-capacity'
  | 'number-not-configured'
  | 'stale-connect'
  | 'unanswered'
  | 'rejected-by-user'
  | 'sip-rejected'
  /** Meta refused a business-initiated `connect` (138006, 138012, …); the record's `metaError` says why. */
  | 'meta-refused'
  /**
   * Meta ended a business-initiated call before it rang: the bridge did not apply Meta's SDP answer
   * (ICE+DTLS) in time (M-TRB 138007). A bridge failure.
   */
  | 'meta-connect-timeout'
  /** The user's WhatsApp client could not set the call up or reach Meta's relay (M-TRB 138019, 138020). */
  | 'whatsapp-setup-failed'
  /** The user's WhatsApp client could not send media, or no media signals came (M-TRB 138022, 138023). */
  | 'whatsapp-media-failed'
  /**
   * The user's WhatsApp client received no media from the bridge for too long: 20 s from the start or
   * 30 s during the call (M-TRB 138021). A bridge failure.
   */
  | 'no-media-from-bridge'
  | 'media-failed'
  /**
   * Meta offered SDES-SRTP (the number's `srtp_key_exchange_protocol` is `SDES`, M-SET) and the bridge speaks
   * DTLS-SRTP only: refused at once; set the number back to `DTLS`.
   */
  | 'unsupported-key-exchange'
  /**
   * The bridge ended a live call because its media worker was stopped: Ctrl-C on the local stack,
   * or a worker draining on SIGTERM whose calls outlived the drain. Planned, not a failure.
   */
  | 'bridge-shutdown'
  /**
   * The call's media worker stopped heartbeating (crashed, killed, lost its network) and another
   * worker's reaper ended the call: its media died with the worker.
   */
  | 'worker-lost'
  /** The bridge itself failed handling the call (an unexpected error); the logs say which. */
  | 'bridge-error';

/** What can happen to a call. */
export type CallEvent =
  | { type: 'admitted' }
  | { type: 'claimed' }
  | { type: 'pre-accepted' }
  | { type: 'ringing' }
  | { type: 'answered' }
  | { type: 'ended'; reason: EndReason };

const NEXT: Record<Exclude<CallEvent['type'], 'ended'>, { from: readonly CallState[]; to: CallState }> = {
  admitted: { from: ['admitting'], to: 'queued' },
  claimed: { from: ['queued'], to: 'claimed' },
  'pre-accepted': { from: ['claimed'], to: 'pre-accepted' },
  ringing: { from: ['claimed', 'pre-accepted'], to: 'ringing' },
  answered: { from: ['claimed', 'pre-accepted', 'ringing'], to: 'answered' },
};

/** A legal move: the states it may start from (the write's condition) and where it lands. */
export interface Transition {
  readonly from: readonly CallState[];
  readonly to: CallState;
}

/**
 * The one transition function. Returns the move for `event`, or `undefined` when the event is not
 * legal from `current` (a duplicate, a late event, or an event for an ended call).
 */
export function transition(current: CallState, event: CallEvent): Transition | undefined {
  const move = movesFor(event);
  return move.from.includes(current) ? move : undefined;
}

/** The move for an event regardless of the current state: what a conditional write needs. */
export function movesFor(event: CallEvent): Transition {
  if (event.type === 'ended') {
    return { from: CALL_STATES.filter((s) => s !== 'ended'), to: 'ended' };
  }
  return NEXT[event.type];
}

/** True once nothing more can happen to the call. */
export function isFinal(state: CallState): boolean {
  return state === 'ended';
}
