/**
 * Contract stories of {@link SipPort.probe}: one out-of-dialog OPTIONS from the worker to a PBX
 * (RFC 3261 §11), the reachability check `npm run smoke` relies on. Run on each adapter against an
 * independent raw `sip`-package far end on 127.0.0.2; the probe's timeout and round-trip time run
 * on a ManualClock moved by hand.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { ManualClock } from '#core/clock.ts';
import { until } from '#test/helpers/async.ts';
import { SipProbeError } from '#worker/sip/sip-port.ts';
import { type AdapterName, type StartedAdapter, startAdapter } from '../helpers/adapters.ts';
import { FarEnd } from '../helpers/far-end.ts';

/** Register the OPTIONS probe stories for adapter `name`. */
export function probeContract(name: AdapterName): void {
  let adapter: StartedAdapter;
  let fe: FarEnd;
  const clock = new ManualClock(1_000_000);

  beforeAll(async () => {
    adapter = await startAdapter(name, { clock });
    fe = await FarEnd.start('127.0.0.2');
  });

  afterEach(() => {
    fe.handler = undefined;
  });

  afterAll(async () => {
    await adapter?.close();
    fe?.close();
  });

  it(`${name}: a PBX answering 200 to OPTIONS is reachable, with the round trip on the port's clock`, async () => {
    fe.handler = (rq, _r, f) => {
      if (rq.method !== 'OPTIONS') return undefined;
      clock.advance(40);
      f.reply(rq, 200, 'OK');
      return true;
    };
    const result = await adapter.port.probe(fe.uri('pbx'), 5000);
    expect(result).toEqual({ status: 200, reason: 'OK', rttMs: 40 });
    const { rq } = await fe.nextMethod('OPTIONS');
    expect(String(rq.headers['max-forwards'])).toBe('70');
    expect(rq.headers.authorization).toBeUndefined();
    expect(rq.headers.to?.params.tag).toBeUndefined();
  });

  it(`${name}: a PBX answering 404 is reachable too — any final response is an answer`, async () => {
    fe.handler = (rq, _r, f) => {
      if (rq.method !== 'OPTIONS') return undefined;
      f.reply(rq, 404, 'Not Found');
      return true;
    };
    await expect(adapter.port.probe(fe.uri('nobody'), 5000)).resolves.toMatchObject({
      status: 404,
      reason: 'Not Found',
    });
  });

  it(`${name}: a PBX that never answers fails the probe with a timeout error once the timeout passes`, async () => {
    fe.handler = (rq) => rq.method === 'OPTIONS' || undefined;
    const before = fe.received.length;
    const outcome = adapter.port.probe(fe.uri('silent'), 5000).then(
      () => undefined,
      (err: unknown) => err,
    );
    await until(() => fe.received.length > before);
    clock.advance(4999);
    clock.advance(1);
    const err = await outcome;
    expect(err).toBeInstanceOf(SipProbeError);
    expect(err).toMatchObject({ name: 'SipProbeError', kind: 'timeout', target: fe.uri('silent') });
  });
}
