/**
 * The media worker's control loop: takes call jobs while it has room, owns each call by a
 * conditional `queued → claimed` write, delivers in-call events from its own control queue to the
 * call, heartbeats, and drains on shutdown.
 *
 * Ownership is the only guard against double bridging: SQS delivers at least once and several
 * workers poll the same queue, so a job is acted on only by the worker whose claim write wins.
 */
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { Logger } from 'pino';
import type { DynamoWorkerRegistry, SipTargetHealth } from '#adapters/aws/dynamo-workers.ts';
import { createControlQueue, deleteControlQueue, SqsQueueReader } from '#adapters/aws/sqs-queues.ts';
import type { CallJob, CallStore, WorkerSignal } from '#core/calls/call-record.ts';

/** A call the worker is bridging. */
export interface ActiveCall {
  /** Settles when the call is over and its resources are released. Never rejects. */
  readonly done: Promise<void>;
  /** Delivers an in-call event (terminate, business-call progress). */
  signal(signal: WorkerSignal): void;
  /** Ends the call from the bridge side: the worker is stopping (no drain, or the drain ran out). */
  end(reason: 'bridge-shutdown'): Promise<void>;
}

/** Starts bridging a claimed call. */
export interface CallRunner {
  start(job: CallJob, context: { workerId: string; controlQueueUrl: string; claimedAt: number }): ActiveCall;
}

/** Collaborators of the worker. */
export interface MediaWorkerDeps {
  readonly workerId: string;
  readonly maxCalls: number;
  readonly jobsQueueUrl: string;
  readonly controlQueueName: string;
  readonly sqs: SQSClient;
  readonly calls: CallStore;
  readonly registry: DynamoWorkerRegistry;
  readonly runner: CallRunner;
  readonly logger: Logger;
  readonly now?: () => number;
  /** Long-poll wait of each receive, seconds. @default 1 */
  readonly pollSeconds?: number;
  /** Messages asked for per receive (1–10). @default 10 */
  readonly receiveBatch?: number;
  /** Heartbeat period. @default 5000 */
  readonly heartbeatMs?: number;
  /** Ends calls of dead workers (see reaper.ts); run every `reapIntervalMs`. */
  readonly reap?: () => Promise<unknown>;
  /** @default 15000 */
  readonly reapIntervalMs?: number;
  /** Told the number of active calls whenever it changes (task protection). */
  readonly onLoadChange?: (activeCalls: number) => void;
  /**
   * Calls the media threads can still take (admission per core, `MEDIA_THREADS`); the worker
   * takes no more than this besides its own `maxCalls`. Unset: media on the main thread.
   */
  readonly mediaRoom?: () => number;
  /** Told the load at every heartbeat (metrics). */
  readonly onHeartbeat?: (activeCalls: number, maxCalls: number) => void;
  /** Told after every heartbeat the registry accepted (the container health check's file). */
  readonly onHeartbeatWritten?: () => Promise<void>;
  /** The task definition this worker runs (`family:revision`), in its heartbeat for the retirement rule. */
  readonly deployment?: string;
  /** The last OPTIONS check of each SIP target (`ops/sip-target-watch.ts`), put in every heartbeat. */
  readonly sipTargets?: () => readonly SipTargetHealth[];
}

/** The worker. */
export class MediaWorker {
  readonly #d: MediaWorkerDeps;
  readonly #active = new Map<string, ActiveCall>();
  /** Other ids of active calls (a business call's Meta call id beside its request id), for signal routing only. */
  readonly #aliases = new Map<string, ActiveCall>();
  /** Signals that arrived before their call was registered (claim/registration race). */
  readonly #early = new Map<string, { signal: WorkerSignal; at: number }>();
  readonly #abort = new AbortController();
  readonly #now: () => number;
  #controlQueueUrl: string | undefined;
  #draining = false;
  #loops: Array<Promise<void>> = [];
  #heartbeat: NodeJS.Timeout | undefined;
  #reaper: NodeJS.Timeout | undefined;
  #startedAt = 0;
  #stopped: Promise<void> | undefined;
  #retired: string | undefined;

  constructor(deps: MediaWorkerDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
  }

  /** Calls being bridged now. */
  get activeCalls(): number {
    return this.#active.size;
  }

  get controlQueueUrl(): string | undefined {
    return this.#controlQueueUrl;
  }

  /** True when the worker takes no new calls (full or draining). */
  get full(): boolean {
    return this.#draining || this.#room() <= 0;
  }

  /** Calls this worker can take now: its own limit, and what its media threads can take. */
  #room(): number {
    return Math.min(this.#d.maxCalls - this.#active.size, this.#d.mediaRoom?.() ?? Number.POSITIVE_INFINITY);
  }

  /**
   * Registers a call that did not come from the job queue (a PBX-started call), so in-call events
   * reach it, it counts against capacity, and drain waits for it.
   */
  adopt(callId: string, call: ActiveCall): void {
    this.#active.set(callId, call);
    this.#d.onLoadChange?.(this.#active.size);
    const early = this.#early.get(callId);
    if (early) {
      this.#early.delete(callId);
      call.signal(early.signal);
    }
    void call.done.finally(() => {
      this.#active.delete(callId);
      this.#d.onLoadChange?.(this.#active.size);
      this.#beat().catch(() => undefined);
    });
  }

  /** Routes in-call events for `callId` to a call this worker already counts under another id. */
  alias(callId: string, call: ActiveCall): void {
    this.#aliases.set(callId, call);
    const early = this.#early.get(callId);
    if (early) {
      this.#early.delete(callId);
      call.signal(early.signal);
    }
    void call.done.finally(() => this.#aliases.delete(callId));
  }

  /** Creates the control queue, registers, and starts polling. */
  async start(): Promise<void> {
    this.#startedAt = this.#now();
    this.#controlQueueUrl = await createControlQueue(this.#d.sqs, this.#d.controlQueueName);
    await this.#beat();
    this.#heartbeat = setInterval(() => {
      this.#beat().catch((error: unknown) => this.#d.logger.warn({ err: error }, 'heartbeat failed'));
    }, this.#d.heartbeatMs ?? 5000);
    this.#heartbeat.unref();
    const reap = this.#d.reap;
    if (reap) {
      this.#reaper = setInterval(() => {
        reap().catch((error: unknown) => this.#d.logger.warn({ err: error }, 'reaping dead workers failed'));
      }, this.#d.reapIntervalMs ?? 15_000);
      this.#reaper.unref();
    }
    this.#loops = [this.#jobLoop(), this.#controlLoop()];
    this.#d.logger.info(
      // The logger is already a child with `workerId` (start.ts); repeating it wrote the key twice.
      { controlQueueUrl: this.#controlQueueUrl, maxCalls: this.#d.maxCalls },
      'media worker started',
    );
  }

  /** Why the worker retired, if it did (see {@link MediaWorker.retire}). */
  get retired(): string | undefined {
    return this.#retired;
  }

  /**
   * Retire (ops/retirement.ts): take no more jobs or PBX calls, keep serving the calls in progress
   * and their in-call signals. With the last call the task's scale-in protection drops, so ECS can
   * stop the task (its SIGTERM then finds nothing to drain). Idempotent.
   */
  retire(reason: string): void {
    if (this.#retired || this.#draining) return;
    this.#retired = reason;
    this.#draining = true;
    this.#d.logger.info({ reason, activeCalls: this.#active.size }, 'media worker retiring: no new calls');
    this.#beat().catch((error: unknown) => this.#d.logger.warn({ err: error }, 'heartbeat failed'));
  }

  /**
   * Stops taking jobs. With `drain`, waits (up to `timeoutMs`) for active calls to end; calls still
   * up after that, or all of them without `drain`, are ended by the bridge.
   */
  stop(options: { drain?: boolean; timeoutMs?: number } = {}): Promise<void> {
    this.#stopped ??= this.#stop(options.drain ?? true, options.timeoutMs ?? 30_000);
    return this.#stopped;
  }

  async #stop(drain: boolean, timeoutMs: number): Promise<void> {
    this.#draining = true;
    await this.#beat().catch(() => undefined);
    this.#d.logger.info({ activeCalls: this.#active.size, drain }, 'media worker stopping');
    if (drain && this.#active.size > 0) {
      await Promise.race([Promise.all([...this.#active.values()].map((c) => c.done)), sleep(timeoutMs)]);
    }
    const remaining = [...this.#active.values()];
    // The call did not fail: the worker was stopped under it (Ctrl-C, or SIGTERM past the drain).
    await Promise.all(remaining.map((c) => c.end('bridge-shutdown')));
    // Let each call release its sockets and write its statistics before the clients close.
    await Promise.race([Promise.all(remaining.map((c) => c.done)), sleep(5000)]);
    this.#abort.abort();
    await Promise.allSettled(this.#loops);
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    if (this.#reaper) clearInterval(this.#reaper);
    await this.#d.registry.remove(this.#d.workerId).catch(() => undefined);
    if (this.#controlQueueUrl) await deleteControlQueue(this.#d.sqs, this.#controlQueueUrl).catch(() => undefined);
    this.#d.logger.info('media worker stopped');
  }

  async #beat(): Promise<void> {
    if (!this.#controlQueueUrl) return;
    this.#d.onHeartbeat?.(this.#active.size, this.#d.maxCalls);
    await this.#d.registry.heartbeat({
      workerId: this.#d.workerId,
      controlQueueUrl: this.#controlQueueUrl,
      activeCalls: this.#active.size,
      callIds: [...this.#active.keys()],
      maxCalls: this.#d.maxCalls,
      draining: this.#draining,
      ...(this.#d.deployment ? { deployment: this.#d.deployment } : {}),
      ...(this.#d.sipTargets ? { sipTargets: this.#d.sipTargets() } : {}),
      heartbeatAt: this.#now(),
      startedAt: this.#startedAt,
    });
    await this.#d.onHeartbeatWritten?.();
  }

  async #jobLoop(): Promise<void> {
    const jobs = new SqsQueueReader<CallJob>(this.#d.sqs, this.#d.jobsQueueUrl);
    while (!this.#draining) {
      const room = this.#room();
      if (room <= 0) {
        // Full: receive nothing, so other workers take the jobs (admission control).
        await sleep(50);
        continue;
      }
      let batch: Awaited<ReturnType<typeof jobs.receive>>;
      try {
        batch = await jobs.receive(
          Math.min(room, this.#d.receiveBatch ?? 10),
          this.#d.pollSeconds ?? 1,
          this.#abort.signal,
        );
      } catch (error) {
        if (this.#draining) return;
        this.#d.logger.warn({ err: error }, 'receiving call jobs failed; retrying');
        await sleep(500);
        continue;
      }
      for (const message of batch) {
        await this.#take(message).catch((error: unknown) =>
          this.#d.logger.error({ err: error }, 'taking a call job failed'),
        );
      }
    }
  }

  async #take(message: Awaited<ReturnType<SqsQueueReader<CallJob>['receive']>>[number]): Promise<void> {
    const job = message.body;
    // A user call's record is keyed by Meta's call id; an API business call's by its request id.
    const id =
      job?.type === 'bridge-user-call' ? job.callId : job?.type === 'bridge-business-call' ? job.requestId : undefined;
    if (!job || typeof id !== 'string') {
      this.#d.logger.error({ body: message.raw.slice(0, 200) }, 'dropping a malformed call job');
      await message.ack();
      return;
    }
    const log = this.#d.logger.child({ callId: id });
    if (this.full) {
      await message.release();
      return;
    }
    const claimedAt = this.#now();
    const claimed = await this.#d.calls.transition(
      id,
      { type: 'claimed' },
      { owner: { workerId: this.#d.workerId, controlQueueUrl: this.#controlQueueUrl! }, updatedAt: claimedAt },
    );
    await message.ack();
    if (!claimed) {
      log.info('call job not claimed: already owned or ended');
      return;
    }
    await this.#d.calls.appendHistory(id, { at: claimedAt, what: 'claimed', detail: { workerId: this.#d.workerId } });
    const call = this.#d.runner.start(job, {
      workerId: this.#d.workerId,
      controlQueueUrl: this.#controlQueueUrl!,
      claimedAt,
    });
    this.#active.set(id, call);
    this.#d.onLoadChange?.(this.#active.size);
    const early = this.#early.get(id);
    if (early) {
      this.#early.delete(id);
      call.signal(early.signal);
    }
    void call.done.finally(() => {
      this.#active.delete(id);
      this.#d.onLoadChange?.(this.#active.size);
      this.#beat().catch(() => undefined);
    });
    log.info({ activeCalls: this.#active.size }, 'call claimed');
  }

  async #controlLoop(): Promise<void> {
    const control = new SqsQueueReader<WorkerSignal>(this.#d.sqs, this.#controlQueueUrl!);
    while (!this.#abort.signal.aborted) {
      let batch: Awaited<ReturnType<typeof control.receive>>;
      try {
        batch = await control.receive(this.#d.receiveBatch ?? 10, this.#d.pollSeconds ?? 1, this.#abort.signal);
      } catch (error) {
        if (this.#abort.signal.aborted) return;
        this.#d.logger.warn({ err: error }, 'receiving control messages failed; retrying');
        await sleep(200);
        continue;
      }
      for (const message of batch) {
        const signal = message.body;
        if (signal && typeof signal.callId === 'string') {
          const call = this.#active.get(signal.callId) ?? this.#aliases.get(signal.callId);
          if (call) call.signal(signal);
          else this.#early.set(signal.callId, { signal, at: this.#now() });
        }
        await message.ack().catch(() => undefined);
      }
      const stale = this.#now() - 60_000;
      for (const [id, e] of this.#early) if (e.at < stale) this.#early.delete(id);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
