/**
 * A business-initiated call started from the control API (`POST /v1/calls`), in one of two orders:
 *
 * - **customer-first** (8x8's way): ring the WhatsApp user; once they pick up, ring the agent;
 *   bridge when the agent answers. The user hears silence while the agent's phone rings.
 * - **agent-first**: ring the agent; once the agent answers, ring the WhatsApp user; bridge when the
 *   user picks up. The agent hears silence while WhatsApp rings.
 *
 * Either way the WhatsApp side is {@link WhatsAppOutbound} and the SIP side is an ordinary UAC
 * call to the configured (or requested) SIP target.
 */
import type { Logger } from 'pino';
import type { CallOwner, CallStore } from '#core/calls/call-record.ts';
import type { EndReason } from '#core/calls/call-state.ts';
import { endCall } from '#core/calls/lifecycle.ts';
import type { MetaGraphClient } from '#core/meta/graph-client.ts';
import type { WhatsAppUser } from '#core/meta/webhook.ts';
import { linkBusinessCall } from '#core/outbound/requests.ts';
import type { WorkerConfig } from '../config.ts';
import { MediaBridge } from '../media/media-bridge.ts';
import type { RtpSession } from '../media/rtp-session.ts';
import { createSipOffer, parseSipAnswer, type SipMediaDescription } from '../media/sip-sdp.ts';
import type { OutboundSipCall, SipPort } from '../sip/sip-port.ts';
import type { ActiveCall } from '../worker.ts';
import { releaseAndRecord } from './media-stats.ts';
import type { BusinessCallOutcomes } from './pbx-call.ts';
import { openSipMedia } from './sip-media.ts';
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
  readonly now?: () => number;
}

/** Runs one API-started business call; the returned call settles when it is over. */
export function startApiBusinessCall(request: ApiBusinessCall, deps: ApiBusinessCallDeps): ActiveCall {
  const call = new ApiCall(request, deps);
  return { done: call.run(), signal: (s) => call.whatsApp.signal(s), end: async () => call.end() };
}

class ApiCall {
  readonly whatsApp: WhatsAppOutbound;
  readonly #r: ApiBusinessCall;
  readonly #d: ApiBusinessCallDeps;
  #log: Logger;
  readonly #now: () => number;
  #rtp: RtpSession | undefined;
  #sipCall: OutboundSipCall | undefined;
  #sipMedia: SipMediaDescription | undefined;
  #bridge: MediaBridge | undefined;
  #placedAtMeta = false;
  #agentAnswered = false;
  #ending = false;
  #startedAt = 0;
  #answeredAt = 0;
  #resolveDone!: () => void;
  readonly #done = new Promise<void>((resolve) => {
    this.#resolveDone = resolve;
  });

  constructor(request: ApiBusinessCall, deps: ApiBusinessCallDeps) {
    this.#r = request;
    this.#d = deps;
    this.#log = deps.logger.child({ requestId: request.requestId, mode: request.mode });
    this.#now = deps.now ?? Date.now;
    this.whatsApp = new WhatsAppOutbound({ ...deps, logger: this.#log });
  }

  async run(): Promise<void> {
    this.#startedAt = this.#now();
    try {
      if (this.#r.mode === 'customer-first') await this.#placeWhatsApp();
      else await this.#ringAgent();
    } catch (error) {
      this.#log.warn(
        { err: error instanceof Error ? error.message : String(error) },
        'business-initiated call could not be placed',
      );
      this.#finish('bridge-error', 'bridge');
    }
    await this.#done;
  }

  async end(): Promise<void> {
    this.#finish('bridge-error', 'bridge');
    await this.#done;
  }

  async #placeWhatsApp(): Promise<void> {
    await this.whatsApp.place(this.#r.line, this.#r.user, {
      ...(this.#r.callbackData === undefined ? {} : { callbackData: this.#r.callbackData }),
      patch: { requestId: this.#r.requestId, mode: this.#r.mode },
      onEvent: (e) => this.#onWhatsApp(e),
      active: { done: this.#done, end: () => this.end() },
    });
    this.#placedAtMeta = true;
    // The request record hands its concurrency slot to Meta's call record (requests.ts).
    await linkBusinessCall(this.#d.calls, this.#r.requestId, this.whatsApp.callId!, this.#now());
  }

  async #ringAgent(): Promise<void> {
    const config = this.#d.config;
    const { rtp, sdp } = await openSipMedia(config, this.#log);
    this.#rtp = rtp;
    const sdpOffer = createSipOffer(sdp);
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
    sipCall.on((e) => {
      void (async () => {
        if (e.type === 'answered') {
          this.#agentAnswered = true;
          this.#sipMedia = parseSipAnswer(e.sdp, [...config.media.codecs]);
          if (this.#r.mode === 'agent-first') await this.#placeWhatsApp();
          else await this.#connect();
        } else if (e.type === 'failed') {
          this.#finish('sip-rejected', 'sip');
        } else if (e.type === 'remote-hangup') {
          this.#finish('agent-hung-up', 'sip');
        } else if (e.type === 'hold') this.#bridge?.hold();
        else if (e.type === 'resume') this.#bridge?.resume();
      })().catch((error: unknown) => {
        this.#log.error({ err: error instanceof Error ? error.message : String(error) }, 'handling a SIP event failed');
        this.#finish('bridge-error', 'bridge');
      });
    });
  }

  async #onWhatsApp(e: WhatsAppOutboundEvent): Promise<void> {
    if (this.#ending) return;
    const { phoneNumberId } = this.#r.line;
    if (e.type === 'accepted') {
      if (this.#r.mode === 'customer-first') await this.#ringAgent();
      else await this.#connect();
    } else if (e.type === 'rejected') {
      await this.#d.outcomes?.unanswered(phoneNumberId, this.#r.user, this.whatsApp.callId);
      this.#finish('rejected-by-user', 'whatsapp');
    } else if (e.type === 'terminated') {
      if (!this.whatsApp.accepted)
        await this.#d.outcomes?.unanswered(phoneNumberId, this.#r.user, this.whatsApp.callId);
      this.#finish(this.whatsApp.accepted ? e.reason : 'unanswered', 'whatsapp');
    }
  }

  /** Both sides are up: bridge them. */
  async #connect(): Promise<void> {
    if (!this.#sipMedia || !this.#rtp || !this.whatsApp.callId) return;
    this.#bridge = new MediaBridge({
      whatsapp: this.whatsApp.leg,
      rtp: this.#rtp,
      sip: this.#sipMedia,
      callId: this.whatsApp.callId,
      logger: this.#log,
      ...this.#d.config.media.transcode,
    });
    this.#bridge.start();
    this.#answeredAt = this.#now();
    await this.#d.calls.transition(
      this.whatsApp.callId,
      { type: 'answered' },
      {
        answeredAt: this.#answeredAt,
        updatedAt: this.#answeredAt,
        timings: { answerMs: this.#answeredAt - this.#startedAt },
        sip: { callId: this.#sipCall!.callId },
      },
    );
    await this.#d.outcomes?.connected(this.#r.line.phoneNumberId, this.#r.user, this.whatsApp.callId);
    this.#log.info({ mode: this.#bridge.mode }, 'business-initiated call bridged');
  }

  #finish(why: EndReason, by: 'whatsapp' | 'sip' | 'bridge'): void {
    if (this.#ending) return;
    this.#ending = true;
    void this.#end(why, by).finally(() => this.#resolveDone());
  }

  async #end(why: EndReason, by: 'whatsapp' | 'sip' | 'bridge'): Promise<void> {
    const tasks: Array<Promise<unknown>> = [];
    if (by !== 'sip' && this.#sipCall) tasks.push(this.#sipCall.hangUp());
    if (by !== 'whatsapp' && this.#placedAtMeta) tasks.push(this.whatsApp.terminate());
    const callId = this.whatsApp.callId;
    if (callId) {
      tasks.push(
        endCall(
          callId,
          why,
          { calls: this.#d.calls, now: this.#now, finishedRetentionSeconds: this.#d.config.finishedRetentionSeconds },
          {
            endedBy: by === 'whatsapp' ? 'whatsapp' : by === 'sip' ? 'sip' : 'bridge',
          },
        ),
      );
    }
    // The request record ends too; before the link it still holds the slot, which endCall returns.
    tasks.push(
      endCall(
        this.#r.requestId,
        why,
        { calls: this.#d.calls, now: this.#now, finishedRetentionSeconds: this.#d.config.finishedRetentionSeconds },
        {
          endedBy: by === 'whatsapp' ? 'whatsapp' : by === 'sip' ? 'sip' : 'bridge',
        },
      ),
    );
    await Promise.allSettled(tasks);
    await this.whatsApp.settled().catch(() => undefined);
    await releaseAndRecord({
      calls: this.#d.calls,
      callId,
      bridge: this.#bridge,
      rtp: this.#rtp,
      leg: this.whatsApp.leg,
      startedAt: this.#startedAt,
      answeredAt: this.#answeredAt,
      now: this.#now(),
    });
    this.#log.info({ reason: why, by, agentAnswered: this.#agentAnswered }, 'business-initiated call ended');
  }
}
