/**
 * The WhatsApp side of a business-initiated call: create the WebRTC offer, Meta `connect`, record
 * the call under Meta's call id with this worker as owner, apply Meta's SDP answer from the
 * webhook, and report RINGING / ACCEPTED / REJECTED / terminate (meta-calling-api.md §2.8, §3.1).
 * Whatever started the call (a PBX INVITE, the control API) decides what happens on each event.
 */
import type { Logger } from 'pino';
import type { CallOwner, CallPatch, CallRecord, CallStore, WorkerSignal } from '#core/calls/call-record.ts';
import type { EndReason } from '#core/calls/call-state.ts';
import type { MetaGraphClient } from '#core/meta/graph-client.ts';
import type { WhatsAppUser } from '#core/meta/webhook.ts';
import type { WhatsAppLeg } from '../webrtc/whatsapp-leg.ts';
import type { ActiveCall } from '../worker.ts';
import { errorFields } from './call-session.ts';

/** What happened on the WhatsApp side. */
export type WhatsAppOutboundEvent =
  | { readonly type: 'ringing' }
  | { readonly type: 'accepted' }
  | { readonly type: 'rejected' }
  | { readonly type: 'terminated'; readonly reason: EndReason };

/** Collaborators. */
export interface WhatsAppOutboundDeps {
  readonly calls: CallStore;
  readonly meta: Pick<MetaGraphClient, 'connect' | 'terminate'>;
  readonly owner: () => CallOwner;
  readonly adopt: (callId: string, call: ActiveCall) => void;
  readonly logger: Logger;
  readonly now?: () => number;
}

/** Places the WhatsApp leg of a business-initiated call. */
export class WhatsAppOutbound {
  readonly leg: WhatsAppLeg;
  callId: string | undefined;
  #phoneNumberId = '';
  #log: Logger;
  readonly #d: WhatsAppOutboundDeps;
  #answerApplied = false;
  #ringing = false;
  #accepted = false;
  #listener: ((e: WhatsAppOutboundEvent) => Promise<void>) | undefined;
  #queue: Promise<void> = Promise.resolve();

  /** `leg` is the call's WhatsApp leg; its owner (the call's `CallMedia`) closes it. */
  constructor(deps: WhatsAppOutboundDeps, leg: WhatsAppLeg) {
    this.#d = deps;
    this.#log = deps.logger;
    this.leg = leg;
  }

  /** True once the user picked up. */
  get accepted(): boolean {
    return this.#accepted;
  }

  /**
   * Calls Meta and registers the call. Throws Meta's error (MetaApiError) when Meta refuses.
   * `active` is the call as the worker should know it (done, signal routing, end).
   */
  async place(
    line: { phoneNumberId: string; businessNumber: string },
    user: WhatsAppUser,
    options: {
      callbackData?: string;
      patch?: CallPatch;
      onEvent: (e: WhatsAppOutboundEvent) => Promise<void>;
      active: Omit<ActiveCall, 'signal'>;
    },
  ): Promise<string> {
    this.#listener = options.onEvent;
    this.#phoneNumberId = line.phoneNumberId;
    const offer = await this.leg.createOffer();
    const callee = user.phone ? { to: user.phone } : { recipient: user.userId! };
    const callId = await this.#d.meta.connect(line.phoneNumberId, callee, offer, options.callbackData);
    this.callId = callId;
    this.#log = this.#log.child({ callId });
    const t = (this.#d.now ?? Date.now)();
    const record: CallRecord = {
      callId,
      direction: 'business-initiated',
      state: 'claimed',
      version: 1,
      line: { phoneNumberId: line.phoneNumberId, businessNumber: line.businessNumber, accountId: '' },
      user,
      createdAt: t,
      updatedAt: t,
      slotHeld: true,
      owner: this.#d.owner(),
      ...(options.patch ?? {}),
    };
    await this.#d.calls.createIfAbsent(record);
    await this.#d.calls.appendHistory(callId, { at: t, what: 'connect-sent' });
    this.#d.adopt(callId, { ...options.active, signal: (s) => this.signal(s) });
    // Webhooks that arrived before the call was registered are in its history (see the webhook handler).
    for (const h of await this.#d.calls.history(callId)) {
      const detail = (h.detail ?? {}) as { sdpAnswer?: string; status?: 'ringing' | 'accepted' | 'rejected' };
      if (h.what === 'call-answer-received' && detail.sdpAnswer)
        this.signal({ type: 'call-answer-received', callId, sdpAnswer: detail.sdpAnswer });
      if (h.what === 'call-progress' && detail.status)
        this.signal({ type: 'call-progress', callId, status: detail.status });
    }
    this.#log.info('business-initiated call placed at Meta');
    return callId;
  }

  /** An in-call event for this call (from the worker's control queue). */
  signal(signal: WorkerSignal): void {
    this.#queue = this.#queue
      .then(() => this.#onSignal(signal))
      .catch((error: unknown) => {
        this.#log.error({ err: errorFields(error) }, 'handling a WhatsApp event failed');
      });
  }

  async #onSignal(signal: WorkerSignal): Promise<void> {
    if (signal.type === 'call-answer-received') {
      if (this.#answerApplied) return;
      this.#answerApplied = true;
      await this.leg.applyAnswer(signal.sdpAnswer);
      // Meta expects the business to send the first media packet (§5.1, "maiden packet").
      this.leg.startSilence();
      return;
    }
    if (signal.type === 'call-progress') {
      if (signal.status === 'ringing' && !this.#ringing) {
        this.#ringing = true;
        const t = (this.#d.now ?? Date.now)();
        await this.#d.calls.transition(this.callId!, { type: 'ringing' }, { ringingAt: t, updatedAt: t });
        await this.#listener?.({ type: 'ringing' });
      } else if (signal.status === 'accepted' && !this.#accepted) {
        this.#accepted = true;
        await this.#listener?.({ type: 'accepted' });
      } else if (signal.status === 'rejected') {
        await this.#listener?.({ type: 'rejected' });
      }
      return;
    }
    await this.#listener?.({ type: 'terminated', reason: signal.reason });
  }

  /** Ends the WhatsApp leg at Meta (unless Meta ended it). */
  async terminate(): Promise<void> {
    if (!this.callId) return;
    await this.#d.meta
      .terminate(this.#phoneNumberId, this.callId)
      .catch((error: unknown) => this.#log.warn({ err: errorFields(error) }, 'Meta terminate failed'));
  }

  /** Waits for queued events to be handled. */
  async settled(): Promise<void> {
    await this.#queue;
  }
}
