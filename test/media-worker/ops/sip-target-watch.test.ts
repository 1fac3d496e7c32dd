/**
 * The worker's reachability watch of its SIP targets (issue 15 item 4): every 30 s, one target
 * after the other, it sends an OPTIONS with a 5 s timeout and keeps the last outcome per target
 * for the heartbeat. Driven on a ManualClock against a scripted probe.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '#core/clock.ts';
import { until } from '#test/helpers/async.ts';
import { SipTargetWatch } from '#worker/ops/sip-target-watch.ts';
import { SipProbeError, type SipProbeResult } from '#worker/sip/sip-port.ts';

/** A probe whose every call waits for the test to settle it. */
function scriptedProbe() {
  const calls: { uri: string; timeoutMs: number; answer(r: SipProbeResult): void; fail(e: Error): void }[] = [];
  const probe = (uri: string, timeoutMs: number) =>
    new Promise<SipProbeResult>((resolve, reject) => {
      calls.push({ uri, timeoutMs, answer: resolve, fail: reject });
    });
  return { calls, probe };
}

describe('the SIP target watch', () => {
  it('probes each target in turn with a 5 s timeout, then again 30 s later, keeping the last outcome of each', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const { calls, probe } = scriptedProbe();
    const watch = new SipTargetWatch({
      port: { probe },
      targets: ['sip:agent@10.0.0.5:5060', 'sip:backup@10.0.0.6:5060;transport=tcp'],
      clock,
    });
    expect(watch.results()).toEqual([]);
    watch.start();

    await until(() => calls.length === 1);
    expect(calls[0]).toMatchObject({ uri: 'sip:agent@10.0.0.5:5060', timeoutMs: 5000 });
    clock.advance(12);
    calls[0]?.answer({ status: 200, reason: 'OK', rttMs: 12 });
    // Sequential: the second target is probed only once the first has answered.
    await until(() => calls.length === 2);
    calls[1]?.fail(new SipProbeError('timeout', 'sip:backup@10.0.0.6:5060;transport=tcp', 'no final response'));
    await until(() => watch.results().length === 2);
    expect(watch.results()).toEqual([
      { uri: 'sip:agent@10.0.0.5:5060', status: 200, rttMs: 12, checkedAt: 1_700_000_000_012 },
      { uri: 'sip:backup@10.0.0.6:5060;transport=tcp', error: 'timeout', checkedAt: 1_700_000_000_012 },
    ]);

    clock.advance(29_999);
    expect(calls).toHaveLength(2);
    clock.advance(1);
    await until(() => calls.length === 3);
    calls[2]?.answer({ status: 404, reason: 'Not Found', rttMs: 3 });
    await until(() => watch.results()[0]?.status === 404);
    expect(watch.results()[0]).toEqual({
      uri: 'sip:agent@10.0.0.5:5060',
      status: 404,
      rttMs: 3,
      checkedAt: 1_700_000_030_012,
    });
    watch.stop();
  });

  it('reports a target without the password its URI may carry', async () => {
    const clock = new ManualClock(0);
    const { calls, probe } = scriptedProbe();
    const watch = new SipTargetWatch({ port: { probe }, targets: ['sip:pbxuser:s3cret@pbx.example.com'], clock });
    watch.start();
    await until(() => calls.length === 1);
    expect(calls[0]?.uri).toBe('sip:pbxuser:s3cret@pbx.example.com');
    calls[0]?.fail(new Error('socket closed'));
    await until(() => watch.results().length === 1);
    expect(watch.results()).toEqual([{ uri: 'sip:pbxuser@pbx.example.com', error: 'socket closed', checkedAt: 0 }]);
    expect(JSON.stringify(watch.results())).not.toContain('s3cret');
    watch.stop();
  });
});
