/**
 * One user-initiated call, from claim to hang-up: answer Meta's offer, pre-accept, ring the SIP
 * endpoint, bridge media, accept, and end cleanly whichever side hangs up.
 *
 * Order matters (meta-calling-api.md §3.2, §5.2): the SDP answer goes to Meta with `pre_accept`
 * before the INVITE, so ICE and DTLS converge while the agent's phone rings and nothing is
 * clipped; the bridge sends Opus silence from the moment DTLS is up, so Meta's 20 s no-media
 * watchdog never fires; `accept` carries the same SDP once SIP answers.
 */
import type { Logger } from 'pino';
import type { CallMediaStats, CallPatch, CallStore, UserCallJob, WorkerSignal } from '#core/calls/call-record.ts';
import type { EndReason } from '#core/calls/call-state.ts';
import { endCall } from '#core/calls/lifecycle.ts';
import { MetaApiError } from '#core/errors.ts';
import type { MetaGraphClient } from '#core/meta/graph-client.ts';
import type { WorkerConfig, XHeaderField } from '../config.ts';
import { MediaBridge } from '../media/media-bridge.ts';
import type { RtpSession } from '../media/rtp-session.ts';
import { createSipOffer, parseSipAnswer, type SipMediaDescription } from '../media/sip-sdp.ts';
import type { WorkerMetrics } from '../ops/metrics.ts';
import type { OutboundSipCall, SipCallEvent, SipPort } from '../sip/sip-port.ts';
import { WhatsAppLeg } from '../webrtc/whatsapp-leg.ts';
import type { ActiveCall, CallRunner } from '../worker.ts';
import { collectMediaStats } from './media-stats.ts';
import type { BusinessCallOutcomes } from './pbx-call.ts';
import { openSipMedia } from './sip-media.ts';

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

type Ending = { reason: EndReason; by: 'whatsapp' | 'sip' | 'bridge'; sipStatus?: number; sipReason?: string };

/** The life of one user-initiated call on this worker. */
export class UserCall {
  readonly #job: UserCallJob;
  readonly #d: UserCallDeps;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #claimedAt: number;
  #leg: WhatsAppLeg | undefined;
  #rtp: RtpSession | undefined;
  #bridge: MediaBridge | undefined;
  #sipCall: OutboundSipCall | undefined;
  #sdpAnswer = '';
  #accepted = false;
  #inviteAt = 0;
  #answeredAt = 0;
  #ending: Ending | undefined;
  #events: Promise<void> = Promise.resolve();
  #resolveEnded!: () => void;
  readonly #ended = new Promise<void>((resolve) => {
    this.#resolveEnded = resolve;
  });

  constructor(job: UserCallJob, claimedAt: number, deps: UserCallDeps) {
    this.#job = job;
    this.#d = deps;
    this.#claimedAt = claimedAt;
    this.#now = deps.now ?? Date.now;
    this.#log = deps.logger.child({ callId: job.callId });
  }

  /** Runs the call to its end. Never rejects. */
  async run(): Promise<void> {
    try {
      await this.#setUp();
      await this.#ended;
    } catch (error) {
      this.#log.error({ err: describe(error) }, 'call failed');
      this.#finishFromBridge(error instanceof MetaApiError ? 'meta-terminated' : 'bridge-error');
      await this.#ended;
    }
    await this.#events.catch(() => undefined);
    await this.#cleanUp();
  }

  /** An in-call event from the control plane. */
  signal(signal: WorkerSignal): void {
    if (signal.type === 'call-terminated') {
      this.#log.info({ reason: signal.reason }, 'WhatsApp side ended the call');
      this.#finish({ reason: signal.reason, by: 'whatsapp' });
    }
  }

  /** Ends the call from the bridge (worker shutdown). */
  async end(reason: 'bridge-error'): Promise<void> {
    this.#finishFromBridge(reason);
    await this.#ended;
  }

  async #setUp(): Promise<void> {
    const { config, meta, calls } = this.#d;
    const job = this.#job;
    const leg = new WhatsAppLeg({
      bindAddress: config.media.bindAddress,
      ...(config.media.publicAddress ? { publicAddress: config.media.publicAddress } : {}),
      callId: job.callId,
      logger: this.#log,
    });
    this.#leg = leg;
    leg.onConnectionStateChange((state) => {
      if (state === 'failed') this.#finish({ reason: 'media-failed', by: 'bridge' });
    });
    this.#sdpAnswer = await leg.answer(job.sdpOffer);
    if (this.#ending) return;
    await meta.preAccept(job.line.phoneNumberId, job.callId, this.#sdpAnswer);
    const preAcceptedAt = this.#now();
    leg.startSilence();
    await calls.transition(job.callId, { type: 'pre-accepted' }, { preAcceptedAt, updatedAt: preAcceptedAt });
    if (this.#ending) return;

    const { rtp, sdp } = await openSipMedia(config, this.#log, job.callId);
    this.#rtp = rtp;
    const sdpOffer = createSipOffer(sdp);
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
    sipCall.on((event) => {
      this.#events = this.#events
        .then(() => this.#onSip(event))
        .catch((error: unknown) => {
          this.#log.error({ err: describe(error), event: event.type }, 'handling a SIP event failed');
          this.#finishFromBridge('bridge-error');
        });
    });
    this.#log.info({ sipCallId: sipCall.callId, targets: targets.map((t) => t.uri) }, 'INVITE sent');
    this.#d.metrics?.emit({ SetupLatency: this.#inviteAt - job.enqueuedAt });
    // The WhatsApp user may have hung up while we were setting up.
    if (this.#ending) await sipCall.hangUp();
  }

  async #onSip(event: SipCallEvent): Promise<void> {
    if (this.#ending && event.type !== 'remote-hangup') return;
    const job = this.#job;
    switch (event.type) {
      case 'trying':
        return;
      case 'ringing': {
        const t = this.#now();
        if (event.sdp) this.#startMedia(parseSipAnswer(event.sdp, [...this.#d.config.media.codecs])); // early media (183)
        await this.#d.calls.transition(job.callId, { type: 'ringing' }, { ringingAt: t, updatedAt: t });
        return;
      }
      case 'answered': {
        this.#answeredAt = this.#now();
        this.#startMedia(parseSipAnswer(event.sdp, [...this.#d.config.media.codecs]));
        await this.#d.meta.accept(job.line.phoneNumberId, job.callId, this.#sdpAnswer);
        this.#accepted = true;
        await this.#d.outcomes
          ?.userCallAnswered?.(job.line.phoneNumberId, job.caller, job.callId)
          .catch((error: unknown) =>
            this.#log.warn({ err: describe(error) }, 'recording the answered call in the permission ledger failed'),
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
        this.#log.info({ target: event.target, mode: this.#bridge?.mode }, 'call answered and accepted');
        this.#d.metrics?.emit({ CallsAnswered: 1 });
        return;
      }
      case 'failed':
        this.#log.info({ status: event.status, reason: event.reason }, 'SIP call failed');
        this.#finish({ reason: 'sip-rejected', by: 'sip', sipStatus: event.status, sipReason: event.reason });
        return;
      case 'remote-hangup':
        this.#finish({ reason: 'agent-hung-up', by: 'sip' });
        return;
      case 'hold':
        this.#bridge?.hold();
        return;
      case 'resume':
        this.#bridge?.resume();
        return;
      case 'media-update':
        this.#bridge?.updateSip(parseSipAnswer(event.sdp, [...this.#d.config.media.codecs]));
        return;
    }
  }

  #startMedia(sip: SipMediaDescription): void {
    if (this.#bridge) {
      this.#bridge.updateSip(sip);
      return;
    }
    this.#bridge = new MediaBridge({
      whatsapp: this.#leg!,
      rtp: this.#rtp!,
      sip,
      callId: this.#job.callId,
      logger: this.#log,
      ...this.#d.config.media.transcode,
    });
    this.#bridge.start();
  }

  #finishFromBridge(reason: EndReason): void {
    this.#finish({ reason, by: 'bridge' });
  }

  /** Starts ending the call once; the first cause wins. */
  #finish(ending: Ending): void {
    if (this.#ending) return;
    this.#ending = ending;
    this.#end(ending)
      .catch((error: unknown) => this.#log.error({ err: describe(error) }, 'ending the call failed'))
      .finally(() => this.#resolveEnded());
  }

  async #end(ending: Ending): Promise<void> {
    const job = this.#job;
    const tasks: Array<Promise<unknown>> = [];
    // Tell the SIP side at once (BYE or CANCEL), unless it was the SIP side that ended.
    if (ending.by !== 'sip' && this.#sipCall) tasks.push(this.#sipCall.hangUp());
    // Tell Meta, unless it was Meta that ended (a user hang-up needs no terminate, §3.2).
    if (ending.by !== 'whatsapp') {
      const action = this.#accepted ? 'terminate' : 'reject';
      tasks.push(
        this.#d.meta[action](job.line.phoneNumberId, job.callId).catch((error: unknown) =>
          this.#log.warn({ err: describe(error), action }, 'telling Meta the call ended failed'),
        ),
      );
      tasks.push(
        endCall(job.callId, ending.reason, this.#endDeps(), {
          endedBy: ending.by,
          ...(ending.sipStatus === undefined || !this.#sipCall
            ? {}
            : {
                sip: {
                  callId: this.#sipCall.callId,
                  status: ending.sipStatus,
                  ...(ending.sipReason ? { reason: ending.sipReason } : {}),
                },
              }),
        }).then((won) => {
          // Counted once: only the process whose conditional write ended the call reports it.
          if (won) this.#d.metrics?.emit({ CallsEnded: 1 }, { EndReason: ending.reason });
        }),
      );
    }
    const results = await Promise.allSettled(tasks);
    for (const r of results)
      if (r.status === 'rejected') this.#log.warn({ err: describe(r.reason) }, 'an end-of-call step failed');
    this.#log.info({ reason: ending.reason, by: ending.by }, 'call ended');
  }

  async #cleanUp(): Promise<void> {
    const ended = this.#now();
    let media: CallMediaStats | undefined;
    try {
      media = await collectMediaStats(this.#bridge, this.#leg, this.#rtp);
    } catch (error) {
      this.#log.warn({ err: describe(error) }, 'collecting media statistics failed');
    }
    await Promise.allSettled([this.#bridge?.close(), this.#rtp?.close(), this.#leg?.close()]);
    if (media) {
      this.#d.metrics?.emit(
        {
          MediaPacketLoss: lossPercent(media.whatsapp.packetsLost, media.whatsapp.packetsReceived),
          MediaJitter: media.whatsapp.jitterMs,
        },
        { Leg: 'whatsapp' },
      );
      this.#d.metrics?.emit(
        {
          MediaPacketLoss: lossPercent(media.sipToWhatsapp.lost, media.sipToWhatsapp.packets),
          MediaJitter: media.sipToWhatsapp.jitterMs,
        },
        { Leg: 'sip' },
      );
    }
    if (this.#answeredAt) this.#d.metrics?.emit({ HandleTime: (ended - this.#answeredAt) / 1000 });
    const patch: CallPatch = {
      ...(media ? { media } : {}),
      ...(this.#answeredAt
        ? {
            timings: {
              setupMs: this.#inviteAt - this.#job.enqueuedAt,
              answerMs: this.#answeredAt - this.#inviteAt,
              talkMs: ended - this.#answeredAt,
            },
          }
        : this.#inviteAt
          ? { timings: { setupMs: this.#inviteAt - this.#job.enqueuedAt } }
          : {}),
    };
    if (Object.keys(patch).length > 0) {
      await this.#d.calls
        .patchIf(this.#job.callId, {}, patch)
        .catch((error: unknown) => this.#log.warn({ err: describe(error) }, 'recording call statistics failed'));
    }
    this.#log.info({ heldMs: ended - this.#claimedAt }, 'call resources released');
  }

  #endDeps() {
    return { calls: this.#d.calls, now: this.#now, finishedRetentionSeconds: this.#d.config.finishedRetentionSeconds };
  }
}

function lossPercent(lost: number, received: number): number {
  return lost + received === 0 ? 0 : (100 * lost) / (lost + received);
}

/** Builds the configured X-headers from the call's context; absent values are left out. */
export function xHeaders(
  job: UserCallJob,
  mapping: ReadonlyArray<readonly [string, XHeaderField]>,
): Record<string, string> {
  const values: Record<XHeaderField, string | undefined> = {
    callerNumber: job.caller.phone ? `+${job.caller.phone}` : undefined,
    userId: job.caller.userId,
    parentUserId: job.caller.parentUserId,
    displayName: job.caller.name,
    username: job.caller.username,
    callId: job.callId,
    phoneNumberId: job.line.phoneNumberId,
    businessNumber: `+${job.line.businessNumber}`,
    ctaPayload: job.ctaPayload,
    deeplinkPayload: job.deeplinkPayload,
  };
  const headers: Record<string, string> = {};
  for (const [name, field] of mapping) {
    const v = values[field];
    if (v !== undefined && v !== '') headers[name] = v;
  }
  return headers;
}

function describe(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { message: String(error) };
  const e = error as Error & { status?: number; metaCode?: number; callId?: string };
  return { name: e.name, message: e.message, status: e.status, metaCode: e.metaCode };
}
