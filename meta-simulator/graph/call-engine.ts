/**
 * The simulated Meta call state machine: one record per call, one pure {@link transition} function, Meta's
 * timers on an injectable {@link SimClock}, and the webhooks each step emits.
 *
 * Behaviour is specified by meta-calling-api.md §7 item 3; the sections cited inline are where Meta's
 * behaviour bites.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import { parsePhoneNumberFromString } from 'libphonenumber-js';
import type { Logger } from 'pino';
import type { Delivery, SendOptions } from '../webhooks/emitter.ts';
import {
  businessCallConnect,
  type CallDirection,
  type CallTerminateInput,
  callErrors,
  callStatus,
  callTerminate,
  type IdGenerator,
  permissionReply,
  type SimBusiness,
  type SimUser,
  userCallConnect,
  voicemailMessage,
  type WebhookChange,
  type WebhookError,
} from '../webhooks/payloads.ts';
import type { SimClock, SimTimer } from './clock.ts';
import {
  bicUnavailable,
  callErrorEntry,
  callingNotEnabled,
  concurrentCallLimit,
  duplicateCall,
  GraphError,
  invalidParameter,
  sipEnabled,
} from './errors.ts';
import {
  type AcceptedStatusScript,
  isBsuid,
  type PermissionEngine,
  type UserDirectory,
  userKey,
} from './permissions.ts';
import type { SettingsStore } from './settings.ts';

// ---------------------------------------------------------------------------------------------------------------
// Media seam
// ---------------------------------------------------------------------------------------------------------------

/**
 * The part of the media helper's `RelayPeer` (Meta's relay, one per call) the engine drives. The default
 * factory in `simulator.ts` returns the real `RelayPeer`.
 */
export interface SimMediaPeer {
  /** Meta's SDP offer for a user-initiated call. */
  createOffer(): Promise<string>;
  /** Apply the business's SDP answer (pre_accept/accept). */
  acceptAnswer(sdp: string): Promise<void>;
  /** Business-initiated: business offer in, Meta's answer out. */
  answerOffer(sdp: string): Promise<string>;
  /** Epoch ms of the first packet of business media, if any. */
  readonly firstBusinessMediaAt?: number | undefined;
  /** Epoch ms of the latest packet of business media, if any. */
  readonly lastBusinessMediaAt?: number | undefined;
  /**
   * Calls `cb` once, when the business's first media packet arrives (the real relay does; fakes may not).
   * Returns an unsubscribe function.
   */
  onFirstBusinessMedia?(cb: () => void): () => void;
  /** Counters; the real relay's include `packetsReceived` (packets received from the business). */
  stats?(): object;
  /**
   * ICE+DTLS state of the relay (`connected` once the business applied Meta's SDP and completed ICE and DTLS).
   * A peer without it counts as connected at once.
   */
  readonly connectionState?: string;
  /** Subscribe to {@link connectionState} changes; returns an unsubscribe function. */
  onConnectionStateChange?(cb: (state: string) => void): () => void;
  /**
   * Business-initiated: the user picked up, so the user's audio may flow. Before this the relay sends the
   * business nothing (the phone is ringing, M-BIC).
   */
  startUserMedia?(): void;
  /** Release sockets and timers. */
  close(): Promise<void> | void;
}

/** Creates relays and validates business SDP (the media helper's `validateBusinessSdp`). */
export interface MediaFactory<P extends SimMediaPeer = SimMediaPeer> {
  /** A fresh relay for one call. */
  createPeer(opts: { allowG711: boolean; keyExchange: 'DTLS' | 'SDES'; callId: string }): P;
  /** Meta's SDP validation (§5.1, §7 item 5). */
  validateSdp(
    sdp: string,
    opts: { type: 'offer' | 'answer'; allowG711: boolean; keyExchange: 'DTLS' | 'SDES' },
  ): { ok: true } | { ok: false; details: string };
}

/** Where the engine sends webhooks. Implementations must never reject (failures are logged by the sink). */
export interface WebhookSink {
  /** Deliver changes (one POST); resolves with the delivery record, or undefined if it could not be sent. */
  deliver(changes: WebhookChange[], opts?: SendOptions): Promise<Delivery | undefined>;
}

// ---------------------------------------------------------------------------------------------------------------
// State machine
// ---------------------------------------------------------------------------------------------------------------

/**
 * Call states.
 * - `offered`: UIC, `connect` (offer) sent, waiting for the business.
 * - `pre_accepted`: UIC, business answer applied via `pre_accept` (caller UI shows "Ringing", §3.2).
 * - `answered_by_media`: UIC, business media reached the caller before any `accept`. WhatsApp clients treat "a
 *   media packet or an accept signal, whichever comes first" as the answer (M-FAQ): the caller sees a connected
 *   call with its timer running while Meta still waits for `accept` (and still ends the call unanswered at the
 *   deadline without one). A product bug made visible, never a state a correct bridge causes.
 * - `dialing`: BIC, business offer accepted by Graph, Meta's `connect` (answer) not yet ringing.
 * - `ringing`: BIC, RINGING status sent, user's phone rings.
 * - `accepted`: call connected (UIC `accept` or BIC user pickup); `start_time` set.
 * - `ended`: `terminate` sent (or the simulator stopped).
 */
export type CallState = 'offered' | 'pre_accepted' | 'answered_by_media' | 'dialing' | 'ringing' | 'accepted' | 'ended';

/** Inputs of the state machine. */
export type CallEventType =
  | 'pre_accept'
  | 'accept'
  | 'reject'
  | 'business_media'
  | 'business_terminate'
  | 'user_hangup'
  | 'unanswered_timeout'
  | 'ring'
  | 'user_accept'
  | 'user_reject'
  | 'ring_timeout'
  | 'connect_timeout'
  | 'media_timeout'
  | 'voicemail'
  | 'client_failure'
  | 'shutdown';

const TABLE: Record<CallDirection, Partial<Record<CallState, Partial<Record<CallEventType, CallState>>>>> = {
  USER_INITIATED: {
    offered: {
      pre_accept: 'pre_accepted',
      accept: 'accepted',
      reject: 'ended',
      business_media: 'answered_by_media',
      business_terminate: 'ended',
      user_hangup: 'ended',
      unanswered_timeout: 'ended',
      voicemail: 'ended',
      client_failure: 'ended',
      shutdown: 'ended',
    },
    // No `reject` once pre-accepted: the call is in progress; end it with `terminate` (M-TRB, REF26).
    pre_accepted: {
      accept: 'accepted',
      business_media: 'answered_by_media',
      business_terminate: 'ended',
      user_hangup: 'ended',
      unanswered_timeout: 'ended',
      voicemail: 'ended',
      client_failure: 'ended',
      shutdown: 'ended',
    },
    // The caller's client counts the call as started, so Meta's 20 s no-media rule runs (M-TRB, Corrections 1).
    answered_by_media: {
      accept: 'accepted',
      business_terminate: 'ended',
      user_hangup: 'ended',
      unanswered_timeout: 'ended',
      media_timeout: 'ended',
      voicemail: 'ended',
      client_failure: 'ended',
      shutdown: 'ended',
    },
    accepted: {
      business_terminate: 'ended',
      user_hangup: 'ended',
      media_timeout: 'ended',
      client_failure: 'ended',
      shutdown: 'ended',
    },
  },
  BUSINESS_INITIATED: {
    dialing: {
      ring: 'ringing',
      business_terminate: 'ended',
      ring_timeout: 'ended',
      connect_timeout: 'ended',
      client_failure: 'ended',
      shutdown: 'ended',
    },
    ringing: {
      user_accept: 'accepted',
      user_reject: 'ended',
      business_terminate: 'ended',
      ring_timeout: 'ended',
      client_failure: 'ended',
      shutdown: 'ended',
    },
    accepted: {
      business_terminate: 'ended',
      user_hangup: 'ended',
      media_timeout: 'ended',
      client_failure: 'ended',
      shutdown: 'ended',
    },
  },
};

/** The one transition function: next state, or `undefined` if `event` is not allowed in `state`. */
export function transition(direction: CallDirection, state: CallState, event: CallEventType): CallState | undefined {
  return TABLE[direction][state]?.[event];
}

// ---------------------------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------------------------

/** One entry of a call's log (mirrors WhatsApp Manager "Call Logs", §7 item 7). */
export interface CallLogEntry {
  /** Epoch ms on the simulator clock. */
  at: number;
  /** ISO form of `at`. */
  iso: string;
  /** `action` = Graph request, `webhook` = sent change, `state` = transition, `timer`, `user`, `error`. */
  kind: 'action' | 'webhook' | 'state' | 'timer' | 'user' | 'error';
  /** Short name, e.g. `pre_accept`, `connect`, `offered→pre_accepted`, `unanswered_timeout`. */
  name: string;
  /** Extra data (never secrets). */
  detail?: Record<string, unknown>;
}

/** Why a call ended. */
export type EndReason =
  | 'business_terminate'
  | 'business_reject'
  | 'user_hangup'
  | 'unanswered'
  | 'user_reject'
  | 'ring_timeout'
  | 'connect_timeout'
  | 'no_media'
  | 'media_gap'
  | 'voicemail'
  /** The user's WhatsApp client failed (138019, 138020, 138022, 138023: an injected fault, {@link CallEngine.failCall}). */
  | 'client_failure'
  | 'shutdown';

/** The engine's live record of one call. */
export interface CallRecord<P extends SimMediaPeer = SimMediaPeer> {
  readonly id: string;
  readonly direction: CallDirection;
  state: CallState;
  readonly user: SimUser;
  readonly userKey: string;
  readonly relay: P;
  readonly createdAt: number;
  /** Epoch ms when the call connected (`start_time`). */
  startedAt?: number;
  /**
   * UIC: what the caller's WhatsApp client took as the answer, whichever came first (M-FAQ): the `accept`, or
   * the business's first media packet (a product bug: the caller's timer starts while the agent still rings).
   */
  answeredBy?: 'accept' | 'media';
  /** UIC: epoch ms when the caller's client showed the call connected (its timer started). */
  callerAnsweredAt?: number;
  /** Epoch ms (engine clock) when the business's first media packet reached the relay. */
  firstBusinessMediaAt?: number;
  /** UIC: epoch ms (engine clock) when Meta applied the `accept`. */
  acceptedAt?: number;
  /** UIC: epoch ms (engine clock) when the `accept`'s 200 OK left for the business (after any injected delay). */
  acceptRespondedAt?: number;
  /** UIC: business packets the relay had received when Meta applied the `accept` (0 for a correct bridge). */
  businessPacketsBeforeAccept?: number;
  /** Epoch ms when it ended. */
  endedAt?: number;
  endReason?: EndReason;
  /** `status` of the terminate webhook. */
  terminateStatus?: 'COMPLETED' | 'FAILED';
  /** SDP Meta sent (UIC offer / BIC answer). */
  metaSdp?: string;
  /** SDP the business sent (UIC answer / BIC offer). */
  businessSdp?: string;
  /** The SDP given on pre_accept, which accept must repeat (§3.2). */
  preAcceptSdp?: string;
  bizOpaqueCallbackData?: string;
  /** Recording/transcription opt-ins the business sent with accept (UIC) or connect (BIC), as sent (M-REC). */
  optIns?: { recording?: Record<string, unknown>; transcription?: Record<string, unknown> };
  deeplinkPayload?: string;
  ctaPayload?: string;
  omitDirection?: boolean;
  readonly log: CallLogEntry[];
  /** Every state entered, in order. */
  readonly history: CallState[];
}

/** Timer values (ms). Defaults follow Meta; tests may use anything ≥ 1 ms. */
export interface CallTimers {
  /**
   * UIC: time after `connect` for the business to `accept` before Meta terminates the call as "Not Answered".
   * Meta: "about 30 to 60 seconds" (M-REF26, §3.2, §4.2); configurable within that window
   * from the CLI (`--unanswered-ms`). Default 30 000, the earliest Meta may give up, so a bridge is tested against the strictest case.
   * The deadline runs until `accept` (a pre-accepted call that is never accepted is also terminated), since the
   * caller's phone stops ringing either way.
   */
  unansweredMs: number;
  /** BIC: delay between `POST /calls connect` and the `connect` (answer) webhook. Meta: ~1 s (§2.8). */
  bicConnectDelayMs: number;
  /** BIC: how long the user's phone rings before the call is terminated unanswered. Undocumented (§4.2); 45 000. */
  bicRingTimeoutMs: number;
  /**
   * BIC: the `ACCEPTED` status is sent this long after pickup. M-BIC: it "will typically always arrive after the
   * call has been established… primarily sent for call event auditing" (§2.8), so a bridge must not wait for it.
   * Default 2000. A user's script can make it later, duplicated or lost (`acceptedStatus`).
   */
  bicAcceptedStatusDelayMs: number;
  /**
   * BIC: after the `connect` webhook carrying Meta's answer, the business must apply it and complete ICE+DTLS
   * within this time, or Meta terminates the call with `errors[138007]` (M-TRB: "Business did not apply the
   * offer/answer SDP from Cloud API in time") and the user's phone never rings. Meta gives no figure; default
   * 20 000.
   */
  bicConnectTimeoutMs: number;
  /** Terminate with 138021 if no business media arrives within this time of connect. Meta: 20 s (§4.2). */
  firstMediaTimeoutMs: number;
  /** Terminate with 138021 after this long without business media during the call. Meta: 30 s (§4.2). */
  mediaGapTimeoutMs: number;
  /** How often the media watchdog samples the relay. Default 250. */
  watchdogPollMs: number;
  /**
   * After a call is diverted to voicemail, how long the caller takes to leave the message before Meta delivers it
   * on `messages` (Corrections item 4: collection is best-effort; Meta gives no figure). Default 10 000.
   */
  voicemailRecordingMs: number;
  /**
   * Wall-clock wait for a call's previous webhook delivery before sending its next one. Not a Meta value: Meta
   * gives no ordering guarantee (§2.4). Default 2000; a held or failing delivery is overtaken after this.
   */
  webhookOrderWaitMs: number;
}

/** Default timers (Meta's values). */
export const DEFAULT_CALL_TIMERS: Readonly<CallTimers> = {
  unansweredMs: 30_000,
  bicConnectDelayMs: 1_000,
  bicRingTimeoutMs: 45_000,
  bicAcceptedStatusDelayMs: 2_000,
  bicConnectTimeoutMs: 20_000,
  firstMediaTimeoutMs: 20_000,
  mediaGapTimeoutMs: 30_000,
  watchdogPollMs: 250,
  voicemailRecordingMs: 10_000,
  webhookOrderWaitMs: 2_000,
};

/** Countries whose business numbers cannot place business-initiated calls (§4.4). */
export const BIC_BLOCKED_COUNTRIES = ['US', 'CA', 'EG', 'VN', 'NG'] as const;
const BLOCKED_CALLING_CODES: Record<string, string> = { '1': 'US', '20': 'EG', '84': 'VN', '234': 'NG', '90': 'TR' };

/**
 * Country of a business number if business-initiated calling is unavailable there, else undefined.
 * Uses libphonenumber (so +1 876 Jamaica is allowed) and falls back to the calling code for numbers it cannot
 * place (e.g. fictional 555 numbers count as US).
 */
export function bicBlockedCountry(displayPhoneNumber: string, blockTurkey: boolean): string | undefined {
  const blocked = new Set<string>([...BIC_BLOCKED_COUNTRIES, ...(blockTurkey ? ['TR'] : [])]);
  const country = parsePhoneNumberFromString(`+${displayPhoneNumber}`)?.country;
  if (country) return blocked.has(country) ? country : undefined;
  for (const len of [1, 2, 3]) {
    const c = BLOCKED_CALLING_CODES[displayPhoneNumber.slice(0, len)];
    if (c && blocked.has(c)) return c;
  }
  return undefined;
}

/**
 * The `terminate` error codes of a failing WhatsApp client (M-TRB), and in which of Meta's call states each can
 * happen: set-up failures before the call is connected, media failures once it is (138023 says "accepted").
 * 138021 also comes from the engine's own media watchdog (no business media).
 */
export const CLIENT_FAILURES: Readonly<Record<number, { when: 'setup' | 'any' | 'connected'; details: string }>> = {
  138019: { when: 'setup', details: 'The WhatsApp client could not set the call up' },
  138020: { when: 'any', details: "The WhatsApp client could not connect to Meta's media relay" },
  138021: { when: 'connected', details: 'The WhatsApp client received no media for too long' },
  138022: { when: 'connected', details: 'The WhatsApp client could not transmit media' },
  138023: { when: 'connected', details: 'The call was accepted but no media signals arrived; connectivity unknown' },
};

/**
 * Faults of the business number as a whole (Meta's account state, not one call), settable through the control
 * API (`POST /_sim/number/faults`) and the CLI (`number-faults`).
 */
export interface NumberFaults {
  /**
   * A sandbox/test number's allow list (§4.1 sandbox, M-TRB 131030): business-initiated calls to anyone else are
   * refused with 131030. Undefined: not a test number (no list).
   */
  testAllowList?: readonly string[];
  /**
   * No valid payment method (§4.3, M-TRB 131044): a user's call does not reach the business; Meta sends an
   * errors-only `calls` webhook with 131044 instead of `connect`.
   */
  paymentIssue?: boolean;
  /**
   * Calling paused for low quality (§4.6, M-TRB 138014): `business-initiated` refuses `connect` with 138014;
   * `user-initiated` hides the call button (the user cannot call, no webhook); `all` both.
   */
  callingPaused?: 'business-initiated' | 'user-initiated' | 'all';
}

/** Refusal of a simulated user call that never reaches the business (Meta sends no webhook then, §4.2). */
export class SimCallRefusedError extends Error {
  /** The Meta code the situation corresponds to (138002, 138003, 138000, 131055). */
  readonly code: number;
  /** @param code - Meta code; @param message - explanation */
  constructor(code: number, message: string) {
    super(message);
    this.name = 'SimCallRefusedError';
    this.code = code;
  }
}

/** No call with that id. */
export class UnknownCallError extends Error {
  /** @param id - the unknown call id */
  constructor(id: string) {
    super(`unknown call ${id}`);
    this.name = 'UnknownCallError';
  }
}

/** `waitFor` gave up. */
export class SimTimeoutError extends Error {
  /** @param message - what was awaited */
  constructor(message: string) {
    super(message);
    this.name = 'SimTimeoutError';
  }
}

/** Input of {@link CallEngine.placeUserCall}. */
export interface PlaceUserCallInput {
  user: SimUser;
  deeplinkPayload?: string;
  ctaPayload?: string;
  omitDirection?: boolean;
  /**
   * Fault injection: per webhook of this call, passed to the emitter's `send`; `acceptResponseDelayMs` holds the
   * `accept`'s 200 OK this long after Meta applied it (engine clock), like the return leg of a far-away Graph API,
   * so a bridge that sends media before its `accept` returned is caught.
   */
  faults?: { connect?: SendOptions; terminate?: SendOptions; acceptResponseDelayMs?: number };
}

/** Options of {@link CallEngine}. */
export interface CallEngineOptions<P extends SimMediaPeer> {
  business: SimBusiness;
  clock: SimClock;
  timers?: Partial<CallTimers>;
  media: MediaFactory<P>;
  webhooks: WebhookSink;
  permissions: PermissionEngine;
  settings: SettingsStore;
  users: UserDirectory;
  ids: IdGenerator;
  logger: Logger;
  /** Max concurrent calls per business number (138002). Meta: 1000 (§4.2). */
  maxConcurrentCalls?: number;
  /** Also refuse BIC for Turkish business numbers (older Meta docs, §4.4). Default false. */
  blockTurkeyBic?: boolean;
  /** BIC initiate attempts per rolling 24 h per business number (138005 beyond). Meta: 10 000 (§3.1). */
  maxCallAttemptsPer24h?: number;
  /**
   * `status` of the terminate for unanswered calls (UIC not answered, BIC not picked up / rejected). Meta documents
   * only `COMPLETED | FAILED`; the one observation is COMPLETED for unanswered calls, and the answered signal is
   * `start_time` (§2.7). Default `COMPLETED`. Media failures always use `FAILED` with `errors[]`.
   */
  unansweredTerminateStatus?: 'COMPLETED' | 'FAILED';
}

/** Resolve when `p` settles or after `ms` of wall time, whichever is first (never rejects). */
function waitAtMost(p: Promise<unknown>, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    t.unref();
    p.then(
      () => {
        clearTimeout(t);
        resolve();
      },
      () => {
        clearTimeout(t);
        resolve();
      },
    );
  });
}

/** `error_data.details` for a relay failure: `SDP Validation error: <reason>` (no doubled prefix). */
function sdpError(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return `SDP Validation error: ${msg.replace(/^SDP Validation error:\s*/, '')}`;
}

const ACTIONS = new Set(['connect', 'pre_accept', 'accept', 'reject', 'terminate']);

/**
 * `announcement_language` values the recording/transcription opt-ins accept (M-REC: "a fixed list"). The reference
 * (meta-calling-api.md) does not reproduce Meta's list; these are the locales it names: `en_US` (REF26/REC samples),
 * `es_ES` and `nl` (TRX: accepted, announced in English).
 */
export const ANNOUNCEMENT_LANGUAGES: readonly string[] = ['en_US', 'es_ES', 'nl'];
/** Maximum length of an opt-in's `purpose` (M-REC). */
export const MAX_OPT_IN_PURPOSE = 250;
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const sec = (ms: number): number => Math.floor(ms / 1000);

interface Internal {
  timers: Set<SimTimer>;
  outbox: Promise<unknown>;
  actions: Promise<unknown>;
  faults: PlaceUserCallInput['faults'];
  watchdog?: { progressAt: number; lastSeen: number | undefined };
  /** BIC: stops waiting for the relay's ICE+DTLS before ringing. */
  offConnection?: () => void;
}

/**
 * Runs every simulated call of one business number: Graph `/calls` actions, user-side events, timers and
 * webhooks. Emits `state` events (`(call, from, to)`).
 */
export class CallEngine<P extends SimMediaPeer = SimMediaPeer> extends EventEmitter {
  /** Effective timers. */
  readonly timers: Readonly<CallTimers>;
  readonly #o: CallEngineOptions<P>;
  readonly #calls = new Map<string, CallRecord<P>>();
  readonly #internal = new Map<string, Internal>();
  readonly #log: Logger;
  readonly #maxConcurrent: number;
  #attempts: number[] = [];
  /** BIC pairs reserved while the relay builds its answer (user key → call id). */
  readonly #pending = new Map<string, string>();
  #closed = false;
  #numberFaults: NumberFaults = {};

  /** Create an engine; nothing runs until calls are placed. */
  constructor(opts: CallEngineOptions<P>) {
    super();
    this.#o = opts;
    this.timers = { ...DEFAULT_CALL_TIMERS, ...opts.timers };
    for (const [k, v] of Object.entries(this.timers)) {
      if (!(typeof v === 'number' && v >= 1)) throw new RangeError(`timers.${k} must be a number ≥ 1 ms`);
    }
    this.#maxConcurrent = opts.maxConcurrentCalls ?? 1000;
    this.#log = opts.logger.child({ component: 'call-engine' });
  }

  /** Every call, oldest first. */
  list(): CallRecord<P>[] {
    return [...this.#calls.values()];
  }

  /** A call by id. */
  get(id: string): CallRecord<P> | undefined {
    return this.#calls.get(id);
  }

  /** Calls not yet ended. */
  active(): CallRecord<P>[] {
    return this.list().filter((c) => c.state !== 'ended');
  }

  /** The number's faults in force. */
  get numberFaults(): Readonly<NumberFaults> {
    return this.#numberFaults;
  }

  /** Sets (merges) the number's faults; a member set to `undefined` clears it. Returns the faults in force. */
  setNumberFaults(patch: NumberFaults): Readonly<NumberFaults> {
    const next: Record<string, unknown> = { ...this.#numberFaults, ...patch };
    for (const [k, v] of Object.entries(next)) if (v === undefined || v === false) delete next[k];
    this.#numberFaults = next as NumberFaults;
    this.#log.info({ faults: this.#numberFaults }, 'number faults set');
    return this.#numberFaults;
  }

  /**
   * The user's WhatsApp client fails: Meta ends the call with `status: FAILED` and `errors[{code}]` on the
   * terminate (M-TRB, REF26 sample), `start_time` included once connected. An injected per-call fault
   * (`POST /_sim/calls/{id}/fail`, CLI `fail`), allowed where Meta would send the code ({@link CLIENT_FAILURES}).
   *
   * @throws {@link SimCallRefusedError} for an unknown code, or a state where the code cannot happen.
   */
  failCall(id: string, code: number, details?: string): CallRecord<P> {
    const call = this.#require(id);
    const failure = CLIENT_FAILURES[code];
    if (!failure) {
      throw new SimCallRefusedError(
        0,
        `${code} is not a client failure code (${Object.keys(CLIENT_FAILURES).join(', ')})`,
      );
    }
    if (call.state === 'ended') throw new SimCallRefusedError(0, `call ${id} already ended`);
    const connected = call.state === 'accepted';
    if ((failure.when === 'setup' && connected) || (failure.when === 'connected' && !connected)) {
      throw new SimCallRefusedError(
        0,
        `${code} happens ${failure.when === 'setup' ? 'before' : 'once'} the call is connected; call ${id} is ${call.state}`,
      );
    }
    this.#note(call, 'user', 'client_failure', { code });
    this.#end(call, 'client_failure', 'client_failure', {
      status: 'FAILED',
      errors: [this.#callError(code, details ?? failure.details)],
    });
    return call;
  }

  // -------------------------------------------------------------------------------------------------------------
  // User side
  // -------------------------------------------------------------------------------------------------------------

  /**
   * A WhatsApp user calls the business: create Meta's relay offer, send the `connect` webhook (§2.6), start the
   * unanswered timer. Refusals that Meta would not surface to the business (no webhook) throw
   * {@link SimCallRefusedError}.
   */
  async placeUserCall(input: PlaceUserCallInput): Promise<CallRecord<P>> {
    this.#assertOpen();
    const { settings, users } = this.#o;
    const user = users.upsert(input.user) as SimUser;
    const key = userKey(user);
    if (settings.sipEnabled) {
      throw new SimCallRefusedError(131055, 'the number is SIP-enabled; calls go to the SIP edge, not webhooks (§5.3)');
    }
    if (!settings.callingEnabled) throw new SimCallRefusedError(138000, 'calling is not enabled on the number');
    const paused = this.#numberFaults.callingPaused;
    if (paused === 'user-initiated' || paused === 'all') {
      // A user-initiated pause hides the call button (§4.6): the user cannot call, the business hears nothing.
      throw new SimCallRefusedError(
        138014,
        'user-initiated calling is paused for low quality: the call button is hidden',
      );
    }
    if (this.#numberFaults.paymentIssue) {
      // §4.3 / M-TRB: without a valid payment method the call does not reach the business; Meta sends an
      // errors-only webhook with 131044 instead of `connect`.
      const details = 'The business has no valid payment method attached; the user-initiated call was not connected';
      const e = callErrorEntry(131044, details);
      void this.#o.webhooks.deliver([
        callErrors({
          business: this.#o.business,
          errors: [{ code: e.code, message: e.message, href: e.href, details }],
        }),
      ]);
      throw new SimCallRefusedError(131044, details);
    }
    if (!settings.isOpenAt(this.#o.clock.now())) {
      // Outside call_hours the client offers chat or a callback request instead of calling (§3.6): no webhook.
      throw new SimCallRefusedError(0, 'outside call_hours: the WhatsApp client does not place the call');
    }
    this.#assertCapacity(key, (code, msg) => new SimCallRefusedError(code, msg));
    const id = this.#o.ids.callId();
    const relay = this.#o.media.createPeer({
      allowG711: settings.allowG711,
      keyExchange: settings.keyExchange,
      callId: id,
    });
    const call = this.#newRecord(id, 'USER_INITIATED', 'offered', user, key, relay, input.faults);
    relay.onFirstBusinessMedia?.(() => this.#firstBusinessMedia(call));
    if (input.deeplinkPayload !== undefined) call.deeplinkPayload = input.deeplinkPayload;
    if (input.ctaPayload !== undefined) call.ctaPayload = input.ctaPayload;
    if (input.omitDirection) call.omitDirection = true;
    this.#note(call, 'user', 'dial', { user: key });
    let offer: string;
    try {
      offer = await relay.createOffer();
    } catch (err) {
      this.#calls.delete(id);
      await this.#closeRelay(call);
      throw err;
    }
    call.metaSdp = offer;
    const connect = userCallConnect({
      business: this.#o.business,
      user,
      callId: id,
      sdp: offer,
      timestamp: sec(this.#o.clock.now()),
      ...(call.deeplinkPayload !== undefined ? { deeplinkPayload: call.deeplinkPayload } : {}),
      ...(call.ctaPayload !== undefined ? { ctaPayload: call.ctaPayload } : {}),
      ...(call.omitDirection ? { omitDirection: true } : {}),
    });
    this.#emit(call, connect, 'connect', input.faults?.connect);
    // A user calling opens or refreshes the customer-service window, answered or not (§4.5).
    this.#o.permissions.openServiceWindow(key);
    this.#schedule(call, this.timers.unansweredMs, 'unanswered_timeout', () => {
      this.#end(call, 'unanswered_timeout', 'unanswered', { status: this.#unansweredStatus() });
    });
    // Voicemail TIMEOUT: a call the business has not accepted or rejected within timeout_seconds is diverted
    // (Corrections item 4). Counted from the connect — the caller's phone rings from then — the earliest reading,
    // so a bridge is tested against the strictest case.
    const voicemailMs = settings.voicemail?.timeoutMs;
    if (voicemailMs !== undefined) {
      this.#schedule(call, voicemailMs, 'voicemail_timeout', () => this.#divertToVoicemail(call, 'TIMEOUT'));
    }
    // A user calling a number with callback permission enabled grants a temporary permission (§2.9, §3.6).
    if (settings.callbackPermissionEnabled && this.#o.permissions.status(key).status !== 'permanent') {
      const { expiresAt } = this.#o.permissions.grant(key, { permanent: false });
      const change = permissionReply({
        business: this.#o.business,
        user,
        response: 'accept',
        isPermanent: false,
        ...(expiresAt !== undefined ? { expirationTimestamp: sec(expiresAt) } : {}),
        source: 'automatic',
        contextId: id,
        timestamp: sec(this.#o.clock.now()),
      });
      this.#emit(call, change, 'call_permission_reply(automatic)');
    }
    return call;
  }

  /** The user hangs up (any non-ended state). Sends `terminate` (§2.7). */
  hangUp(id: string): CallRecord<P> {
    const call = this.#require(id);
    if (call.state === 'ended') throw new SimCallRefusedError(0, `call ${id} already ended`);
    if (call.state === 'dialing') throw new SimCallRefusedError(0, `call ${id} is not ringing yet`);
    this.#note(call, 'user', 'hangup');
    // Declining a ringing business-initiated call is a reject (REJECTED status + terminate).
    if (call.state === 'ringing') {
      this.#userReject(call);
      return call;
    }
    const answered = call.state === 'accepted';
    this.#end(call, 'user_hangup', 'user_hangup', { status: answered ? 'COMPLETED' : this.#unansweredStatus() });
    return call;
  }

  /** Resolve once `call` has entered `state`; rejects if it ends without reaching it or on timeout. */
  waitFor(id: string, state: CallState, timeoutMs: number): Promise<CallRecord<P>> {
    const call = this.#require(id);
    if (call.history.includes(state)) return Promise.resolve(call);
    if (call.state === 'ended') {
      return Promise.reject(new SimTimeoutError(`call ${id} ended (${call.endReason}) without reaching ${state}`));
    }
    return new Promise((resolve, reject) => {
      const onState = (c: CallRecord<P>): void => {
        if (c.id !== id) return;
        if (c.state === state) {
          cleanup();
          resolve(c);
        } else if (c.state === 'ended') {
          cleanup();
          reject(new SimTimeoutError(`call ${id} ended (${c.endReason}) without reaching ${state}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new SimTimeoutError(`call ${id} did not reach ${state} within ${timeoutMs} ms (state ${call.state})`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.off('state', onState);
      };
      this.on('state', onState);
    });
  }

  // -------------------------------------------------------------------------------------------------------------
  // Graph side: POST /{pnid}/calls
  // -------------------------------------------------------------------------------------------------------------

  /**
   * Handle a `POST /{pnid}/calls` body (already JSON-parsed and authenticated). Returns the success body or
   * throws {@link GraphError}. Validation order and bodies follow §3.1–§3.2.
   */
  async handleAction(body: unknown): Promise<Record<string, unknown>> {
    this.#assertOpen();
    if (!isObj(body)) throw invalidParameter('Request body must be a JSON object');
    // While SIP is on, the Graph calling API is refused outright (§5.3).
    if (this.#o.settings.sipEnabled) throw sipEnabled();
    if (body.messaging_product === undefined) throw invalidParameter('The parameter messaging_product is required.');
    if (body.messaging_product !== 'whatsapp') {
      throw invalidParameter(
        `Invalid value for messaging_product: '${String(body.messaging_product)}'. Expected 'whatsapp'.`,
      );
    }
    if (typeof body.action !== 'string' || !ACTIONS.has(body.action)) {
      throw invalidParameter(
        body.action === undefined
          ? 'The parameter action is required.'
          : `Invalid action '${String(body.action)}'. Expected one of connect, pre_accept, accept, reject, terminate.`,
      );
    }
    const action = body.action as 'connect' | 'pre_accept' | 'accept' | 'reject' | 'terminate';
    const opaque = body.biz_opaque_callback_data;
    if (opaque !== undefined) {
      if (typeof opaque !== 'string') throw invalidParameter('biz_opaque_callback_data must be a string');
      if (opaque.length > 512) {
        throw invalidParameter(`biz_opaque_callback_data must be at most 512 characters (got ${opaque.length})`);
      }
    }
    if (action === 'connect') return this.#connect(body, opaque as string | undefined);

    if (typeof body.call_id !== 'string' || body.call_id === '') {
      throw invalidParameter('The parameter call_id is required.');
    }
    let session: { sdp: string } | undefined;
    if (action === 'pre_accept' || action === 'accept') session = this.#session(body, action, 'answer');
    const optIns = action === 'accept' ? this.#validateOptIns(body) : undefined;
    const call = this.#calls.get(body.call_id);
    if (!call) throw invalidParameter(`Invalid call_id: no call with id ${body.call_id} for this phone number`);
    if (optIns !== undefined) call.optIns = optIns;
    // Serialise actions per call so a slow pre_accept cannot race its accept.
    return this.#serial(call, () => this.#uicAction(call, action, session, opaque as string | undefined));
  }

  #session(body: Record<string, unknown>, action: string, expected: 'offer' | 'answer'): { sdp: string } {
    const s = body.session;
    if (!isObj(s)) throw invalidParameter(`The parameter session is required for action ${action}.`);
    if (s.sdp_type !== expected) {
      // The parameter tables say "offer" for pre_accept/accept; the API requires "answer" (§3.2, pitfall 1).
      throw invalidParameter(
        `Invalid session.sdp_type '${String(s.sdp_type)}' for action ${action}: expected '${expected}'.`,
      );
    }
    if (typeof s.sdp !== 'string' || s.sdp.trim() === '') {
      throw invalidParameter(`The parameter session.sdp is required for action ${action}.`);
    }
    return { sdp: s.sdp };
  }

  /**
   * `recording` / `transcription` opt-ins on connect/accept (2026, §2.11; Corrections item 7; M-REC): `status` is
   * ENABLED or DISABLED; when ENABLED, `purpose` is mandatory and at most 250 characters and `announcement_language`
   * comes from Meta's fixed list ({@link ANNOUNCEMENT_LANGUAGES}). Anything else is a request error (100).
   */
  #validateOptIns(body: Record<string, unknown>): CallRecord['optIns'] {
    const sent: NonNullable<CallRecord['optIns']> = {};
    for (const key of ['recording', 'transcription'] as const) {
      const v = body[key];
      if (v === undefined) continue;
      sent[key] = v as Record<string, unknown>;
      if (!isObj(v) || (v.status !== 'ENABLED' && v.status !== 'DISABLED')) {
        throw invalidParameter(`${key}.status must be ENABLED or DISABLED`);
      }
      if (v.status !== 'ENABLED') continue;
      if (typeof v.purpose !== 'string' || v.purpose.trim() === '') {
        throw invalidParameter(`The parameter ${key}.purpose is required when ${key}.status is ENABLED.`);
      }
      if (v.purpose.length > MAX_OPT_IN_PURPOSE) {
        throw invalidParameter(
          `${key}.purpose must be at most ${MAX_OPT_IN_PURPOSE} characters (got ${v.purpose.length}).`,
        );
      }
      if (typeof v.announcement_language !== 'string' || !ANNOUNCEMENT_LANGUAGES.includes(v.announcement_language)) {
        throw invalidParameter(
          `Invalid ${key}.announcement_language '${String(v.announcement_language)}'. Supported: ${ANNOUNCEMENT_LANGUAGES.join(', ')}.`,
        );
      }
    }
    return Object.keys(sent).length === 0 ? undefined : sent;
  }

  async #uicAction(
    call: CallRecord<P>,
    action: 'pre_accept' | 'accept' | 'reject' | 'terminate',
    session: { sdp: string } | undefined,
    opaque: string | undefined,
  ): Promise<Record<string, unknown>> {
    this.#note(call, 'action', action, opaque !== undefined ? { biz_opaque_callback_data: opaque } : undefined);
    if (call.state === 'ended') {
      // Acting on a completed/failed call or one the user already terminated (§3.2 possible errors).
      const err = invalidParameter(
        `Call ${call.id} has already ended (${call.terminateStatus ?? 'COMPLETED'}); action ${action} is not allowed.`,
      );
      this.#note(call, 'error', action, { code: err.code, details: err.details });
      throw err;
    }
    const event = action === 'terminate' ? 'business_terminate' : action;
    const next = transition(call.direction, call.state, event);
    if (next === undefined && call.direction === 'USER_INITIATED' && (action === 'accept' || action === 'reject')) {
      // REF26 lists "Accept/Reject an already In Progress/Completed/Failed call" among the errors; after
      // pre_accept the call is in progress and Meta's troubleshooting page says to end it with terminate (M-TRB).
      const err = invalidParameter(
        `Accept/Reject an already In Progress call: call ${call.id} is ${call.state}` +
          (action === 'reject' ? '; end it with action terminate.' : '.'),
      );
      this.#note(call, 'error', action, { code: err.code, details: err.details });
      throw err;
    }
    if (next === undefined) {
      const err = invalidParameter(
        call.direction === 'BUSINESS_INITIATED'
          ? `Action ${action} is not valid for business initiated call ${call.id}.`
          : `Action ${action} is not valid for call ${call.id} in state ${call.state}.`,
      );
      this.#note(call, 'error', action, { code: err.code, details: err.details });
      throw err;
    }
    try {
      if (action === 'pre_accept' && session) {
        await this.#applyAnswer(call, session.sdp);
        if ((call.state as CallState) === 'ended') {
          throw invalidParameter(`Call ${call.id} has already ended; action pre_accept is not allowed.`);
        }
        call.preAcceptSdp = session.sdp;
        this.#setState(call, 'pre_accept');
      } else if (action === 'accept' && session) {
        if (call.preAcceptSdp !== undefined) {
          if (session.sdp !== call.preAcceptSdp) {
            throw invalidParameter('The SDP answer in accept must be the same as the SDP answer sent in pre_accept.');
          }
        } else {
          await this.#applyAnswer(call, session.sdp);
        }
        // The caller may have hung up while the SDP was being applied.
        if ((call.state as CallState) === 'ended') {
          throw invalidParameter(`Call ${call.id} has already ended; action accept is not allowed.`);
        }
        if (opaque !== undefined) call.bizOpaqueCallbackData = opaque;
        this.#connected(call, 'accept');
        call.acceptedAt = call.startedAt;
        call.answeredBy ??= 'accept';
        call.callerAnsweredAt ??= call.acceptedAt;
        const counted = (call.relay.stats?.() as { packetsReceived?: unknown } | undefined)?.packetsReceived;
        call.businessPacketsBeforeAccept =
          typeof counted === 'number' ? counted : call.firstBusinessMediaAt === undefined ? 0 : 1;
        const delay = this.#internal.get(call.id)?.faults?.acceptResponseDelayMs;
        if (delay !== undefined && delay > 0) {
          await new Promise<void>((resolve) => this.#o.clock.setTimeout(resolve, delay));
        }
        call.acceptRespondedAt = this.#o.clock.now();
      } else if (action === 'reject') {
        // Voicemail REJECT: the business's reject diverts the caller to voicemail (Corrections item 4).
        if (this.#o.settings.voicemail?.onReject) this.#divertToVoicemail(call, 'REJECT');
        else this.#end(call, 'reject', 'business_reject', { status: this.#unansweredStatus() });
      } else {
        const answered = call.state === 'accepted';
        this.#end(call, 'business_terminate', 'business_terminate', {
          status: answered ? 'COMPLETED' : this.#unansweredStatus(),
        });
      }
    } catch (err) {
      if (err instanceof GraphError) this.#note(call, 'error', action, { code: err.code, details: err.details });
      throw err;
    }
    return { messaging_product: 'whatsapp', success: true };
  }

  async #applyAnswer(call: CallRecord<P>, sdp: string): Promise<void> {
    const { settings, media } = this.#o;
    const v = media.validateSdp(sdp, {
      type: 'answer',
      allowG711: settings.allowG711,
      keyExchange: settings.keyExchange,
    });
    if (!v.ok) throw invalidParameter(`SDP Validation error: ${v.details}`);
    try {
      await call.relay.acceptAnswer(sdp);
    } catch (err) {
      throw invalidParameter(sdpError(err));
    }
    call.businessSdp = sdp;
  }

  async #connect(body: Record<string, unknown>, opaque: string | undefined): Promise<Record<string, unknown>> {
    const { settings, permissions, users, business, media } = this.#o;
    if (!settings.callingEnabled) throw callingNotEnabled();
    const blocked = bicBlockedCountry(business.displayPhoneNumber, this.#o.blockTurkeyBic ?? false);
    if (blocked) throw bicUnavailable(blocked);
    const paused = this.#numberFaults.callingPaused;
    if (paused === 'business-initiated' || paused === 'all') {
      throw new GraphError(
        138014,
        'Business-initiated calling is temporarily disabled for this phone number because of low call quality',
      );
    }
    const to = body.to;
    const recipient = body.recipient;
    if (to !== undefined && (typeof to !== 'string' || !/^\+?\d{6,15}$/.test(to))) {
      throw invalidParameter(`Invalid parameter to: '${String(to)}' is not a valid WhatsApp phone number.`);
    }
    // BSUID-F: a BSUID is a country prefix, a dot and up to 128 alphanumerics.
    if (recipient !== undefined && !isBsuid(recipient)) {
      throw invalidParameter(`Invalid parameter recipient: '${String(recipient)}' is not a business-scoped user ID.`);
    }
    if (to === undefined && recipient === undefined) throw invalidParameter('The parameter to is required.');
    const session = this.#session(body, 'connect', 'offer');
    const optIns = this.#validateOptIns(body);
    const now = this.#o.clock.now();
    this.#attempts = this.#attempts.filter((t) => now - t < 86_400_000);
    const maxAttempts = this.#o.maxCallAttemptsPer24h ?? 10_000;
    if (this.#attempts.length >= maxAttempts) {
      throw new GraphError(
        138005,
        `Limit of ${maxAttempts} call attempts per 24 hours reached for this business phone number`,
      );
    }
    this.#attempts.push(now);
    // `to` wins over `recipient` (§3.1).
    const user = users.resolve({
      ...(typeof to === 'string' ? { to: to.replace(/^\+/, '') } : {}),
      ...(typeof recipient === 'string' ? { recipient } : {}),
    }) as SimUser;
    const key = userKey(user);
    const allowList = this.#numberFaults.testAllowList;
    if (allowList !== undefined && (user.waId === undefined || !allowList.includes(user.waId))) {
      // A test number calls only the numbers on its allow list (§4.1, M-TRB 131030).
      throw new GraphError(
        131030,
        `${user.waId ?? user.userId ?? 'The recipient'} is not in the test number's allowed list`,
      );
    }
    if (users.script(key).uncallable) {
      throw new GraphError(
        138001,
        'The recipient is not on WhatsApp, has not accepted the ToS, or uses an unsupported client',
      );
    }
    permissions.assertCanStartCall(key);
    this.#assertCapacity(key, (code, msg) =>
      code === 138003 ? duplicateCall(msg) : concurrentCallLimit(this.#maxConcurrent),
    );
    const v = media.validateSdp(session.sdp, {
      type: 'offer',
      allowG711: settings.allowG711,
      keyExchange: settings.keyExchange,
    });
    if (!v.ok) throw invalidParameter(`SDP Validation error: ${v.details}`);
    const id = this.#o.ids.callId();
    const relay = media.createPeer({ allowG711: settings.allowG711, keyExchange: settings.keyExchange, callId: id });
    let answer: string;
    // Reserve the pair while the relay negotiates, so a concurrent connect to the same user gets 138003.
    this.#pending.set(key, id);
    try {
      answer = await relay.answerOffer(session.sdp);
    } catch (err) {
      await Promise.resolve(relay.close()).catch(() => undefined);
      throw invalidParameter(sdpError(err));
    } finally {
      this.#pending.delete(key);
    }
    const call = this.#newRecord(id, 'BUSINESS_INITIATED', 'dialing', user, key, relay, undefined);
    call.businessSdp = session.sdp;
    call.metaSdp = answer;
    if (opaque !== undefined) call.bizOpaqueCallbackData = opaque;
    if (optIns !== undefined) call.optIns = optIns;
    this.#note(call, 'action', 'connect', opaque !== undefined ? { biz_opaque_callback_data: opaque } : undefined);
    this.#schedule(call, this.timers.bicConnectDelayMs, 'bic_connect', () => this.#bicRing(call));
    return { messaging_product: 'whatsapp', calls: [{ id }] };
  }

  /**
   * Meta's answer goes out in the `connect` webhook; the user's phone rings only once the business has applied it
   * and ICE+DTLS are up. If that takes longer than `bicConnectTimeoutMs`, Meta gives up with 138007 (M-TRB).
   */
  #bicRing(call: CallRecord<P>): void {
    if (call.state !== 'dialing') return;
    const opaque =
      call.bizOpaqueCallbackData !== undefined ? { bizOpaqueCallbackData: call.bizOpaqueCallbackData } : {};
    this.#emit(
      call,
      businessCallConnect({
        business: this.#o.business,
        user: call.user,
        callId: call.id,
        sdp: call.metaSdp ?? '',
        timestamp: sec(this.#o.clock.now()),
        ...opaque,
      }),
      'connect',
    );
    const relay = call.relay;
    const internal = this.#internal.get(call.id);
    if (relay.connectionState === undefined || relay.connectionState === 'connected' || !internal) {
      this.#bicStartRinging(call);
      return;
    }
    internal.offConnection = relay.onConnectionStateChange?.((state) => {
      if (state !== 'connected' || call.state !== 'dialing') return;
      internal.offConnection?.();
      this.#note(call, 'state', 'media connected');
      this.#bicStartRinging(call);
    });
    this.#schedule(call, this.timers.bicConnectTimeoutMs, 'connect_timeout', () => {
      if (call.state !== 'dialing') return;
      this.#end(call, 'connect_timeout', 'connect_timeout', {
        status: 'FAILED',
        errors: [
          this.#callError(
            138007,
            `Business did not apply the offer/answer SDP from Cloud API in time (no ICE+DTLS within ${this.timers.bicConnectTimeoutMs} ms of the connect webhook)`,
          ),
        ],
      });
    });
  }

  /** RINGING, then the user's scripted answer; on pickup the relay may send the user's audio (M-BIC). */
  #bicStartRinging(call: CallRecord<P>): void {
    if (call.state !== 'dialing') return;
    this.#clearTimers(call);
    this.#setState(call, 'ring');
    this.#emitStatus(call, 'RINGING');
    const script = this.#o.users.script(call.userKey);
    this.#schedule(call, this.timers.bicRingTimeoutMs, 'ring_timeout', () => {
      this.#end(call, 'ring_timeout', 'ring_timeout', { status: this.#unansweredStatus() });
    });
    if (script.bicAnswer === 'no_answer') return;
    this.#schedule(call, Math.max(1, script.bicAnswerDelayMs), `user_${script.bicAnswer}`, () => {
      if (call.state !== 'ringing') return;
      this.#note(call, 'user', script.bicAnswer);
      if (script.bicAnswer === 'accept') {
        this.#connected(call, 'user_accept');
        call.relay.startUserMedia?.();
        this.#scheduleAcceptedStatus(call, script.acceptedStatus);
      } else {
        this.#userReject(call);
      }
    });
  }

  /**
   * The `ACCEPTED` status, for auditing, after the call is established (M-BIC, §2.8), with the user script's
   * faults: later than the default, duplicated (Meta delivers at least once, §2.4) or never sent.
   */
  #scheduleAcceptedStatus(call: CallRecord<P>, fault: AcceptedStatusScript): void {
    if (fault.lost) {
      this.#note(call, 'webhook', 'status:ACCEPTED', { fault: 'lost' });
      return;
    }
    this.#schedule(
      call,
      Math.max(1, fault.delayMs ?? this.timers.bicAcceptedStatusDelayMs),
      'accepted_status',
      () => {
        if (call.state === 'ended' && call.startedAt === undefined) return;
        this.#emitStatus(call, 'ACCEPTED', fault.duplicates ? { duplicates: fault.duplicates } : undefined);
      },
      true,
    );
  }

  /** A business-initiated call's status webhook (RINGING, ACCEPTED, REJECTED), with the business's opaque data. */
  #emitStatus(call: CallRecord<P>, status: 'RINGING' | 'ACCEPTED' | 'REJECTED', options?: SendOptions): void {
    const opaque =
      call.bizOpaqueCallbackData !== undefined ? { bizOpaqueCallbackData: call.bizOpaqueCallbackData } : {};
    this.#emit(
      call,
      callStatus({
        business: this.#o.business,
        user: call.user,
        callId: call.id,
        status,
        timestamp: sec(this.#o.clock.now()),
        ...opaque,
      }),
      `status:${status}`,
      options,
    );
  }

  /** The user declines a ringing BIC: REJECTED status and a terminate (§2.7 "BIC without pickup"). */
  #userReject(call: CallRecord<P>): void {
    this.#emitStatus(call, 'REJECTED');
    this.#end(call, 'user_reject', 'user_reject', { status: this.#unansweredStatus() });
  }

  // -------------------------------------------------------------------------------------------------------------
  // Shared machinery
  // -------------------------------------------------------------------------------------------------------------

  #unansweredStatus(): 'COMPLETED' | 'FAILED' {
    return this.#o.unansweredTerminateStatus ?? 'COMPLETED';
  }

  #assertCapacity(key: string, make: (code: number, msg: string) => Error): void {
    const dup = this.active().find((c) => c.userKey === key)?.id ?? this.#pending.get(key);
    if (dup) throw make(138003, dup);
    if (this.active().length + this.#pending.size >= this.#maxConcurrent) {
      throw make(138002, `concurrent call limit ${this.#maxConcurrent} reached`);
    }
  }

  #newRecord(
    id: string,
    direction: CallDirection,
    state: CallState,
    user: SimUser,
    key: string,
    relay: P,
    faults: PlaceUserCallInput['faults'],
  ): CallRecord<P> {
    const call: CallRecord<P> = {
      id,
      direction,
      state,
      user,
      userKey: key,
      relay,
      createdAt: this.#o.clock.now(),
      log: [],
      history: [state],
    };
    this.#calls.set(id, call);
    this.#internal.set(id, { timers: new Set(), outbox: Promise.resolve(), actions: Promise.resolve(), faults });
    this.#note(call, 'state', state, { direction });
    this.#log.info({ callId: id, direction, user: key }, 'call created');
    return call;
  }

  #require(id: string): CallRecord<P> {
    const call = this.#calls.get(id);
    if (!call) throw new UnknownCallError(id);
    return call;
  }

  #note(call: CallRecord<P>, kind: CallLogEntry['kind'], name: string, detail?: Record<string, unknown>): void {
    const at = this.#o.clock.now();
    const entry: CallLogEntry = { at, iso: new Date(at).toISOString(), kind, name };
    if (detail) entry.detail = detail;
    call.log.push(entry);
  }

  #setState(call: CallRecord<P>, event: CallEventType): void {
    const next = transition(call.direction, call.state, event);
    if (next === undefined) throw new Error(`invalid transition ${call.state} --${event}-->`);
    const from = call.state;
    call.state = next;
    call.history.push(next);
    this.#note(call, 'state', `${from}→${next}`, { event });
    this.#log.info({ callId: call.id, from, to: next, event }, 'call state');
    this.emit('state', call, from, next);
  }

  #serial<T>(call: CallRecord<P>, fn: () => Promise<T>): Promise<T> {
    const internal = this.#internal.get(call.id);
    if (!internal) return fn();
    const run = internal.actions.then(fn, fn);
    internal.actions = run.catch(() => undefined);
    return run;
  }

  #schedule(call: CallRecord<P>, ms: number, name: string, fn: () => void, quiet = false): void {
    const internal = this.#internal.get(call.id);
    if (!internal) return;
    const t = this.#o.clock.setTimeout(() => {
      internal.timers.delete(t);
      if (!quiet) this.#note(call, 'timer', name);
      fn();
    }, ms);
    internal.timers.add(t);
  }

  #emit(call: CallRecord<P>, change: WebhookChange, name: string, opts?: SendOptions): void {
    const internal = this.#internal.get(call.id);
    if (!internal || this.#closed) return;
    this.#note(call, 'webhook', name, { field: change.field, ...(opts ? { faults: opts } : {}) });
    // A call's webhooks go out in order, but the next one waits at most `webhookOrderWaitMs` (wall time) for the
    // previous delivery: a held, slow or retrying delivery is overtaken, like Meta's terminate-before-connect
    // (§2.4: no ordering guarantee).
    const previous = internal.outbox;
    const sent = waitAtMost(previous, this.timers.webhookOrderWaitMs)
      .then(() => this.#o.webhooks.deliver([change], opts))
      .then((d) => {
        if (!d) this.#note(call, 'error', `webhook ${name} not sent (callback not verified or emitter closed)`);
        else if (d.outcome !== 'delivered')
          this.#note(call, 'error', `webhook ${name} ${d.outcome}`, { delivery: d.id });
      })
      .catch((err: unknown) => {
        this.#log.error({ callId: call.id, err }, 'webhook delivery threw');
      });
    internal.outbox = sent;
  }

  /**
   * The business's first media packet reached the relay. Before any `accept` of a user-initiated call the WhatsApp
   * client takes it as the answer (M-FAQ: "a media packet or an accept signal whichever comes first"): the caller
   * sees a connected call, timer running, while Meta still waits for `accept`.
   */
  #firstBusinessMedia(call: CallRecord<P>): void {
    call.firstBusinessMediaAt ??= this.#o.clock.now();
    if (call.direction !== 'USER_INITIATED' || transition(call.direction, call.state, 'business_media') === undefined)
      return;
    call.answeredBy = 'media';
    call.callerAnsweredAt = call.firstBusinessMediaAt;
    this.#note(call, 'error', 'media_before_accept', {
      details:
        'business media reached the caller before accept: the WhatsApp client shows the call connected, timer running (M-FAQ)',
      state: call.state,
    });
    this.#setState(call, 'business_media');
    // The call has started as the caller sees it: the 20 s "no media at call start" rule counts from here
    // (M-TRB; Corrections item 1), until an `accept` restarts the watchdog for the established call.
    this.#startWatchdog(call, call.callerAnsweredAt);
  }

  /** Both directions: the call is connected. Start time, permission bookkeeping, media watchdog. */
  #connected(call: CallRecord<P>, event: 'accept' | 'user_accept'): void {
    this.#clearTimers(call);
    call.startedAt = this.#o.clock.now();
    this.#setState(call, event);
    this.#o.permissions.recordConnectedCall(call.userKey, {
      businessInitiated: call.direction === 'BUSINESS_INITIATED',
    });
    this.#startWatchdog(call);
  }

  /**
   * Media watchdog (§4.2, M-TRB): no business media within `firstMediaTimeoutMs` of call start, or a gap of
   * `mediaGapTimeoutMs`, ends the call with `errors[138021]`. It samples the relay's `lastBusinessMediaAt` and
   * measures progress on the engine clock, so it works with a manual clock too.
   *
   * A UIC answered by media (`answered_by_media`) has started for the caller but is not established at Meta: the
   * "no media at call start" rule applies, so there a gap of `firstMediaTimeoutMs` already ends the call (the
   * client drops a call whose business media stopped right after it started).
   */
  #startWatchdog(call: CallRecord<P>, from?: number): void {
    const internal = this.#internal.get(call.id);
    if (!internal) return;
    const startedAt = from ?? call.startedAt ?? this.#o.clock.now();
    internal.watchdog = { progressAt: startedAt, lastSeen: undefined };
    const tick = (): void => {
      if (call.state !== 'accepted' && call.state !== 'answered_by_media') return;
      const atCallStart = call.state === 'answered_by_media';
      const wd = internal.watchdog;
      if (!wd) return;
      const now = this.#o.clock.now();
      const last = call.relay.lastBusinessMediaAt ?? call.relay.firstBusinessMediaAt;
      if (last !== undefined && last !== wd.lastSeen) {
        wd.lastSeen = last;
        wd.progressAt = now;
      }
      if (wd.lastSeen === undefined && now - startedAt >= this.timers.firstMediaTimeoutMs) {
        this.#end(call, 'media_timeout', 'no_media', {
          status: 'FAILED',
          errors: [
            this.#mediaError(
              `No media received from the business within ${this.timers.firstMediaTimeoutMs} ms of call start`,
            ),
          ],
        });
        return;
      }
      if (atCallStart && wd.lastSeen !== undefined && now - wd.progressAt >= this.timers.firstMediaTimeoutMs) {
        this.#end(call, 'media_timeout', 'no_media', {
          status: 'FAILED',
          errors: [
            this.#mediaError(
              `No media received from the business for ${this.timers.firstMediaTimeoutMs} ms after the caller's client took its first packet as the answer (call start)`,
            ),
          ],
        });
        return;
      }
      if (wd.lastSeen !== undefined && now - wd.progressAt >= this.timers.mediaGapTimeoutMs) {
        this.#end(call, 'media_timeout', 'media_gap', {
          status: 'FAILED',
          errors: [this.#mediaError(`No media received from the business for ${this.timers.mediaGapTimeoutMs} ms`)],
        });
        return;
      }
      this.#schedule(call, this.timers.watchdogPollMs, 'watchdog', tick, true);
    };
    this.#schedule(call, this.timers.watchdogPollMs, 'watchdog', tick, true);
  }

  #mediaError(details: string): WebhookError {
    return this.#callError(138021, details);
  }

  #callError(code: number, details: string): WebhookError {
    const e = callErrorEntry(code, details);
    return { code: e.code, message: e.message, href: e.href, details: e.error_data.details };
  }

  #clearTimers(call: CallRecord<P>): void {
    const internal = this.#internal.get(call.id);
    if (!internal) return;
    for (const t of internal.timers) this.#o.clock.clearTimeout(t);
    internal.timers.clear();
    internal.offConnection?.();
    delete internal.offConnection;
  }

  /** End a call: transition, `terminate` webhook (§2.7), permission bookkeeping for BIC, relay closed. */
  #end(
    call: CallRecord<P>,
    event: CallEventType,
    reason: EndReason,
    opts: { status: 'COMPLETED' | 'FAILED'; errors?: WebhookError[] },
  ): void {
    if (transition(call.direction, call.state, event) === undefined) return;
    this.#clearTimers(call);
    const wasAnswered = call.startedAt !== undefined;
    call.endedAt = this.#o.clock.now();
    call.endReason = reason;
    call.terminateStatus = opts.status;
    this.#setState(call, event);
    if (event !== 'shutdown') {
      const input: CallTerminateInput = {
        business: this.#o.business,
        user: call.user,
        callId: call.id,
        direction: call.direction,
        status: opts.status,
        timestamp: sec(call.endedAt),
      };
      // start/end/duration only when the call was picked up (§2.7).
      if (wasAnswered && call.startedAt !== undefined) {
        input.startTime = sec(call.startedAt);
        input.endTime = sec(call.endedAt);
        input.duration = Math.max(0, Math.round((call.endedAt - call.startedAt) / 1000));
      }
      if (call.bizOpaqueCallbackData !== undefined) input.bizOpaqueCallbackData = call.bizOpaqueCallbackData;
      if (call.deeplinkPayload !== undefined) input.deeplinkPayload = call.deeplinkPayload;
      if (call.ctaPayload !== undefined) input.ctaPayload = call.ctaPayload;
      if (call.omitDirection) input.omitDirection = true;
      if (opts.errors) input.errors = opts.errors;
      this.#emit(call, callTerminate(input), 'terminate', this.#internal.get(call.id)?.faults?.terminate);
      // A call that never rang (138007), or whose client failed (138019/138020), was not unanswered by the user.
      if (
        call.direction === 'BUSINESS_INITIATED' &&
        !wasAnswered &&
        reason !== 'connect_timeout' &&
        reason !== 'client_failure'
      )
        this.#unansweredBic(call);
    }
    this.#log.info({ callId: call.id, reason, status: opts.status, answered: wasAnswered }, 'call ended');
    void this.#closeRelay(call);
  }

  /**
   * Meta takes the caller to voicemail (Corrections item 4): the business gets the `terminate` (unanswered, no
   * `start_time`; Meta documents no voicemail-specific status, so the unanswered status), then — best-effort,
   * once the caller has spoken — the voicemail as an audio message on `messages` whose id is the wacid.
   */
  #divertToVoicemail(call: CallRecord<P>, trigger: 'REJECT' | 'TIMEOUT'): void {
    if (transition(call.direction, call.state, 'voicemail') === undefined) return;
    this.#note(call, 'user', 'voicemail', { trigger });
    this.#end(call, 'voicemail', 'voicemail', { status: this.#unansweredStatus() });
    this.#schedule(call, this.timers.voicemailRecordingMs, 'voicemail_message', () => {
      const change = voicemailMessage({
        business: this.#o.business,
        user: call.user,
        callId: call.id,
        mediaId: this.#o.ids.messageId(),
        timestamp: sec(this.#o.clock.now()),
      });
      this.#emit(call, change, 'voicemail_message');
    });
  }

  /** 2 unanswered → nudge (no webhook), 4 → revoke + `call_permission_reply` reject/automatic (§4.1, §2.9). */
  #unansweredBic(call: CallRecord<P>): void {
    const outcome = this.#o.permissions.recordUnansweredCall(call.userKey);
    this.#note(call, 'user', `unanswered_bic:${outcome}`, {
      consecutive: this.#o.permissions.consecutiveUnanswered(call.userKey),
    });
    if (outcome === 'revoked') {
      this.#emit(
        call,
        permissionReply({
          business: this.#o.business,
          user: call.user,
          response: 'reject',
          source: 'automatic',
          timestamp: sec(this.#o.clock.now()),
        }),
        'call_permission_reply(auto-revoke)',
      );
    }
  }

  async #closeRelay(call: CallRecord<P>): Promise<void> {
    try {
      await call.relay.close();
    } catch (err) {
      this.#log.warn({ callId: call.id, err }, 'relay close failed');
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new SimCallRefusedError(0, 'simulator stopped');
  }

  /** Stop: end every call silently (no webhooks), cancel timers, close relays. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    for (const call of this.active()) {
      this.#clearTimers(call);
      call.endedAt = this.#o.clock.now();
      call.endReason = 'shutdown';
      this.#setState(call, 'shutdown');
    }
    this.#closed = true;
    for (const call of this.#calls.values()) this.#clearTimers(call);
    await Promise.all(this.list().map((c) => this.#closeRelay(c)));
  }
}
