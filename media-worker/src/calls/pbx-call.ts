/**
 * A business-initiated call started by the PBX: an INVITE to `sip:+<user number>@bridge`.
 *
 * The gate (source allow-list, scanner user agents) and the call rules (permission, countries,
 * sanctions, daily limit, capacity) run before anything reaches Meta; a refusal is a fast SIP
 * error with a Reason header (RFC 3326). Allowed calls: create the WebRTC offer, Meta `connect`,
 * apply Meta's SDP answer from the webhook, RINGING → 180, ACCEPTED → 200 with SDP, then bridge
 * as for user-initiated calls (meta-calling-api.md §2.8, §3.1).
 */
import type { Logger } from 'pino';
import type { CallOwner, CallPatch, CallStore } from '#core/calls/call-record.ts';
import type { EndReason } from '#core/calls/call-state.ts';
import { endCall } from '#core/calls/lifecycle.ts';
import { MetaApiError } from '#core/errors.ts';
import type { MetaGraphClient } from '#core/meta/graph-client.ts';
import type { WhatsAppUser } from '#core/meta/webhook.ts';
import type { CheckBusinessCall } from '#core/outbound/contract.ts';
import type { WorkerConfig } from '../config.ts';
import { MediaBridge } from '../media/media-bridge.ts';
import type { RtpSession } from '../media/rtp-session.ts';
import { answerSipOffer } from '../media/sip-sdp.ts';
import type { InboundSipCall } from '../sip/sip-port.ts';
import type { ActiveCall } from '../worker.ts';
import { releaseAndRecord } from './media-stats.ts';
import type { PbxGate } from './pbx-gate.ts';
import { openSipMedia } from './sip-media.ts';
import { WhatsAppOutbound, type WhatsAppOutboundEvent } from './whatsapp-outbound.ts';

/** Outcomes the permission ledger counts (connected calls per day, unanswered in a row). */
export interface BusinessCallOutcomes {
  connected(phoneNumberId: string, user: WhatsAppUser, callId?: string): Promise<void>;
  unanswered(phoneNumberId: string, user: WhatsAppUser, callId?: string): Promise<void>;
  /** A user-initiated call was answered: resets Meta's permission-request limits (§4.1). */
  userCallAnswered?(phoneNumberId: string, user: WhatsAppUser, callId?: string): Promise<void>;
}

/** Collaborators of PBX-started calls. */
export interface PbxCallDeps {
  readonly config: WorkerConfig;
  readonly calls: CallStore;
  readonly meta: Pick<MetaGraphClient, 'connect' | 'terminate'>;
  readonly gate: PbxGate;
  readonly checkBusinessCall: CheckBusinessCall;
  readonly outcomes?: BusinessCallOutcomes;
  readonly owner: () => CallOwner;
  /** Registers the call with the worker under Meta's call id; false when the worker is full. */
  readonly adopt: (callId: string, call: ActiveCall) => void;
  readonly full: () => boolean;
  readonly logger: Logger;
  readonly now?: () => number;
}

/** SIP answers for Meta's connect errors (§6). */
export function sipStatusForMeta(error: unknown): { status: number; text: string } {
  const code = error instanceof MetaApiError ? error.metaCode : undefined;
  switch (code) {
    case 138006:
      return { status: 403, text: 'no-permission' };
    case 138013:
      return { status: 403, text: 'business-country-blocked' };
    case 138012:
      return { status: 403, text: 'daily-limit' };
    case 138001:
      return { status: 404, text: 'not-on-whatsapp' };
    case 138003:
      return { status: 486, text: 'already-in-a-call' };
    case 138002:
    case 138005:
      return { status: 503, text: 'meta-rate-limit' };
    default:
      return { status: 503, text: 'meta-unavailable' };
  }
}

export function reason(status: number, text: string): Record<string, string> {
  return { Reason: `SIP;cause=${status};text="${text.replace(/"/g, "'")}"` };
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
    invite.reject(
      gate.sipStatus,
      gate.sipStatus === 404 ? 'Not Found' : 'Forbidden',
      reason(gate.sipStatus, gate.reason),
    );
    return;
  }
  const line = deps.config.line;
  if (!line) {
    invite.reject(503, 'Service Unavailable', reason(503, 'business number not configured'));
    return;
  }
  if (!invite.sdpOffer) {
    invite.reject(488, 'Not Acceptable Here', reason(488, 'an SDP offer is required'));
    return;
  }
  if (deps.full()) {
    invite.reject(503, 'Service Unavailable', reason(503, 'worker full'));
    return;
  }
  const verdict = await deps.checkBusinessCall({ phoneNumberId: line.phoneNumberId, user: { phone: gate.phone } });
  if (!verdict.allowed) {
    log.info({ reason: verdict.reason }, 'business-initiated call refused by the rules');
    invite.reject(
      verdict.sipStatus,
      verdict.sipStatus === 404 ? 'Not Found' : 'Forbidden',
      reason(verdict.sipStatus, verdict.reason),
    );
    return;
  }
  if (!(await deps.calls.acquireSlot(line.phoneNumberId, deps.config.maxConcurrentCalls))) {
    invite.reject(503, 'Service Unavailable', reason(503, 'over-capacity'));
    return;
  }
  const call = new PbxCall(invite, gate.phone, deps, log);
  await call.start();
}

/** The life of one PBX-started call. */
class PbxCall {
  readonly #invite: InboundSipCall;
  readonly #phone: string;
  readonly #d: PbxCallDeps;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #wa: WhatsAppOutbound;
  #rtp: RtpSession | undefined;
  #bridge: MediaBridge | undefined;
  #sipAnswered = false;
  #ending = false;
  #resolveDone!: () => void;
  readonly #done = new Promise<void>((resolve) => {
    this.#resolveDone = resolve;
  });
  #startedAt = 0;
  #acceptedAt = 0;

  constructor(invite: InboundSipCall, phone: string, deps: PbxCallDeps, log: Logger) {
    this.#invite = invite;
    this.#phone = phone;
    this.#d = deps;
    this.#log = log;
    this.#now = deps.now ?? Date.now;
    this.#wa = new WhatsAppOutbound({ ...deps, logger: log });
  }

  async start(): Promise<void> {
    const line = this.#d.config.line!;
    this.#startedAt = this.#now();
    try {
      await this.#wa.place(
        line,
        { phone: this.#phone },
        {
          patch: { sip: { callId: this.#invite.callId } },
          onEvent: (e) => this.#onWhatsApp(e),
          active: {
            done: this.#done,
            end: async () => {
              this.#finish('bridge-error', 'bridge');
              await this.#done;
            },
          },
        },
      );
    } catch (error) {
      const sip = sipStatusForMeta(error);
      this.#log.warn(
        { err: error instanceof Error ? error.message : String(error), sipStatus: sip.status },
        'Meta refused the call',
      );
      this.#invite.reject(sip.status, phrase(sip.status), reason(sip.status, sip.text));
      await this.#d.calls.releaseSlot(line.phoneNumberId);
      await this.#wa.leg.close();
      return;
    }
    this.#invite.on((e) => {
      if (e.type === 'cancelled' || e.type === 'remote-hangup') this.#finish('agent-hung-up', 'sip');
      else if (e.type === 'hold') this.#bridge?.hold();
      else if (e.type === 'resume') this.#bridge?.resume();
      else if (e.type === 'failed') this.#finish('bridge-error', 'sip');
    });
  }

  async #onWhatsApp(e: WhatsAppOutboundEvent): Promise<void> {
    if (this.#ending) return;
    const line = this.#d.config.line!;
    switch (e.type) {
      case 'ringing':
        this.#invite.ringing();
        return;
      case 'accepted':
        await this.#onAccepted();
        return;
      case 'rejected':
        await this.#d.outcomes?.unanswered(line.phoneNumberId, { phone: this.#phone }, this.#wa.callId);
        this.#finish('rejected-by-user', 'whatsapp', 486);
        return;
      case 'terminated':
        // Meta's terminate: the webhook function has already ended the record.
        if (!this.#wa.accepted)
          await this.#d.outcomes?.unanswered(line.phoneNumberId, { phone: this.#phone }, this.#wa.callId);
        this.#finish(e.reason, 'whatsapp', this.#wa.accepted ? undefined : 408);
        return;
    }
  }

  async #onAccepted(): Promise<void> {
    this.#acceptedAt = this.#now();
    const config = this.#d.config;
    const media = await openSipMedia(config, this.#log);
    const rtp = media.rtp;
    this.#rtp = rtp;
    const { sdp, negotiated } = answerSipOffer(this.#invite.sdpOffer!, media.sdp);
    this.#bridge = new MediaBridge({
      whatsapp: this.#wa.leg,
      rtp,
      sip: negotiated,
      callId: this.#wa.callId!,
      logger: this.#log,
      ...this.#d.config.media.transcode,
    });
    this.#bridge.start();
    await this.#invite.answer(sdp);
    this.#sipAnswered = true;
    const t = this.#now();
    await this.#d.calls.transition(
      this.#wa.callId!,
      { type: 'answered' },
      { answeredAt: t, updatedAt: t, timings: { answerMs: t - this.#startedAt } },
    );
    await this.#d.outcomes?.connected(config.line!.phoneNumberId, { phone: this.#phone }, this.#wa.callId);
    this.#log.info({ mode: this.#bridge.mode }, 'WhatsApp user answered; bridged to the PBX');
  }

  /** Ends the call once: tells the side that did not end it, records, releases. */
  #finish(why: EndReason, by: 'whatsapp' | 'sip' | 'bridge', sipStatus?: number): void {
    if (this.#ending) return;
    this.#ending = true;
    void this.#end(why, by, sipStatus).finally(() => this.#resolveDone());
  }

  async #end(why: EndReason, by: 'whatsapp' | 'sip' | 'bridge', sipStatus?: number): Promise<void> {
    const callId = this.#wa.callId!;
    const tasks: Array<Promise<unknown>> = [];
    if (by !== 'sip') {
      if (this.#sipAnswered) tasks.push(this.#invite.hangUp());
      else {
        const status = sipStatus ?? 480;
        const text = why === 'rejected-by-user' ? 'rejected by the WhatsApp user' : status === 408 ? 'no answer' : why;
        this.#invite.reject(status, phrase(status), reason(status, text));
      }
    }
    if (by !== 'whatsapp') tasks.push(this.#wa.terminate());
    const patch: CallPatch = { endedBy: by === 'whatsapp' ? 'whatsapp' : by === 'sip' ? 'sip' : 'bridge' };
    tasks.push(
      endCall(
        callId,
        why,
        { calls: this.#d.calls, now: this.#now, finishedRetentionSeconds: this.#d.config.finishedRetentionSeconds },
        patch,
      ),
    );
    await Promise.allSettled(tasks);
    await this.#wa.settled().catch(() => undefined);
    await releaseAndRecord({
      calls: this.#d.calls,
      callId,
      bridge: this.#bridge,
      rtp: this.#rtp,
      leg: this.#wa.leg,
      startedAt: this.#startedAt,
      answeredAt: this.#acceptedAt,
      now: this.#now(),
    });
    this.#log.info({ reason: why, by }, 'business-initiated call ended');
  }
}

/** The standard reason phrase of the SIP statuses this module sends. */
export function phrase(status: number): string {
  return (
    {
      403: 'Forbidden',
      404: 'Not Found',
      408: 'Request Timeout',
      480: 'Temporarily Unavailable',
      486: 'Busy Here',
      488: 'Not Acceptable Here',
      503: 'Service Unavailable',
    }[status] ?? 'Failed'
  );
}
