/**
 * The WhatsApp side of a business-initiated call: create the WebRTC offer, Meta `connect`, record
 * the call under Meta's call id with this worker as owner, apply Meta's SDP answer from the
 * webhook, and report RINGING / pickup / REJECTED / terminate (meta-calling-api.md §2.8, §3.1).
 * Whatever started the call (a PBX INVITE, the control API) decides what happens on each event.
 *
 * Pickup is the first audio RTP from Meta after RINGING, or the `ACCEPTED` status, whichever
 * comes first: Meta says `ACCEPTED` "will typically always arrive after the call has been
 * established… primarily sent for call event auditing" (M-BIC), and webhooks may come late,
 * twice or never (§2.4). Whether the call was answered, for the permission ledger, is the
 * `terminate`'s `start_time` (Corrections §3), carried by the `call-terminated` signal.
 */
import type { Logger } from 'pino';
import type { CallOwner, CallPatch, CallRecord, CallStore, WorkerSignal } from '#core/calls/call-record.ts';
import type { EndReason } from '#core/calls/call-state.ts';
import type { MetaGraphClient } from '#core/meta/graph-client.ts';
import type { MetaCallError, WhatsAppUser } from '#core/meta/webhook.ts';
import type { ActiveCall } from '../worker.ts';
import { errorFields } from './call-session.ts';
import type { WhatsAppLegPort } from './media-port.ts';

/** What happened on the WhatsApp side. */
export type WhatsAppOutboundEvent =
  | { readonly type: 'ringing' }
  /** The user picked up: `first-audio` (Meta's relay sent the user's audio) or `accepted-status` (the webhook). */
  | { readonly type: 'accepted'; readonly by: PickupSignal }
  | { readonly type: 'rejected' }
  /**
   * Meta ended the call. `answered`: the terminate carried `start_time`/`duration` (Meta counts the
   * call as connected), or, from a control plane that does not say, whether the user picked up here.
   */
  | {
      readonly type: 'terminated';
      readonly reason: EndReason;
      readonly answered: boolean;
      /** Meta's `errors[]` on the terminate (M-TRB), if any. */
      readonly metaErrors?: readonly MetaCallError[];
    };

/** What told the bridge the user picked up. */
export type PickupSignal = 'first-audio' | 'accepted-status';

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
  readonly leg: WhatsAppLegPort;
  callId: string | undefined;
  #phoneNumberId = '';
  #log: Logger;
  readonly #d: WhatsAppOutboundDeps;
  #answerApplied = false;
  #ringing = false;
  #accepted = false;
  #stopListening: (() => void) | undefined;
  #listener: ((e: WhatsAppOutboundEvent) => Promise<void>) | undefined;
  #queue: Promise<void> = Promise.resolve();

  /** `leg` is the call's WhatsApp leg; its owner (the call's `CallMedia`) closes it. */
  constructor(deps: WhatsAppOutboundDeps, leg: WhatsAppLegPort) {
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
        // From now on the first audio from Meta is the user's pickup (earlier packets, if Meta ever
        // sent any, are not: the phone was not ringing yet).
        if (!this.#accepted) this.#stopListening = this.leg.onAudio(() => this.#firstAudio());
        const t = (this.#d.now ?? Date.now)();
        await this.#d.calls.transition(this.callId!, { type: 'ringing' }, { ringingAt: t, updatedAt: t });
        await this.#listener?.({ type: 'ringing' });
      } else if (signal.status === 'accepted') {
        await this.#pickedUp('accepted-status');
      } else if (signal.status === 'rejected') {
        this.#stopAudioPickup();
        await this.#listener?.({ type: 'rejected' });
      }
      return;
    }
    this.#stopAudioPickup();
    await this.#listener?.({
      type: 'terminated',
      reason: signal.reason,
      answered: signal.answered ?? this.#accepted,
      ...(signal.metaErrors ? { metaErrors: signal.metaErrors } : {}),
    });
  }

  /** The first audio packet from Meta after RINGING: hand the pickup to the event queue, once. */
  #firstAudio(): void {
    this.#stopAudioPickup();
    this.#queue = this.#queue
      .then(() => this.#pickedUp('first-audio'))
      .catch((error: unknown) => {
        this.#log.error({ err: errorFields(error) }, 'handling the pickup failed');
      });
  }

  /** The user picked up (whichever signal came first; the other, and duplicates, change nothing). */
  async #pickedUp(by: PickupSignal): Promise<void> {
    if (this.#accepted) return;
    this.#accepted = true;
    this.#stopAudioPickup();
    const t = (this.#d.now ?? Date.now)();
    this.#log.info({ by }, 'the WhatsApp user picked up');
    await this.#d.calls.appendHistory(this.callId!, { at: t, what: 'picked-up', detail: { by } });
    await this.#listener?.({ type: 'accepted', by });
  }

  #stopAudioPickup(): void {
    this.#stopListening?.();
    this.#stopListening = undefined;
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
