/**
 * The durable call record and the ports (store, job queue, worker signals, Meta call control)
 * the domain logic is given. Implementations live in `adapters/aws/`; domain code imports
 * no AWS SDK.
 */
import { MetaApiError } from '../errors.ts';
import type { BusinessLine, MetaCallError, WhatsAppUser } from '../meta/webhook.ts';
import type { CallDirection, CallEvent, CallState, EndReason } from './call-state.ts';

/** Which side ended the call. */
export type EndedBy = 'whatsapp' | 'sip' | 'bridge' | 'meta';

/** The media worker that owns a call, and where to send it in-call events. */
export interface CallOwner {
  readonly workerId: string;
  /** The worker's own control queue. */
  readonly controlQueueUrl: string;
}

/** One call as stored. `callId` is Meta's call id (`wacid.…`). */
export interface CallRecord {
  readonly callId: string;
  readonly direction: CallDirection;
  readonly state: CallState;
  /** Incremented by every write. */
  readonly version: number;
  readonly line: BusinessLine;
  readonly user: WhatsAppUser;
  readonly sdpOffer?: string;
  readonly deeplinkPayload?: string;
  readonly ctaPayload?: string;
  /** `default` uses the configured SIP target; `after-hours` the after-hours one. */
  readonly route?: 'default' | 'after-hours';
  /** SIP target chosen at admission when it differs from the worker's default. */
  readonly sipTarget?: string;
  /** Meta's event time of the connect, ms. */
  readonly offeredAt?: number;
  readonly createdAt: number;
  readonly updatedAt: number;
  /** The webhook invocation admitting the call holds this lease until the job is enqueued. */
  readonly leaseUntil?: number;
  readonly jobEnqueuedAt?: number;
  /** True while the call holds one of its number's concurrency slots. */
  readonly slotHeld?: boolean;
  readonly owner?: CallOwner;
  readonly endedAt?: number;
  readonly endReason?: EndReason;
  readonly endedBy?: EndedBy;
  /** Meta's terminate status (`COMPLETED`, `FAILED`…). */
  readonly metaStatus?: string;
  readonly metaErrors?: readonly MetaCallError[];
  /** Talk time reported by Meta, seconds (only for answered calls). */
  readonly durationSeconds?: number;
  readonly answeredAt?: number;
  /** When the SDP answer reached Meta (pre_accept), ms. */
  readonly preAcceptedAt?: number;
  /** When the SIP endpoint started ringing, ms. */
  readonly ringingAt?: number;
  /** The SIP leg: Call-ID, the target that answered, the final status of a failed attempt. */
  readonly sip?: {
    readonly callId: string;
    readonly answeredTarget?: string;
    readonly status?: number;
    readonly reason?: string;
  };
  /** Durations of the call's phases, ms: setup (offer to INVITE), answer (INVITE to 200), talk. */
  readonly timings?: { readonly setupMs?: number; readonly answerMs?: number; readonly talkMs?: number };
  /** Media statistics at the end of the call. */
  readonly media?: CallMediaStats;
  /** Business-initiated calls: the permission the call rests on (from the rules). */
  readonly permission?: 'temporary' | 'permanent';
  /** Why rejecting the call at Meta failed, if it did. */
  readonly rejectError?: string;
  /** DynamoDB TTL (epoch seconds) set on finished records; nothing depends on it. */
  readonly expiresAt?: number;
  /**
   * Business-initiated calls requested through the control API: the record keyed by the request id
   * (`bcr.…`) carries Meta's call id here once the worker has placed the call, so
   * `GET /v1/calls/{requestId}` resolves to it.
   */
  readonly metaCallId?: string;
  /** Business-initiated calls requested through the control API: the request id (`bcr.…`), on Meta's call record. */
  readonly requestId?: string;
  /** Business-initiated calls: who is rung first. */
  readonly mode?: 'customer-first' | 'agent-first';
  /** Business-initiated calls: the API client's `biz_opaque_callback_data` (≤ 512 characters). */
  readonly callbackData?: string;
  /** Business-initiated calls: Meta's answer when it refused the `connect` (end reason `meta-refused`). */
  readonly metaError?: MetaRefusal;
}

/** Meta's refusal of a Graph call, as stored on the call record (M-TRB codes). */
export interface MetaRefusal {
  /** Meta's error code, e.g. 138006 (no permission), 138012 (daily limit). */
  readonly code: number;
  /** HTTP status of Meta's answer. */
  readonly httpStatus: number;
  /** Meta's message. */
  readonly message: string;
  /** Meta's `error_data.details`. */
  readonly details?: string;
  /** When Meta allows the action again (`error_data.next_allowed_time`, 138012), ms. */
  readonly nextAllowedAt?: number;
}

/**
 * Meta's refusal carried by `error`, if it is one: a {@link MetaApiError} with Meta's code (a
 * timeout or network error is not a refusal and yields undefined).
 */
export function metaRefusalOf(error: unknown): MetaRefusal | undefined {
  if (!(error instanceof MetaApiError) || error.metaCode === undefined) return undefined;
  const data = error.errorData as { next_allowed_time?: number | string; limit_expiration_time?: number | string };
  const next = Number(data?.next_allowed_time ?? data?.limit_expiration_time);
  return {
    code: error.metaCode,
    httpStatus: error.status,
    message: error.message,
    ...(error.details === undefined ? {} : { details: error.details }),
    ...(Number.isFinite(next) && next > 0 ? { nextAllowedAt: next * 1000 } : {}),
  };
}

/** Media statistics of a finished call. */
export interface CallMediaStats {
  readonly mode: 'passthrough' | 'transcode';
  readonly codec: string;
  readonly whatsappToSip: { readonly packets: number; readonly lost: number; readonly dtmfDigits: number };
  readonly sipToWhatsapp: {
    readonly packets: number;
    readonly lost: number;
    readonly jitterMs: number;
    readonly dtmfDigits: number;
  };
  readonly whatsapp: {
    readonly packetsSent: number;
    readonly packetsReceived: number;
    readonly packetsLost: number;
    readonly jitterMs: number;
    readonly roundTripTimeMs?: number;
    /** SRTP packets refused (failed authentication, replayed, malformed): non-zero means someone else is sending. */
    readonly srtpRejected?: number;
  };
  /** The SIP leg's RTCP (RFC 3550): reports the PBX sent, round-trip time, the loss it saw of our stream. */
  readonly sip?: {
    readonly rtcpReportsReceived: number;
    readonly roundTripTimeMs?: number;
    readonly lostReportedByPbx?: number;
    /** SDES-SRTP ran on the SIP leg (SIP_SRTP): SRTP and SRTCP packets refused (authentication, replay). */
    readonly srtpRejected?: number;
  };
}

/** Fields a write may set besides state and version. */
export type CallPatch = Partial<Omit<CallRecord, 'callId' | 'state' | 'version' | 'createdAt'>>;

/** A call-history entry. */
export interface CallHistoryEntry {
  readonly at: number;
  readonly what: string;
  readonly detail?: Record<string, unknown>;
}

/** Persistence of calls and per-number admission counters. Every method is a single conditional write or read. */
export interface CallStore {
  /** Writes `record` unless a record with its id exists; returns the existing one if so. */
  createIfAbsent(record: CallRecord): Promise<{ created: true } | { created: false; existing: CallRecord }>;
  get(callId: string): Promise<CallRecord | undefined>;
  /**
   * Applies the state move for `event` with a conditional write on the allowed source states.
   * Returns the new record, or `undefined` when the condition failed (duplicate or too late).
   */
  transition(callId: string, event: CallEvent, patch?: CallPatch): Promise<CallRecord | undefined>;
  /** Sets fields only if `expect` holds (attribute equality, `undefined` meaning absent). */
  patchIf(callId: string, expect: Partial<Record<keyof CallRecord, unknown>>, patch: CallPatch): Promise<boolean>;
  /** Takes one concurrency slot of a number if fewer than `cap` are taken. */
  acquireSlot(phoneNumberId: string, cap: number): Promise<boolean>;
  /** Returns one slot. */
  releaseSlot(phoneNumberId: string): Promise<void>;
  /** Slots in use (for health and tests). */
  slotsInUse(phoneNumberId: string): Promise<number>;
  appendHistory(callId: string, entry: CallHistoryEntry): Promise<void>;
  history(callId: string): Promise<CallHistoryEntry[]>;
}

/** Everything a media worker needs to bridge a user-initiated call. */
export interface UserCallJob {
  readonly type: 'bridge-user-call';
  readonly callId: string;
  readonly line: BusinessLine;
  readonly caller: WhatsAppUser;
  readonly sdpOffer: string;
  readonly route: 'default' | 'after-hours';
  readonly sipTarget?: string;
  readonly deeplinkPayload?: string;
  readonly ctaPayload?: string;
  readonly offeredAt: number;
  readonly enqueuedAt: number;
}

/**
 * A business-initiated call requested through the control API (`POST /v1/calls`), already checked
 * by the rules. The worker places the WhatsApp leg with Meta `connect` and the SIP leg per `mode`;
 * the call record keyed by `requestId` (state `queued`, holding one concurrency slot) is the
 * worker's to claim, link to Meta's call id and end.
 */
export interface BusinessCallJob {
  readonly type: 'bridge-business-call';
  /** `bcr.<uuid>`: the id the API answered with, and the key of the request's call record. */
  readonly requestId: string;
  /** The business number (the WABA id is unknown until Meta's first webhook: `accountId` is ''). */
  readonly line: BusinessLine;
  readonly user: WhatsAppUser;
  /** SIP target for the agent leg; absent: the worker's default target. */
  readonly sipTarget?: string;
  /** `customer-first`: ring the WhatsApp user, then the agent; `agent-first`: the reverse. */
  readonly mode: 'customer-first' | 'agent-first';
  /** Passed to Meta as `biz_opaque_callback_data`. */
  readonly callbackData?: string;
  readonly enqueuedAt: number;
}

/** Jobs the media workers consume. */
export type CallJob = UserCallJob | BusinessCallJob;

/** The queue of call jobs. */
export interface CallJobQueue {
  enqueue(job: CallJob): Promise<void>;
}

/** An in-call event for the worker that owns a call. */
export type WorkerSignal =
  /**
   * Meta's `terminate`. `answered`: it carried `start_time` or `duration`, i.e. Meta counts the call
   * as connected (§2.7); absent from control planes older than this field.
   */
  | {
      type: 'call-terminated';
      callId: string;
      reason: EndReason;
      answered?: boolean;
      /** Meta's `errors[]` on the terminate (M-TRB codes), for the SIP side's Reason header. */
      metaErrors?: readonly MetaCallError[];
    }
  | { type: 'call-progress'; callId: string; status: 'ringing' | 'accepted' | 'rejected' }
  | { type: 'call-answer-received'; callId: string; sdpAnswer: string };

/** Delivers in-call events to the owning worker. */
export interface WorkerSignals {
  notify(owner: CallOwner, signal: WorkerSignal): Promise<void>;
}

/** The Meta call actions the control plane needs. */
export interface MetaCallControl {
  /** Rejects a user-initiated call that has not been accepted. */
  reject(phoneNumberId: string, callId: string): Promise<void>;
}
