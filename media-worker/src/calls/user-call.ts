/**
 * One user-initiated call, from claim to hang-up: answer Meta's offer, pre-accept, ring the SIP
 * endpoint, accept, bridge media. Ending, the store, metrics and clean-up are the
 * {@link CallSession}'s.
 *
 * Order matters (meta-calling-api.md §3.2, §5.2 and Corrections 1–2):
 * - the SDP answer goes to Meta with `pre_accept` before the INVITE, so ICE and DTLS converge
 *   while the agent's phone rings;
 * - nothing is sent to Meta before `accept` has returned 200 OK: WhatsApp clients take "a media
 *   packet or an accept signal, whichever comes first" as the answer (M-FAQ), so a packet during
 *   ringing would show the caller a connected call, timer running. The WhatsApp leg is withheld
 *   from the start and released when `accept` returns: then the maiden packet goes at once (Meta's
 *   20 s no-media rule counts from there), and what the PBX sent during the accept round trip (the
 *   agent's first words) is delivered, not lost;
 * - `accept` carries the same SDP, at the agent's 200 — or at its 183 with SDP when
 *   `EARLY_MEDIA_ACCEPT` is on, so early media reaches the caller (whose timer then starts). With
 *   it off, early media is not bridged: the caller hears WhatsApp's own ringing;
 * - once pre-accepted the call is ended at Meta with `terminate`, never `reject` (M-TRB).
 */
import type { Logger } from 'pino';
import type { CallStore, UserCallJob, WorkerSignal } from '#core/calls/call-record.ts';
import { ringTimeoutWithinMetaWindow } from '#core/calls/meta-window.ts';
import { MetaApiError } from '#core/errors.ts';
import type { MetaGraphClient } from '#core/meta/graph-client.ts';
import type { WorkerConfig } from '../config.ts';
import { UnsupportedKeyExchangeError } from '../media/errors.ts';
import { createSipOffer, parseSipAnswer, type SipMediaDescription, type SipSrtpPolicy } from '../media/sip-sdp.ts';
import type { WorkerMetrics } from '../ops/metrics.ts';
import type { OutboundSipCall, SipCallEvent, SipPort } from '../sip/sip-port.ts';
import type { ActiveCall, CallRunner } from '../worker.ts';
import { applySipDialogEvent, sessionExpiredEnding } from './call-media.ts';
import { CallSession, errorFields } from './call-session.ts';
import { type CallMediaFactory, inProcessMedia } from './media-port.ts';
import type { BusinessCallOutcomes } from './ports.ts';
import { sdesAnswerFailure, sipEndForMetaErrors } from './sip-refusal.ts';
import { xHeaders } from './x-headers.ts';

/** Collaborators of user-initiated calls. */
export interface UserCallDeps {
  readonly config: WorkerConfig;
  readonly calls: CallStore;
  readonly meta: Pick<MetaGraphClient, 'preAccept' | 'accept' | 'reject' | 'terminate'>;
  readonly sip: SipPort;
  /** Resets Meta's permission-request limits when a user-initiated call connects (§4.1). */
  readonly outcomes?: Pick<BusinessCallOutcomes, 'userCallAnswered'>;
  readonly logger: Logger;
  /** CloudWatch metrics (setup latency, answered, ended, handle time, media quality). */
  readonly metrics?: WorkerMetrics;
  readonly now?: () => number;
  /** Opens each call's media: in this thread, or on a media thread (MEDIA_THREADS). @default in this thread */
  readonly openMedia?: CallMediaFactory;
}

/** Starts a {@link UserCall} per claimed job. */
export class UserCallRunner implements CallRunner {
  constructor(private readonly deps: UserCallDeps) {}

  start(job: UserCallJob, context: { workerId: string; controlQueueUrl: string; claimedAt: number }): ActiveCall {
    const call = new UserCall(job, context.claimedAt, this.deps);
    return { done: call.run(), signal: (s) => call.signal(s), end: (reason) => call.end(reason) };
  }
}

/** The life of one user-initiated call on this worker. */
export class UserCall {
  readonly #job: UserCallJob;
  readonly #d: UserCallDeps;
  readonly #now: () => number;
  readonly #session: CallSession;
  #sipCall: OutboundSipCall | undefined;
  /** The SDES policy our offer was made with (SIP_SRTP). */
  #srtp: SipSrtpPolicy = 'off';
  /** The Reason our BYE gives when the bridge ends the call over the PBX's SDP. */
  #byeHeaders: Record<string, string> | undefined;
  #sdpAnswer = '';
  /** Settles true once `pre_accept` succeeded, false if it failed; undefined before it was sent. */
  #preAccepted: Promise<boolean> | undefined;
  #accepted = false;
  #inviteAt = 0;
  #answeredAt = 0;

  constructor(job: UserCallJob, claimedAt: number, deps: UserCallDeps) {
    this.#job = job;
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
    const log = deps.logger.child({ callId: job.callId });
    this.#session = new CallSession(
      { ...deps, logger: log, now: this.#now, startedAt: claimedAt },
      (deps.openMedia ?? inProcessMedia(deps.config))(log, job.callId),
      {
        // Meta's error, if it ended the call with one, reaches the agent as a Reason on the BYE/CANCEL.
        hangUpSip: (ending) =>
          this.#sipCall?.hangUp(sipEndForMetaErrors(ending.metaErrors)?.headers ?? this.#byeHeaders),
        endAtMeta: () => this.#endAtMeta(),
        recordIds: () => [job.callId],
        sipCallId: () => this.#sipCall?.callId,
        timings: () =>
          this.#answeredAt
            ? { setupMs: this.#inviteAt - job.enqueuedAt, answerMs: this.#answeredAt - this.#inviteAt }
            : this.#inviteAt
              ? { setupMs: this.#inviteAt - job.enqueuedAt }
              : undefined,
      },
    );
  }

  /** Runs the call to its end. Never rejects. */
  async run(): Promise<void> {
    await this.#session.setUp(
      () => this.#setUp(),
      (error) =>
        error instanceof MetaApiError
          ? 'meta-terminated'
          : error instanceof UnsupportedKeyExchangeError
            ? 'unsupported-key-exchange'
            : 'bridge-error',
    );
    await this.#session.done;
  }

  /** An in-call event from the control plane. */
  signal(signal: WorkerSignal): void {
    if (signal.type === 'call-terminated') {
      this.#session.log.info({ reason: signal.reason }, 'WhatsApp side ended the call');
      this.#session.finish({
        reason: signal.reason,
        by: 'whatsapp',
        ...(signal.metaErrors ? { metaErrors: signal.metaErrors } : {}),
      });
    }
  }

  /** Ends the call from the bridge (worker shutdown). */
  async end(reason: 'bridge-shutdown'): Promise<void> {
    await this.#session.end(reason);
  }

  /**
   * Ends the WhatsApp side: `reject` before `pre_accept`, `terminate` once pre-accepted or accepted
   * (M-TRB: "If the SIP UA rejects the call instead of returning a 200 OK, use the terminate Graph
   * API"; Meta refuses to reject a call in progress). A `pre_accept` still in flight is waited for.
   */
  async #endAtMeta(): Promise<void> {
    const { phoneNumberId } = this.#job.line;
    const inProgress = this.#accepted || ((await this.#preAccepted) ?? false);
    await this.#d.meta[inProgress ? 'terminate' : 'reject'](phoneNumberId, this.#job.callId);
  }

  async #setUp(): Promise<void> {
    const { config, meta, calls } = this.#d;
    const job = this.#job;
    const session = this.#session;
    const { leg } = session.media;
    // Nothing to Meta before `accept` has returned (M-FAQ): see the module comment.
    leg.withholdMedia();
    leg.onConnectionStateChange((state) => {
      if (state === 'failed') session.finish({ reason: 'media-failed', by: 'bridge' });
    });
    this.#sdpAnswer = await leg.answer(job.sdpOffer);
    if (session.ending) return;
    const preAccept = meta.preAccept(job.line.phoneNumberId, job.callId, this.#sdpAnswer);
    this.#preAccepted = preAccept.then(
      () => true,
      () => false,
    );
    await preAccept;
    const preAcceptedAt = this.#now();
    await calls.transition(job.callId, { type: 'pre-accepted' }, { preAcceptedAt, updatedAt: preAcceptedAt });
    if (session.ending) return;

    // Meta gives up on an unaccepted call about 30–60 s after its connect (M-REF26): the agent may
    // ring only for what is left of that window, so an answer never meets a call Meta has ended.
    const ringMs = ringTimeoutWithinMetaWindow({
      configuredMs: config.sip.ringTimeoutMs,
      connectAt: job.offeredAt,
      now: this.#now(),
      // With voicemail TIMEOUT Meta diverts the caller at timeout_seconds: give up before that (Corrections 4).
      ...(config.sip.voicemailTimeoutMs === undefined ? {} : { voicemailTimeoutMs: config.sip.voicemailTimeoutMs }),
    });
    if (ringMs === 0) {
      session.log.warn({ offeredAt: job.offeredAt }, "Meta's answer window is spent; the agent is not rung");
      session.finish({ reason: 'unanswered', by: 'bridge' });
      return;
    }
    const offer = await session.media.openSip();
    this.#srtp = offer.srtp?.policy ?? 'off';
    const sdpOffer = createSipOffer(offer);
    const targets = job.sipTarget ? [{ uri: job.sipTarget }] : config.sip.targets;
    this.#inviteAt = this.#now();
    const sipCall = this.#d.sip.placeCall({
      targets,
      from: {
        user: job.caller.phone ? `+${job.caller.phone}` : (job.caller.userId ?? 'anonymous'),
        ...(job.caller.name ? { displayName: job.caller.name } : {}),
      },
      headers: xHeaders(job, config.sip.xHeaders),
      sdpOffer,
      answerTimeoutMs: ringMs,
    });
    this.#sipCall = sipCall;
    sipCall.on((event) => session.queue('a SIP event', () => this.#onSip(event)));
    session.log.info({ sipCallId: sipCall.callId, targets: targets.map((t) => t.uri) }, 'INVITE sent');
    session.metrics?.emit({ SetupLatency: this.#inviteAt - job.enqueuedAt });
    // The WhatsApp user may have hung up while we were setting up.
    if (session.ending) await sipCall.hangUp();
  }

  async #onSip(event: SipCallEvent): Promise<void> {
    const session = this.#session;
    if (session.ending && event.type !== 'remote-hangup') return;
    const job = this.#job;
    const codecs = this.#d.config.media.codecs;
    switch (event.type) {
      case 'ringing': {
        const t = this.#now();
        // Early media under keys that do not fit our offer is not bridged; the final answer decides.
        const early = event.sdp ? this.#readAnswer(event.sdp, false) : undefined;
        if (early) {
          if (this.#d.config.sip.earlyMediaAccept) {
            // EARLY_MEDIA_ACCEPT: accept now so the PBX's early media reaches the caller (whose timer starts now).
            session.media.start(early, job.callId);
            await this.#accept();
          } else {
            // Early media stays here: bridging it before `accept` would answer the call (M-FAQ),
            // and holding ringback to play it after would put stale audio into a connected call.
            session.media.updateSip(early);
          }
        }
        await this.#d.calls.transition(job.callId, { type: 'ringing' }, { ringingAt: t, updatedAt: t });
        return;
      }
      case 'answered': {
        this.#answeredAt = this.#now();
        session.markAnswered(this.#answeredAt);
        const answer = this.#readAnswer(event.sdp, true);
        if (!answer) return;
        // The bridge runs from now; the leg holds the agent's first words until `accept` returned.
        session.media.start(answer, job.callId);
        await this.#accept();
        const t = this.#now();
        await this.#d.calls.transition(
          job.callId,
          { type: 'answered' },
          {
            answeredAt: t,
            updatedAt: t,
            sip: { callId: this.#sipCall!.callId, answeredTarget: event.target },
            timings: { setupMs: this.#inviteAt - job.enqueuedAt, answerMs: this.#answeredAt - this.#inviteAt },
          },
        );
        session.log.info({ target: event.target, mode: session.media.mode }, 'call answered and accepted');
        session.countAnswered();
        return;
      }
      case 'failed':
        session.log.info({ status: event.status, reason: event.reason }, 'SIP call failed');
        session.finish({
          // 408: nobody answered in time (our ring timeout, a target that never responded, or the
          // PBX's own no-answer timeout, RFC 3261 §21.4.9); any other final status is a refusal.
          reason: event.status === 408 ? 'unanswered' : 'sip-rejected',
          by: 'sip',
          sip: { status: event.status, reason: event.reason },
        });
        return;
      case 'remote-hangup':
        session.finish({ reason: 'agent-hung-up', by: 'sip' });
        return;
      case 'session-expired':
        session.finish(sessionExpiredEnding(event.reason));
        return;
      default:
        applySipDialogEvent(event, session.media, codecs, this.#srtp);
    }
  }

  /**
   * The PBX's (early) answer under our offer's codecs and SDES policy. One whose SRTP does not fit
   * is undefined; for the final answer (`final`) it also ends the call, the BYE saying why.
   */
  #readAnswer(sdp: string, final: boolean): SipMediaDescription | undefined {
    try {
      return parseSipAnswer(sdp, [...this.#d.config.media.codecs], this.#srtp);
    } catch (error) {
      const failure = sdesAnswerFailure(error);
      if (!failure) throw error;
      this.#session.log.warn(
        { err: errorFields(error), final },
        "the PBX's SDP answer does not fit our SDES-SRTP offer",
      );
      if (final) {
        this.#byeHeaders = failure.byeHeaders;
        this.#session.finish(failure.ending);
      }
      return undefined;
    }
  }

  /**
   * `accept` at Meta (once), then release the WhatsApp leg: the maiden packet at once — the
   * agent's audio held during the round trip, or silence (M-UIC: media "only after you receive a
   * 200 OK"). Meta counts the call as connected from here (§4.1: the permission ledger too).
   */
  async #accept(): Promise<void> {
    if (this.#accepted) return;
    const job = this.#job;
    const session = this.#session;
    await this.#d.meta.accept(job.line.phoneNumberId, job.callId, this.#sdpAnswer);
    this.#accepted = true;
    session.media.leg.startSilence();
    session.media.leg.releaseMedia();
    await this.#d.outcomes
      ?.userCallAnswered?.(job.line.phoneNumberId, job.caller, job.callId)
      .catch((error: unknown) =>
        session.log.warn({ err: errorFields(error) }, 'recording the answered call in the permission ledger failed'),
      );
  }
}
