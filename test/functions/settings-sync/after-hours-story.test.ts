/**
 * Story: with BUSINESS_HOURS pushed to Meta's call_hours (the local stack syncs at start, as `npm start` and the
 * deploy trigger do), an after-hours caller gets Meta's own "chat / request callback" screen: Meta never places
 * the call, so no connect webhook reaches the bridge, no call record and no job exist (review D7).
 */
import { describe, expect, it } from 'vitest';
import { SimCallRefusedError } from '#simulator/graph/call-engine.ts';
import { realClock, type SimClock } from '#simulator/graph/clock.ts';
import { sleep } from '../../helpers/async.ts';
import { startTestStack } from '../../helpers/test-stack.ts';

/** Wednesday 1 January 2025, 12:00 UTC at start, then real time (shared by bridge and simulator). */
function wednesdayNoon(): SimClock {
  const offset = Date.UTC(2025, 0, 1, 12) - Date.now();
  return { ...realClock, now: () => Date.now() + offset };
}
const OPEN_ON_SATURDAYS = JSON.stringify({
  timeZone: 'UTC',
  weekly: [{ day: 'SATURDAY', open: '0000', close: '2359' }],
});

describe('after-hours callers with call_hours pushed to Meta', () => {
  it('Meta screens the caller: the call is refused in the WhatsApp client and the bridge hears nothing', async () => {
    const clock = wednesdayNoon();
    const stack = await startTestStack(
      { BUSINESS_HOURS: OPEN_ON_SATURDAYS },
      { now: clock.now, simulator: { clock }, syncCallSettings: true },
    );
    try {
      const sim = stack.simulator!;
      expect(sim.settings.calling.call_hours).toMatchObject({ status: 'ENABLED', timezone_id: 'UTC' });
      await expect(sim.placeUserCall({ user: { waId: '4915112345678' } })).rejects.toBeInstanceOf(SimCallRefusedError);
      await sleep(200);
      expect(sim.emitter.deliveries.flatMap((d) => d.changes.map((c) => c.field))).toEqual([]);
      expect(await stack.callRecords()).toEqual([]);
      expect(await stack.jobCount()).toBe(0);
    } finally {
      await stack.stop();
    }
  });
});
