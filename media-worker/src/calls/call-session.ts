/**
 * The part of a call's life every kind shares (user-initiated, PBX-started, API-started): it ends
 * once, whichever side ends it first; the end is told to the other sides and written to the store;
 * the worker's metrics are emitted; media statistics are read, the media is closed and the
 * statistics are recorded. Each kind's file is only the script of what differs (which SIP role,
 * which Meta actions, in which order) and tells the session through {@link CallEnd} how to end
 * each side.
 */
import type { Logger } from 'pino';
import type { CallMediaStats, CallPatch, CallStore } from '#core/calls/call-record.ts';
import type { EndReason } from '#core/calls/call-state.ts';
import { endCall } from '#core/calls/lifecycle.ts';
import type { MetaCallError } from '#core/meta/webhook.ts';
import type { WorkerConfig } from '../config.ts';
import type { WorkerMetrics } from '../ops/metrics.ts';
import type { CallMediaPort } from './media-port.ts';

/** How a call ended: the reason on its record, the side that ended it, and the SIP status if SIP gave one. */
export interface Ending {
  readonly reason: EndReason;
  readonly by: 'whatsapp' | 'sip' | 'bridge';
  /** The final SIP status of the call's SIP side (received from or sent to the PBX) and its reason phrase. */
  readonly sip?: { readonly status: number; readonly reason?: string };
  /** Meta's `errors[]` when Meta ended the call with them (M-TRB): the SIP side hears them in a Reason header. */
  readonly metaErrors?: readonly MetaCallError[];
}

/** How one kind of call ends each side; the session decides when, and which sides. */
export interface CallEnd {
  /** Ends the SIP side (BYE, CANCEL, or a final response to an unanswered INVITE). Not called when SIP ended the call. */
  hangUpSip(ending: Ending): Promise<void> | undefined;
  /** Ends the WhatsApp side at Meta, by Meta's rules for this kind. Not called when WhatsApp ended the call. */
  endAtMeta(ending: Ending): Promise<void> | undefined;
  /**
   * The records the call ends: its own record first (the one counted in `CallsEnded` and given the
   * statistics), then linked ones (an API call's request record).
   */
  recordIds(): readonly string[];
  /** The SIP dialog's Call-ID, recorded with the SIP status on the ended record. */
  sipCallId(): string | undefined;
  /** The kind's set-up timings for the record; the session adds the talk time. */
  timings(): { readonly setupMs?: number; readonly answerMs?: number } | undefined;
  /** Work to let settle before the media is released (queued WhatsApp events). */
  settled?(): Promise<void>;
}

/** Collaborators of a {@link CallSession}. */
export interface CallSessionDeps {
  readonly config: WorkerConfig;
  readonly calls: CallStore;
  /** The call's logger. */
  readonly logger: Logger;
  /** CloudWatch metrics: answered, ended (by reason), handle time, media loss and jitter per leg. */
  readonly metrics?: WorkerMetrics;
  readonly now: () => number;
  /** When this worker took the call on (logged with the release). @default now() */
  readonly startedAt?: number;
}

/** The shared life of one call on this worker; see the module comment. */
export class CallSession {
  /** The call's media (WhatsApp leg, RTP session, bridge), in this thread or a media thread. */
  readonly media: CallMediaPort;
  readonly log: Logger;
  /** Settles once the call has ended and its media is released and recorded. Never rejects. */
  readonly done: Promise<void>;
  readonly #d: CallSessionDeps;
  readonly #end: CallEnd;
  readonly #startedAt: number;
  #ending: Ending | undefined;
  #answeredAt = 0;
  #setUp: Promise<void> = Promise.resolve();
  #events: Promise<void> = Promise.resolve();
  #resolveEnded!: () => void;
  readonly #ended = new Promise<void>((resolve) => {
    this.#resolveEnded = resolve;
  });

  constructor(deps: CallSessionDeps, media: CallMediaPort, end: CallEnd) {
    this.#d = deps;
    this.media = media;
    this.log = deps.logger;
    this.#end = end;
    this.#startedAt = deps.startedAt ?? deps.now();
    this.done = this.#ended.then(() => this.#release());
    // The media failed where no script step could catch it (its media thread died): the bridge's failure.
    const stop = media.onFailure((error) => {
      this.log.error({ err: errorFields(error) }, 'the call media failed');
      this.finish({ reason: 'bridge-error', by: 'bridge' });
    });
    void this.done.finally(stop);
  }

  /** How the call ended, once it is ending. */
  get ending(): Ending | undefined {
    return this.#ending;
  }

  /** The worker's metrics, for what only one kind reports (setup latency). */
  get metrics(): WorkerMetrics | undefined {
    return this.#d.metrics;
  }

  /**
   * Runs the kind's set-up. If it throws, the call ends from the bridge with `failure(error)`.
   * The release waits for it, so media opened late is still closed. Never rejects.
   */
  setUp(steps: () => Promise<void>, failure: (error: unknown) => EndReason, what = 'call failed'): Promise<void> {
    this.#setUp = steps().catch((error: unknown) => {
      this.log.error({ err: errorFields(error) }, what);
      this.finish({ reason: failure(error), by: 'bridge' });
    });
    return this.#setUp;
  }

  /** Handles an event after the ones before it; a failure ends the call from the bridge (`bridge-error`). */
  queue(what: string, step: () => Promise<void> | void): void {
    this.#events = this.#events.then(step).catch((error: unknown) => {
      this.log.error({ err: errorFields(error), event: what }, `handling ${what} failed`);
      this.finish({ reason: 'bridge-error', by: 'bridge' });
    });
  }

  /** Both sides are connected from `at` on: talk time and handle time count from here. */
  markAnswered(at: number): void {
    this.#answeredAt = at;
  }

  /** The call reached `answered`: counts it. */
  countAnswered(): void {
    this.#d.metrics?.emit({ CallsAnswered: 1 });
  }

  /** Starts ending the call; the first cause wins, later ones are ignored. */
  finish(ending: Ending): void {
    if (this.#ending) return;
    this.#ending = ending;
    this.#fanOut(ending)
      .catch((error: unknown) => this.log.error({ err: errorFields(error) }, 'ending the call failed'))
      .finally(() => this.#resolveEnded());
  }

  /** Ends the call from the bridge (worker shutdown: `bridge-shutdown`) and waits until it is released. */
  async end(reason: EndReason = 'bridge-shutdown'): Promise<void> {
    this.finish({ reason, by: 'bridge' });
    await this.done;
  }

  /** Tells every side that did not end the call, and ends its records, all at once. */
  async #fanOut(ending: Ending): Promise<void> {
    const tasks: Array<Promise<unknown> | undefined> = [];
    // The SIP side at once (BYE, CANCEL or a final response), unless it was the SIP side that ended.
    if (ending.by !== 'sip') tasks.push(this.#end.hangUpSip(ending));
    // Meta, unless it was Meta that ended (a user hang-up needs no terminate, meta-calling-api.md §3.2).
    if (ending.by !== 'whatsapp')
      tasks.push(
        this.#end
          .endAtMeta(ending)
          ?.catch((error: unknown) => this.log.warn({ err: errorFields(error) }, 'telling Meta the call ended failed')),
      );
    const patch = this.#endPatch(ending);
    const deps = {
      calls: this.#d.calls,
      now: this.#d.now,
      finishedRetentionSeconds: this.#d.config.finishedRetentionSeconds,
    };
    this.#end.recordIds().forEach((id, i) => {
      tasks.push(
        endCall(id, ending.reason, deps, patch).then((won) => {
          // Counted once: only the process whose conditional write ended the call reports it
          // (the webhook when Meta ended it), and only for the call's own record.
          if (won && i === 0) this.#d.metrics?.emit({ CallsEnded: 1 }, { EndReason: ending.reason });
        }),
      );
    });
    const results = await Promise.allSettled(tasks);
    for (const r of results)
      if (r.status === 'rejected') this.log.warn({ err: errorFields(r.reason) }, 'an end-of-call step failed');
    this.log.info({ reason: ending.reason, by: ending.by }, 'call ended');
  }

  #endPatch(ending: Ending): CallPatch {
    const sipCallId = this.#end.sipCallId();
    return {
      endedBy: ending.by,
      ...(ending.sip === undefined || sipCallId === undefined
        ? {}
        : {
            sip: {
              callId: sipCallId,
              status: ending.sip.status,
              ...(ending.sip.reason ? { reason: ending.sip.reason } : {}),
            },
          }),
    };
  }

  /** Once set-up and queued events have settled: read statistics, close the media, record and report. */
  async #release(): Promise<void> {
    await this.#setUp;
    await this.#events;
    await this.#end.settled?.().catch(() => undefined);
    const ended = this.#d.now();
    let media: CallMediaStats | undefined;
    try {
      media = await this.media.stats();
    } catch (error) {
      this.log.warn({ err: errorFields(error) }, 'collecting media statistics failed');
    }
    await this.media.close();
    const metrics = this.#d.metrics;
    if (media) {
      metrics?.emit(
        {
          MediaPacketLoss: lossPercent(media.whatsapp.packetsLost, media.whatsapp.packetsReceived),
          MediaJitter: media.whatsapp.jitterMs,
        },
        { Leg: 'whatsapp' },
      );
      metrics?.emit(
        {
          MediaPacketLoss: lossPercent(media.sipToWhatsapp.lost, media.sipToWhatsapp.packets),
          MediaJitter: media.sipToWhatsapp.jitterMs,
        },
        { Leg: 'sip' },
      );
    }
    const answeredAt = this.#answeredAt;
    if (answeredAt) metrics?.emit({ HandleTime: (ended - answeredAt) / 1000 });
    const setUp = this.#end.timings();
    const timings = answeredAt ? { ...setUp, talkMs: ended - answeredAt } : setUp;
    // The SIP status goes on the record even when another process (the webhook) ended it first.
    const { sip } = this.#endPatch(this.#ending!);
    const patch: CallPatch = { ...(media ? { media } : {}), ...(timings ? { timings } : {}), ...(sip ? { sip } : {}) };
    const id = this.#end.recordIds()[0];
    if (id !== undefined && Object.keys(patch).length > 0) {
      await this.#d.calls
        .patchIf(id, {}, patch)
        .catch((error: unknown) => this.log.warn({ err: errorFields(error) }, 'recording call statistics failed'));
    }
    this.log.info({ heldMs: ended - this.#startedAt }, 'call resources released');
  }
}

function lossPercent(lost: number, received: number): number {
  return lost + received === 0 ? 0 : (100 * lost) / (lost + received);
}

/** An error as log fields: name, message and, for Meta's and SIP's errors, their status and code. */
export function errorFields(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { message: String(error) };
  const e = error as Error & { status?: number; metaCode?: number };
  return { name: e.name, message: e.message, status: e.status, metaCode: e.metaCode };
}
