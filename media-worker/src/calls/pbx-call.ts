/**
 * A business-initiated call started by the PBX: an INVITE to `sip:+<user number>@bridge`.
 *
 * The gate (source allow-list, scanner user agents) and the call rules (permission, countries,
 * sanctions, daily limit, capacity) run before anything reaches Meta; a refusal is a fast SIP
 * error with a Reason header (RFC 3326). Allowed calls: create the WebRTC offer, Meta `connect`,
 * apply Meta's SDP answer from the webhook, RINGING → 180, the user's pickup (their first audio
 * from Meta, or ACCEPTED if it comes first) → 200 with SDP, then bridge as for user-initiated calls
 * (meta-calling-api.md §2.8, §3.1). Ending, the store, metrics and clean-up are the
 * {@link CallSession}'s.
 */
import type { Logger } from 'pino';
import { type CallOwner, type CallStore, metaRefusalOf } from '#core/calls/call-record.ts';
import type { MetaGraphClient } from '#core/meta/graph-client.ts';
import type { CheckBusinessCall } from '#core/outbound/contract.ts';
import type { WorkerConfig } from '../config.ts';
import { MediaError } from '../media/errors.ts';
import { answerSipOffer, parseSipOffer, type SipCodecName } from '../media/sip-sdp.ts';
import type { WorkerMetrics } from '../ops/metrics.ts';
import { SdesNegotiationError } from '../sdp/sdes.ts';
import type { InboundSipCall } from '../sip/sip-port.ts';
import { reasonPhrase } from '../sip/sip-wire.ts';
import type { ActiveCall } from '../worker.ts';
import { applySipDialogEvent, sessionExpiredEnding } from './call-media.ts';
import { CallSession, type Ending, errorFields } from './call-session.ts';
import { type CallMediaFactory, inProcessMedia } from './media-port.ts';
import type { PbxGate } from './pbx-gate.ts';
import type { BusinessCallOutcomes } from './ports.ts';
import { refuse, sipEndForMetaErrors, sipStatusForMeta } from './sip-refusal.ts';
import { WhatsAppOutbound, type WhatsAppOutboundEvent } from './whatsapp-outbound.ts';

/** Collaborators of PBX-started calls. */
export interface PbxCallDeps {
  readonly config: WorkerConfig;
  readonly calls: CallStore;
  readonly meta: Pick<MetaGraphClient, 'connect' | 'terminate'>;
  readonly gate: PbxGate;
  readonly checkBusinessCall: CheckBusinessCall;
  readonly outcomes?: BusinessCallOutcomes;
  readonly owner: () => CallOwner;
  /** Registers the call with the worker under Meta's call id. */
  readonly adopt: (callId: string, call: ActiveCall) => void;
  readonly full: () => boolean;
  readonly logger: Logger;
  /** CloudWatch metrics (answered, ended, handle time, media quality). */
  readonly metrics?: WorkerMetrics;
  readonly now?: () => number;
  /** Opens each call's media: in this thread, or on a media thread (MEDIA_THREADS). @default in this thread */
  readonly openMedia?: CallMediaFactory;
}

/** Handles one INVITE from the PBX. Resolves once the call is set up or refused; the call then runs on. */
export async function handlePbxInvite(invite: InboundSipCall, deps: PbxCallDeps): Promise<void> {
  const log = deps.logger.child({ sipCallId: invite.callId, source: invite.source.address });
  const gate = deps.gate({
    sourceAddress: invite.source.address,
    userAgent: invite.headers['user-agent'],
    requestUri: invite.requestUri,
  });
  if (!gate.allowed) {
    log.warn({ reason: gate.reason }, 'INVITE refused at the gate');
    return refuse(invite, gate.sipStatus, gate.reason);
  }
  const line = deps.config.line;
  if (!line) return refuse(invite, 503, 'business number not configured');
  if (!invite.sdpOffer) return refuse(invite, 488, 'an SDP offer is required');
  // RFC 3261 §13.3.1.4: an offer we cannot answer (no common codec, SRTP against SIP_SRTP) is 488,
  // before anything reaches Meta.
  const unacceptable = offerProblem(invite.sdpOffer, deps.config.media);
  if (unacceptable) {
    log.info({ problem: unacceptable }, 'INVITE refused: its SDP offer is not acceptable');
    return refuse(invite, 488, unacceptable);
  }
  if (deps.full()) return refuse(invite, 503, 'worker full');
  const verdict = await deps.checkBusinessCall({ phoneNumberId: line.phoneNumberId, user: { phone: gate.phone } });
  if (!verdict.allowed) {
    log.info({ reason: verdict.reason }, 'business-initiated call refused by the rules');
    return refuse(invite, verdict.sipStatus, verdict.reason);
  }
  if (!(await deps.calls.acquireSlot(line.phoneNumberId, deps.config.maxConcurrentCalls)))
    return refuse(invite, 503, 'over-capacity');
  await new PbxCall(invite, gate.phone, deps, log).start();
}

/** Why the PBX's SDP offer cannot be answered with our codecs and SDES policy (SIP_SRTP), or undefined. */
function offerProblem(offer: string, media: WorkerConfig['media']): string | undefined {
  try {
    parseSipOffer(offer, [...media.codecs], media.srtp ?? 'off');
    return undefined;
  } catch (error) {
    if (error instanceof SdesNegotiationError || error instanceof MediaError) return error.message;
    throw error;
  }
}

/** The life of one PBX-started call: connect → 180 on RINGING → 200 on the user's pickup. */
class PbxCall {
  readonly #invite: InboundSipCall;
  readonly #user: { phone: string };
  readonly #d: PbxCallDeps;
  readonly #now: () => number;
  readonly #wa: WhatsAppOutbound;
  readonly #session: CallSession;
  /** The codec our 200 answered with: the only one a re-offer can move to in this dialog. */
  #codecs: SipCodecName[] = [];
  #sipAnswered = false;
  #startedAt = 0;
  #acceptedAt = 0;

  constructor(invite: InboundSipCall, phone: string, deps: PbxCallDeps, log: Logger) {
    this.#invite = invite;
    this.#user = { phone };
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
    const media = (deps.openMedia ?? inProcessMedia(deps.config))(log);
    this.#wa = new WhatsAppOutbound({ ...deps, logger: log }, media.leg);
    this.#session = new CallSession({ ...deps, logger: log, now: this.#now }, media, {
      hangUpSip: (ending) =>
        this.#sipAnswered ? invite.hangUp(sipEndForMetaErrors(ending.metaErrors)?.headers) : this.#refuse(ending),
      endAtMeta: () => this.#wa.terminate(),
      recordIds: () => (this.#wa.callId ? [this.#wa.callId] : []),
      sipCallId: () => invite.callId,
      timings: () => (this.#acceptedAt ? { answerMs: this.#acceptedAt - this.#startedAt } : undefined),
      settled: () => this.#wa.settled(),
    });
  }

  async start(): Promise<void> {
    const line = this.#d.config.line!;
    const session = this.#session;
    this.#startedAt = this.#now();
    try {
      await this.#wa.place(line, this.#user, {
        patch: { sip: { callId: this.#invite.callId } },
        onEvent: (e) => this.#onWhatsApp(e),
        active: { done: session.done, end: () => session.end() },
      });
    } catch (error) {
      const sip = sipStatusForMeta(error);
      session.log.warn({ err: errorFields(error), sipStatus: sip.status }, 'Meta refused the call');
      // The PBX hears Meta's code and text (Reason: WhatsApp;cause=…) and, for a limit, Retry-After.
      refuse(this.#invite, sip.status, sip.text, sip.headers);
      // 138006 / 138012 correct the ledger, so the next INVITE is refused before Meta (M-TRB).
      const refusal = metaRefusalOf(error);
      if (refusal) {
        await this.#d.outcomes?.metaRefused?.(line.phoneNumberId, this.#user, refusal).catch((cause: unknown) => {
          session.log.error({ err: errorFields(cause) }, 'recording the refusal in the ledger failed');
        });
      }
      await this.#d.calls.releaseSlot(line.phoneNumberId);
      await session.media.close();
      return;
    }
    this.#invite.on((e) =>
      session.queue('a SIP event', () => {
        if (e.type === 'cancelled' || e.type === 'remote-hangup')
          session.finish({ reason: 'agent-hung-up', by: 'sip' });
        else if (e.type === 'session-expired') session.finish(sessionExpiredEnding(e.reason));
        else if (e.type === 'failed')
          session.finish({ reason: 'bridge-error', by: 'sip', sip: { status: e.status, reason: e.reason } });
        else applySipDialogEvent(e, session.media, this.#codecs, this.#d.config.media.srtp);
      }),
    );
  }

  async #onWhatsApp(e: WhatsAppOutboundEvent): Promise<void> {
    const session = this.#session;
    if (session.ending) return;
    const { phoneNumberId } = this.#d.config.line!;
    switch (e.type) {
      case 'ringing':
        this.#invite.ringing();
        return;
      case 'accepted':
        await this.#connect();
        return;
      case 'rejected':
        await this.#d.outcomes?.unanswered(phoneNumberId, this.#user, this.#wa.callId);
        session.finish({ reason: 'rejected-by-user', by: 'whatsapp', sip: { status: 486, reason: reasonPhrase(486) } });
        return;
      case 'terminated': {
        // Meta's terminate: the webhook function has already ended the record.
        const metaErrors = e.metaErrors ? { metaErrors: e.metaErrors } : {};
        if (this.#wa.accepted) return session.finish({ reason: e.reason, by: 'whatsapp', ...metaErrors });
        // Answered or not is Meta's word, the terminate's start_time (§2.7): a user who picked up and
        // hung up before any audio reached us was still connected for the permission ledger.
        if (e.answered) await this.#d.outcomes?.connected(phoneNumberId, this.#user, this.#wa.callId);
        // A call that failed unanswered (errors[]: 138007, 138019/138020) was not the user's to answer.
        else if (!e.metaErrors?.length) await this.#d.outcomes?.unanswered(phoneNumberId, this.#user, this.#wa.callId);
        // Meta's error, if any, decides the PBX's status (the D8.3 table, M-TRB); else 480 or 408.
        const status = sipEndForMetaErrors(e.metaErrors)?.status ?? (e.answered ? 480 : 408);
        session.finish({
          reason: e.reason,
          by: 'whatsapp',
          sip: { status, reason: reasonPhrase(status) },
          ...metaErrors,
        });
        return;
      }
    }
  }

  /** The WhatsApp user picked up: answer the PBX's offer and bridge. */
  async #connect(): Promise<void> {
    const session = this.#session;
    this.#acceptedAt = this.#now();
    session.markAnswered(this.#acceptedAt);
    const { sdp, negotiated } = answerSipOffer(this.#invite.sdpOffer!, await session.media.openSip());
    this.#codecs = [negotiated.codec.name];
    session.media.start(negotiated, this.#wa.callId!);
    await this.#invite.answer(sdp);
    this.#sipAnswered = true;
    const t = this.#now();
    await this.#d.calls.transition(
      this.#wa.callId!,
      { type: 'answered' },
      { answeredAt: t, updatedAt: t, timings: { answerMs: t - this.#startedAt } },
    );
    await this.#d.outcomes?.connected(this.#d.config.line!.phoneNumberId, this.#user, this.#wa.callId);
    session.log.info({ mode: session.media.mode }, 'WhatsApp user answered; bridged to the PBX');
    session.countAnswered();
  }

  /** The PBX's INVITE is still unanswered: refuse it with the call's SIP status (480 by default). */
  #refuse(ending: Ending): undefined {
    const meta = sipEndForMetaErrors(ending.metaErrors);
    if (meta) {
      refuse(this.#invite, meta.status, meta.text, meta.headers);
      return undefined;
    }
    const status = ending.sip?.status ?? 480;
    const text =
      ending.reason === 'rejected-by-user'
        ? 'rejected by the WhatsApp user'
        : status === 408
          ? 'no answer'
          : status === 480 && ending.by === 'whatsapp'
            ? 'the WhatsApp user hung up at once'
            : ending.reason;
    refuse(this.#invite, status, text);
    return undefined;
  }
}
