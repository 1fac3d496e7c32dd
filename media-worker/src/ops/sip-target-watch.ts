/**
 * Reachability of the worker's SIP targets (issue 15 item 4): every `intervalMs`, one target after
 * the other, an OPTIONS (RFC 3261 §11) with a bounded wait; the last outcome per target goes into
 * the worker's heartbeat, where the control API's `GET /v1/workers` and `npm run smoke` read it.
 */
import type { Logger } from 'pino';
import type { SipTargetHealth } from '#adapters/aws/dynamo-workers.ts';
import { type Clock, type ClockTimer, wallClock } from '#core/clock.ts';
import type { SipPort } from '../sip/sip-port.ts';
import { SipProbeError } from '../sip/sip-port.ts';

/** Options of {@link SipTargetWatch}. */
export interface SipTargetWatchOptions {
  readonly port: Pick<SipPort, 'probe'>;
  /** Request-URIs of the configured targets, in order. */
  readonly targets: readonly string[];
  /** Time source of the schedule and of `checkedAt` (epoch ms). @default wallClock */
  readonly clock?: Clock;
  /** From the end of one round to the start of the next. @default 30000 */
  readonly intervalMs?: number;
  /** How long each OPTIONS waits for a final response. @default 5000 */
  readonly timeoutMs?: number;
  readonly logger?: Logger;
}

/**
 * A SIP URI without the password of its userinfo (`sip:user:pass@host` → `sip:user@host`), for
 * heartbeats and logs.
 */
export function uriWithoutPassword(uri: string): string {
  return uri.replace(/^(sips?:[^:@;?]*):[^@]*@/i, '$1@');
}

/** Probes the targets in rounds; {@link SipTargetWatch.results} is the last outcome of each. */
export class SipTargetWatch {
  readonly #o: SipTargetWatchOptions;
  readonly #clock: Clock;
  readonly #results = new Map<string, SipTargetHealth>();
  #timer: ClockTimer | undefined;
  #stopped = false;

  constructor(options: SipTargetWatchOptions) {
    this.#o = options;
    this.#clock = options.clock ?? wallClock;
  }

  /** Start the first round now. */
  start(): void {
    this.#stopped = false;
    void this.#round();
  }

  /** No more rounds (one in progress finishes, unreported). */
  stop(): void {
    this.#stopped = true;
    this.#clock.clearTimeout(this.#timer);
  }

  /** The last outcome per target, in the targets' order; targets not yet checked are absent. */
  results(): SipTargetHealth[] {
    return this.#o.targets.flatMap((t) => {
      const r = this.#results.get(t);
      return r ? [r] : [];
    });
  }

  async #round(): Promise<void> {
    for (const target of this.#o.targets) {
      if (this.#stopped) return;
      this.#results.set(target, await this.#check(target));
    }
    if (!this.#stopped) this.#timer = this.#clock.setTimeout(() => void this.#round(), this.#o.intervalMs ?? 30_000);
  }

  async #check(target: string): Promise<SipTargetHealth> {
    const uri = uriWithoutPassword(target);
    try {
      const { status, rttMs } = await this.#o.port.probe(target, this.#o.timeoutMs ?? 5000);
      return { uri, status, rttMs, checkedAt: this.#clock.now() };
    } catch (err) {
      // The message names the target: say it without its password.
      const error =
        err instanceof SipProbeError && err.kind === 'timeout'
          ? 'timeout'
          : String((err as Error).message)
              .split(target)
              .join(uri);
      this.#o.logger?.warn({ target: uri, error }, 'SIP target did not answer OPTIONS');
      return { uri, error, checkedAt: this.#clock.now() };
    }
  }
}
