/**
 * A business-initiated call started from the control API (`POST /v1/calls`), in one of two orders:
 *
 * - **customer-first** (8x8's way): ring the WhatsApp user; once they pick up, ring the agent;
 *   bridge when the agent answers. The user hears silence while the agent's phone rings.
 * - **agent-first**: ring the agent; once the agent answers, ring the WhatsApp user; bridge when the
 *   user picks up. The agent hears silence while WhatsApp rings.
 *
 * The user's pickup is their first audio from Meta or the ACCEPTED status, whichever comes first
 * ({@link WhatsAppOutbound}); answered or unanswered, for the permission ledger, is the terminate's
 * `start_time`.
 *
 * Either way the WhatsApp side is {@link WhatsAppOutbound} and the SIP side is an ordinary UAC
 * call to the configured (or requested) SIP target. Ending (the call's record and the request's),
 * metrics and clean-up are the {@link CallSession}'s.
 */
import type { Logger } from 'pino';
import { type CallOwner, type CallStore, metaRefusalOf } from '#core/calls/call-record.ts';
import type { MetaGraphClient } from '#core/meta/graph-client.ts';
import type { WhatsAppUser } from '#core/meta/webhook.ts';
import { linkBusinessCall } from '#core/outbound/requests.ts';
import type { WorkerConfig } from '../config.ts';
import { createSipOffer, parseSipAnswer, type SipSrtpPolicy } from '../media/sip-sdp.ts';
import type { WorkerMetrics } from '../ops/metrics.ts';
import type { OutboundSipCall, SipCallEvent, SipPort } from '../sip/sip-port.ts';
import type { ActiveCall } from '../worker.ts';
import { applySipDialogEvent, sessionExpiredEnding } from './call-media.ts';
import { CallSession, errorFields } from './call-session.ts';
import { type CallMediaFactory, inProcessMedia } from './media-port.ts';
import type { BusinessCallOutcomes } from './ports.ts';
import { sdesAnswerFailure, sipEndForMetaErrors } from './sip-refusal.ts';
import { WhatsAppOutbound, type WhatsAppOutboundEvent } from './whatsapp-outbound.ts';

/** What the control API queued. */
export interface ApiBusinessCall {
  readonly requestId: string;
  readonly line: { readonly phoneNumberId: string; readonly businessNumber: string };
  readonly user: WhatsAppUser;
  readonly sipTarget?: string;
  readonly mode: 'customer-first' | 'agent-first';
  readonly callbackData?: string;
}

/** Collaborators. */
export interface ApiBusinessCallDeps {
  readonly config: WorkerConfig;
  readonly calls: CallStore;
  readonly meta: Pick<MetaGraphClient, 'connect' | 'terminate'>;
  readonly sip: SipPort;
  readonly outcomes?: BusinessCallOutcomes;
  readonly owner: () => CallOwner;
  readonly adopt: (callId: string, call: ActiveCall) => void;
  readonly logger: Logger;
  /** CloudWatch metrics (answered, ended, handle time, media quality). */
  readonly metrics?: WorkerMetrics;
  readonly now?: () => number;
  /** Opens each call's media: in this thread, or on a media thread (MEDIA_THREADS). @default in this thread */
  readonly openMedia?: CallMediaFactory;
}

/** Runs one API-started business call; the returned call settles when it is over. */
export function startApiBusinessCall(request: ApiBusinessCall, deps: ApiBusinessCallDeps): ActiveCall {
  const call = new ApiCall(request, deps);
  return { done: call.run(), signal: (s) => call.whatsApp.signal(s), end: () => call.end() };
}

class ApiCall {
  readonly whatsApp: WhatsAppOutbound;
  readonly #r: ApiBusinessCall;
  readonly #d: ApiBusinessCallDeps;
  readonly #now: () => number;
  readonly #session: CallSession;
  #sipCall: OutboundSipCall | undefined;
  /** The SDES policy our offer was made with (SIP_SRTP). */
  #srtp: SipSrtpPolicy = 'off';
  /** The Reason our BYE gives when the bridge ends the call over the PBX's SDP. */
  #byeHeaders: Record<string, string> | undefined;
  #placedAtMeta = false;
  #startedAt = 0;
  #answeredAt = 0;

  constructor(request: ApiBusinessCall, deps: ApiBusinessCallDeps) {
    this.#r = request;
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
    const log = deps.logger.child({ requestId: request.requestId, mode: request.mode });
    const media = (deps.openMedia ?? inProcessMedia(deps.config))(log);
    this.whatsApp = new WhatsAppOutbound({ ...deps, logger: log }, media.leg);
    this.#session = new CallSession({ ...deps, logger: log, now: this.#now }, media, {
      hangUpSip: (ending) => this.#sipCall?.hangUp(sipEndForMetaErrors(ending.metaErrors)?.headers ?? this.#byeHeaders),
      endAtMeta: () => (this.#placedAtMeta ? this.whatsApp.terminate() : undefined),
      // The request record ends too; before the link it still holds the slot, which endCall returns.
      recordIds: () => [...(this.whatsApp.callId ? [this.whatsApp.callId] : []), request.requestId],
      sipCallId: () => this.#sipCall?.callId,
      timings: () => (this.#answeredAt ? { answerMs: this.#answeredAt - this.#startedAt } : undefined),
      settled: () => this.whatsApp.settled(),
    });
  }

  async run(): Promise<void> {
    this.#startedAt = this.#now();
    await this.#session.setUp(
      () => (this.#r.mode === 'customer-first' ? this.#placeWhatsApp() : this.#ringAgent()),
      (error) => (metaRefusalOf(error) ? 'meta-refused' : 'bridge-error'),
      'business-initiated call could not be placed',
    );
    await this.#session.done;
  }

  async end(): Promise<void> {
    await this.#session.end();
  }

  async #placeWhatsApp(): Promise<void> {
    try {
      await this.whatsApp.place(this.#r.line, this.#r.user, {
        ...(this.#r.callbackData === undefined ? {} : { callbackData: this.#r.callbackData }),
        patch: { requestId: this.#r.requestId, mode: this.#r.mode },
        onEvent: (e) => this.#onWhatsApp(e),
        active: { done: this.#session.done, end: () => this.end() },
      });
    } catch (error) {
      // Meta refused the connect: its code and text go on the request record, the ledger is
      // corrected (138006, 138012), and the call ends `meta-refused` instead of `bridge-error`.
      await recordConnectRefusal(error, this.#r, this.#d, this.#now(), this.#session);
      throw error;
    }
    this.#placedAtMeta = true;
    // The request record hands its concurrency slot to Meta's call record (requests.ts).
    await linkBusinessCall(this.#d.calls, this.#r.requestId, this.whatsApp.callId!, this.#now());
  }

  async #ringAgent(): Promise<void> {
    const config = this.#d.config;
    const offer = await this.#session.media.openSip();
    this.#srtp = offer.srtp?.policy ?? 'off';
    const sdpOffer = createSipOffer(offer);
    const user = this.#r.user;
    const sipCall = this.#d.sip.placeCall({
      targets: this.#r.sipTarget ? [{ uri: this.#r.sipTarget }] : config.sip.targets,
      from: {
        user: user.phone ? `+${user.phone}` : (user.userId ?? 'whatsapp'),
        ...(user.name ? { displayName: user.name } : {}),
      },
      headers: {
        'X-WA-Request-Id': this.#r.requestId,
        'X-WA-Direction': 'business-initiated',
        ...(user.phone ? { 'X-WA-Callee': `+${user.phone}` } : {}),
      },
      sdpOffer,
      answerTimeoutMs: config.sip.ringTimeoutMs,
    });
    this.#sipCall = sipCall;
    sipCall.on((e) => this.#session.queue('a SIP event', () => this.#onSip(e)));
  }

  async #onSip(e: SipCallEvent): Promise<void> {
    const session = this.#session;
    if (session.ending) return;
    const codecs = this.#d.config.media.codecs;
    if (e.type === 'answered') {
      try {
        session.media.updateSip(parseSipAnswer(e.sdp, [...codecs], this.#srtp));
      } catch (error) {
        const failure = sdesAnswerFailure(error);
        if (!failure) throw error;
        session.log.warn({ err: errorFields(error) }, "the PBX's SDP answer does not fit our SDES-SRTP offer");
        this.#byeHeaders = failure.byeHeaders;
        session.finish(failure.ending);
        return;
      }
      if (this.#r.mode === 'agent-first') await this.#placeWhatsApp();
      else await this.#connect();
    } else if (e.type === 'failed') {
      session.finish({ reason: 'sip-rejected', by: 'sip', sip: { status: e.status, reason: e.reason } });
    } else if (e.type === 'remote-hangup') {
      session.finish({ reason: 'agent-hung-up', by: 'sip' });
    } else if (e.type === 'session-expired') {
      session.finish(sessionExpiredEnding(e.reason));
    } else applySipDialogEvent(e, session.media, codecs, this.#srtp);
  }

  async #onWhatsApp(e: WhatsAppOutboundEvent): Promise<void> {
    const session = this.#session;
    if (session.ending) return;
    const { phoneNumberId } = this.#r.line;
    if (e.type === 'accepted') {
      if (this.#r.mode === 'customer-first') await this.#ringAgent();
      else await this.#connect();
    } else if (e.type === 'rejected') {
      await this.#d.outcomes?.unanswered(phoneNumberId, this.#r.user, this.whatsApp.callId);
      session.finish({ reason: 'rejected-by-user', by: 'whatsapp' });
    } else if (e.type === 'terminated') {
      // Meta's word (the terminate's start_time, §2.7), not whether we saw the pickup. A connected call
      // already counted when bridged is not counted twice (the ledger is idempotent per call).
      if (e.answered) await this.#d.outcomes?.connected(phoneNumberId, this.#r.user, this.whatsApp.callId);
      // A call that failed unanswered (errors[]: 138007, 138019/138020) was not the user's to answer.
      else if (!e.metaErrors?.length)
        await this.#d.outcomes?.unanswered(phoneNumberId, this.#r.user, this.whatsApp.callId);
      // An error on the terminate says what happened better than "unanswered" (M-TRB).
      const failed = e.metaErrors !== undefined && e.metaErrors.length > 0;
      session.finish({
        reason: e.answered || this.whatsApp.accepted || failed ? e.reason : 'unanswered',
        by: 'whatsapp',
        ...(e.metaErrors ? { metaErrors: e.metaErrors } : {}),
      });
    }
  }

  /** Both sides are up: bridge them. */
  async #connect(): Promise<void> {
    const session = this.#session;
    const sip = session.media.sip;
    const callId = this.whatsApp.callId;
    if (!sip || !callId) return;
    session.media.start(sip, callId);
    this.#answeredAt = this.#now();
    session.markAnswered(this.#answeredAt);
    await this.#d.calls.transition(
      callId,
      { type: 'answered' },
      {
        answeredAt: this.#answeredAt,
        updatedAt: this.#answeredAt,
        timings: { answerMs: this.#answeredAt - this.#startedAt },
        sip: { callId: this.#sipCall!.callId },
      },
    );
    await this.#d.outcomes?.connected(this.#r.line.phoneNumberId, this.#r.user, callId);
    session.log.info({ mode: session.media.mode }, 'business-initiated call bridged');
    session.countAnswered();
  }
}

/**
 * Records Meta's refusal of a `connect` (not a timeout or network failure): Meta's code, text and
 * next allowed time on the request record, so `GET /v1/calls/{requestId}` says why, and the ledger
 * corrected through the outcomes port. Failures here are logged, never hide the refusal.
 */
async function recordConnectRefusal(
  error: unknown,
  request: ApiBusinessCall,
  deps: ApiBusinessCallDeps,
  at: number,
  session: CallSession,
): Promise<void> {
  const refusal = metaRefusalOf(error);
  if (!refusal) return;
  session.log.warn({ metaCode: refusal.code, metaError: refusal.details ?? refusal.message }, 'Meta refused the call');
  try {
    await deps.calls.patchIf(request.requestId, {}, { metaError: refusal, updatedAt: at });
    await deps.outcomes?.metaRefused?.(request.line.phoneNumberId, request.user, refusal);
  } catch (cause) {
    session.log.error({ err: cause instanceof Error ? cause.message : String(cause) }, 'recording the refusal failed');
  }
}
