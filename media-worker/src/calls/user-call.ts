/**
 * One user-initiated call, from claim to hang-up: answer Meta's offer, pre-accept, ring the SIP
 * endpoint, bridge media, accept. Ending, the store, metrics and clean-up are the
 * {@link CallSession}'s.
 *
 * Order matters (meta-calling-api.md §3.2, §5.2): the SDP answer goes to Meta with `pre_accept`
 * before the INVITE, so ICE and DTLS converge while the agent's phone rings and nothing is
 * clipped; the bridge sends Opus silence from the moment DTLS is up, so Meta's 20 s no-media
 * watchdog never fires; `accept` carries the same SDP once SIP answers.
 */
import type { Logger } from 'pino';
import type { CallStore, UserCallJob, WorkerSignal } from '#core/calls/call-record.ts';
import { MetaApiError } from '#core/errors.ts';
import type { MetaGraphClient } from '#core/meta/graph-client.ts';
import type { WorkerConfig } from '../config.ts';
import { createSipOffer, parseSipAnswer } from '../media/sip-sdp.ts';
import type { WorkerMetrics } from '../ops/metrics.ts';
import type { OutboundSipCall, SipCallEvent, SipPort } from '../sip/sip-port.ts';
import type { ActiveCall, CallRunner } from '../worker.ts';
import { applySipDialogEvent, CallMedia } from './call-media.ts';
import { CallSession, errorFields } from './call-session.ts';
import type { BusinessCallOutcomes } from './ports.ts';
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
  #sdpAnswer = '';
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
      new CallMedia(deps.config, log, job.callId),
      {
        hangUpSip: () => this.#sipCall?.hangUp(),
        // Before `accept` the call is refused with `reject`, after it ended with `terminate` (§3.2).
        endAtMeta: () => this.#d.meta[this.#accepted ? 'terminate' : 'reject'](job.line.phoneNumberId, job.callId),
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
      (error) => (error instanceof MetaApiError ? 'meta-terminated' : 'bridge-error'),
    );
    await this.#session.done;
  }

  /** An in-call event from the control plane. */
  signal(signal: WorkerSignal): void {
    if (signal.type === 'call-terminated') {
      this.#session.log.info({ reason: signal.reason }, 'WhatsApp side ended the call');
      this.#session.finish({ reason: signal.reason, by: 'whatsapp' });
    }
  }

  /** Ends the call from the bridge (worker shutdown). */
  async end(reason: 'bridge-error'): Promise<void> {
    await this.#session.end(reason);
  }

  async #setUp(): Promise<void> {
    const { config, meta, calls } = this.#d;
    const job = this.#job;
    const session = this.#session;
    const { leg } = session.media;
    leg.onConnectionStateChange((state) => {
      if (state === 'failed') session.finish({ reason: 'media-failed', by: 'bridge' });
    });
    this.#sdpAnswer = await leg.answer(job.sdpOffer);
    if (session.ending) return;
    await meta.preAccept(job.line.phoneNumberId, job.callId, this.#sdpAnswer);
    const preAcceptedAt = this.#now();
    leg.startSilence();
    await calls.transition(job.callId, { type: 'pre-accepted' }, { preAcceptedAt, updatedAt: preAcceptedAt });
    if (session.ending) return;

    const sdpOffer = createSipOffer(await session.media.openSip());
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
      answerTimeoutMs: config.sip.ringTimeoutMs,
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
        if (event.sdp) session.media.start(parseSipAnswer(event.sdp, [...codecs]), job.callId); // early media (183)
        await this.#d.calls.transition(job.callId, { type: 'ringing' }, { ringingAt: t, updatedAt: t });
        return;
      }
      case 'answered': {
        this.#answeredAt = this.#now();
        session.markAnswered(this.#answeredAt);
        session.media.start(parseSipAnswer(event.sdp, [...codecs]), job.callId);
        await this.#d.meta.accept(job.line.phoneNumberId, job.callId, this.#sdpAnswer);
        this.#accepted = true;
        await this.#d.outcomes
          ?.userCallAnswered?.(job.line.phoneNumberId, job.caller, job.callId)
          .catch((error: unknown) =>
            session.log.warn(
              { err: errorFields(error) },
              'recording the answered call in the permission ledger failed',
            ),
          );
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
        session.finish({ reason: 'sip-rejected', by: 'sip', sip: { status: event.status, reason: event.reason } });
        return;
      case 'remote-hangup':
        session.finish({ reason: 'agent-hung-up', by: 'sip' });
        return;
      default:
        applySipDialogEvent(event, session.media, codecs);
    }
  }
}
