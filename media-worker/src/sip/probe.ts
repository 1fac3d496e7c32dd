/**
 * The timing and outcome of an OPTIONS probe (RFC 3261 §11), shared by both {@link SipPort}
 * adapters: each sends the request its own way and reports the final response here.
 */
import type { Clock } from '#core/clock.ts';
import { SipProbeError, type SipProbeResult } from './sip-port.ts';

/** How an adapter reports the outcome of the OPTIONS it sent. */
export interface ProbeOutcome {
  /**
   * A final response. `fromFarEnd` is false for one our own SIP stack made up (no To tag: every
   * UAS response carries one, RFC 3261 §8.2.6.2), i.e. the request never got through.
   */
  final(status: number, reason: string, fromFarEnd: boolean): void;
  /** The request could not be sent. */
  failed(cause: unknown): void;
}

/**
 * Run one probe of `target`: `send` sends the OPTIONS and reports to the outcome; the result
 * resolves with the first final response from the far end, or rejects with {@link SipProbeError}
 * after `timeoutMs` on `clock` or on a transport failure.
 */
export function runProbe(
  target: string,
  timeoutMs: number,
  clock: Clock,
  send: (outcome: ProbeOutcome) => void,
): Promise<SipProbeResult> {
  return new Promise((resolve, reject) => {
    const started = clock.now();
    let settled = false;
    const settle = (then: () => void) => {
      if (settled) return;
      settled = true;
      clock.clearTimeout(timer);
      then();
    };
    const timer = clock.setTimeout(
      () =>
        settle(() =>
          reject(new SipProbeError('timeout', target, `no final response to OPTIONS ${target} within ${timeoutMs} ms`)),
        ),
      timeoutMs,
    );
    try {
      send({
        final: (status, reason, fromFarEnd) =>
          settle(() => {
            if (fromFarEnd) resolve({ status, reason, rttMs: clock.now() - started });
            else reject(new SipProbeError('transport', target, `OPTIONS ${target} not delivered: ${status} ${reason}`));
          }),
        failed: (cause) =>
          settle(() =>
            reject(
              new SipProbeError('transport', target, `OPTIONS ${target} could not be sent: ${String(cause)}`, {
                cause,
              }),
            ),
          ),
      });
    } catch (cause) {
      settle(() =>
        reject(
          new SipProbeError('transport', target, `OPTIONS ${target} could not be sent: ${String(cause)}`, { cause }),
        ),
      );
    }
  });
}
