/**
 * Retire instead of stall (issue 15 item 5). A worker with calls holds ECS task scale-in
 * protection, so ECS never stops it; a worker that keeps taking jobs keeps its calls, so a
 * deployment or a scale-in waits for hours. A worker therefore retires — stops taking jobs and
 * PBX calls, lets its calls finish, and its protection drops with the last one, so ECS can stop it —
 * when:
 * - **superseded**: its task definition is not the service's PRIMARY deployment's (a new
 *   deployment, or a rollback away from it);
 * - **surplus**: more live workers of the primary deployment run than the service's desired count
 *   (after a scale-in); the least loaded retire first (ties by worker id), so every worker,
 *   evaluating the same table, picks the same ones.
 * An unreadable service or table retires nobody: the rule fails safe.
 *
 * @module
 */
import type { Logger } from 'pino';
import { type Clock, type ClockTimer, realClock } from '#core/clock.ts';

/** Why a worker retires. */
export type RetirementReason = 'superseded' | 'surplus';

/** The ECS service as the worker sees it. */
export interface ServiceView {
  /** The worker's own task definition, `family:revision`. */
  readonly ownDeployment: string;
  /** The PRIMARY deployment's task definition, `family:revision`. */
  readonly primaryDeployment: string;
  /** The service's desired task count. */
  readonly desiredCount: number;
}

/** A worker as the registry lists it (the fields the rule reads). */
export interface RegisteredWorker {
  readonly workerId: string;
  readonly deployment?: string;
  readonly activeCalls: number;
  readonly draining: boolean;
  readonly heartbeatAt: number;
}

/**
 * Whether the worker `workerId` should retire now.
 *
 * @param freshMs - a worker whose last heartbeat is older than this is not counted as live
 */
export function retirementReason(input: {
  readonly workerId: string;
  readonly service: ServiceView;
  readonly workers: readonly RegisteredWorker[];
  readonly now: number;
  readonly freshMs: number;
}): RetirementReason | undefined {
  const { service, workerId } = input;
  if (service.ownDeployment !== service.primaryDeployment) return 'superseded';
  const live = input.workers.filter(
    (w) =>
      w.deployment === service.primaryDeployment &&
      !w.draining &&
      (w.workerId === workerId || input.now - w.heartbeatAt <= input.freshMs),
  );
  const surplus = live.length - Math.max(0, service.desiredCount);
  if (surplus <= 0) return undefined;
  const order = [...live].sort((a, b) => a.activeCalls - b.activeCalls || a.workerId.localeCompare(b.workerId));
  return order.slice(0, surplus).some((w) => w.workerId === workerId) ? 'surplus' : undefined;
}

/** Collaborators of a {@link RetirementWatch}. */
export interface RetirementWatchOptions {
  readonly workerId: string;
  readonly service: () => Promise<ServiceView>;
  readonly workers: () => Promise<readonly RegisteredWorker[]>;
  /** Called once, when the worker should retire. */
  readonly retire: (reason: RetirementReason, detail: Record<string, unknown>) => void;
  readonly intervalMs: number;
  /** Heartbeats older than this do not count (the registry's TTL is longer). */
  readonly freshMs: number;
  readonly logger: Logger;
  readonly clock?: Clock;
}

/** Checks the rule every `intervalMs` until the worker retires or the watch is closed. */
export class RetirementWatch {
  readonly #o: RetirementWatchOptions;
  readonly #clock: Clock;
  #timer: ClockTimer | undefined;
  #closed = false;
  #running: Promise<void> = Promise.resolve();

  constructor(options: RetirementWatchOptions) {
    this.#o = options;
    this.#clock = options.clock ?? realClock;
  }

  start(): void {
    this.#schedule();
  }

  /** One check now (also what the timer runs). Resolves true when the worker retired. */
  async check(): Promise<boolean> {
    if (this.#closed) return false;
    let service: ServiceView;
    let workers: readonly RegisteredWorker[];
    try {
      [service, workers] = await Promise.all([this.#o.service(), this.#o.workers()]);
    } catch (error) {
      this.#o.logger.warn({ err: error }, 'retirement check failed; the worker keeps serving');
      return false;
    }
    if (this.#closed) return false;
    const reason = retirementReason({
      workerId: this.#o.workerId,
      service,
      workers,
      now: this.#clock.now(),
      freshMs: this.#o.freshMs,
    });
    if (!reason) return false;
    // Not awaited: close() waits for the check in flight, which is this one.
    void this.close();
    this.#o.retire(reason, {
      ownDeployment: service.ownDeployment,
      primaryDeployment: service.primaryDeployment,
      desiredCount: service.desiredCount,
    });
    return true;
  }

  /** Stops checking; waits for a check in flight. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#running = this.check().then(
        () => this.#schedule(),
        () => this.#schedule(),
      );
    }, this.#o.intervalMs);
  }
}
