/**
 * The settings sync pushes BUSINESS_HOURS and VOICEMAIL to Meta (played by the simulator, which validates
 * `call_hours` and `voicemail` as Meta does, §3.6) — and only when they differ.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CallHoursMappingError } from '#core/checks/call-hours.ts';
import { runSettingsSync } from '#functions/settings-sync/handler.ts';
import { loadControlPlaneConfig } from '#functions/shared/config.ts';
import { SimCallRefusedError } from '#simulator/graph/call-engine.ts';
import { ManualClock } from '#simulator/graph/clock.ts';
import { sleep } from '../../helpers/async.ts';
import { captureLogger } from '../../helpers/capture-logger.ts';
import { CONTROL_PLANE_ENV } from '../../helpers/control-plane-env.ts';
import { ACCESS_TOKEN, type Env, startEnv } from '../../meta-simulator/graph/harness.ts';

let env: Env | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await env?.close();
  env = undefined;
});

const NOW = Date.UTC(2026, 10, 18, 22); // Wednesday 2026-11-18, 23:00 in Berlin
const HOURS = {
  timeZone: 'Europe/Berlin',
  weekly: [
    { day: 'MONDAY', open: '0900', close: '1200' },
    { day: 'MONDAY', open: '1300', close: '1730' },
    { day: 'WEDNESDAY', open: '0900', close: '1700' },
  ],
  holidays: [{ date: '2026-11-30', start: '1500' }, { date: '2026-12-28' }],
};
const VOICEMAIL = { triggers: ['TIMEOUT', 'REJECT'], announcementMediaId: '1357', timeoutSeconds: 20 };

function configFor(sim: Env['sim'], extra: Record<string, string> = {}) {
  return loadControlPlaneConfig({
    ...CONTROL_PLANE_ENV,
    META_PHONE_NUMBER_ID: sim.business.phoneNumberId,
    META_GRAPH_URL: sim.graphUrl,
    META_ACCESS_TOKEN: ACCESS_TOKEN,
    BUSINESS_HOURS: JSON.stringify(HOURS),
    VOICEMAIL: JSON.stringify(VOICEMAIL),
    ...extra,
  });
}

/** Counts the Graph settings writes the sync sends. */
function countSettingsPosts(): () => number {
  const spy = vi.spyOn(globalThis, 'fetch');
  return () =>
    spy.mock.calls.filter(([url, init]) => String(url).endsWith('/settings') && init?.method === 'POST').length;
}

describe('settings sync against the simulator', () => {
  it('writes call_hours and voicemail as configured; the simulator then holds exactly them', async () => {
    env = await startEnv({ clock: new ManualClock(NOW) });
    const posts = countSettingsPosts();
    const logger = captureLogger();
    const result = await runSettingsSync(configFor(env.sim), { logger, now: () => NOW });
    expect(Object.keys(result.written ?? {})).toEqual(['call_hours', 'voicemail']);
    expect(posts()).toBe(1);
    const calling = (await env.graph('GET', `/${env.sim.business.phoneNumberId}/settings`)).body.calling;
    expect(calling.call_hours).toEqual({
      status: 'ENABLED',
      timezone_id: 'Europe/Berlin',
      weekly_operating_hours: [
        { day_of_week: 'MONDAY', open_time: '0900', close_time: '1200' },
        { day_of_week: 'MONDAY', open_time: '1300', close_time: '1730' },
        { day_of_week: 'WEDNESDAY', open_time: '0900', close_time: '1700' },
      ],
      holiday_schedule: [
        { date: '2026-11-30', start_time: '0900', end_time: '1200' },
        { date: '2026-11-30', start_time: '1300', end_time: '1500' },
        { date: '2026-12-28', start_time: '0000', end_time: '0001' },
      ],
    });
    expect(calling.voicemail).toEqual({
      status: 'ENABLED',
      triggers: ['TIMEOUT', 'REJECT'],
      audio: { default: { announcement_media_id: '1357', timeout_seconds: 20 } },
    });
  });

  it('a second sync finds Meta in step and sends no POST', async () => {
    env = await startEnv({ clock: new ManualClock(NOW) });
    const logger = captureLogger();
    await runSettingsSync(configFor(env.sim), { logger, now: () => NOW });
    const posts = countSettingsPosts();
    const again = await runSettingsSync(configFor(env.sim), { logger, now: () => NOW });
    expect(again.written).toBeUndefined();
    expect(posts()).toBe(0);
  });

  it('more than two slots on a day fails naming the day, and nothing is written', async () => {
    env = await startEnv({ clock: new ManualClock(NOW) });
    const posts = countSettingsPosts();
    const three = {
      timeZone: 'UTC',
      weekly: ['0800', '1000', '1200'].map((open) => ({ day: 'THURSDAY', open, close: `${open.slice(0, 2)}30` })),
    };
    const logger = captureLogger();
    const run = runSettingsSync(configFor(env.sim, { BUSINESS_HOURS: JSON.stringify(three) }), {
      logger,
      now: () => NOW,
    });
    await expect(run).rejects.toBeInstanceOf(CallHoursMappingError);
    await expect(run).rejects.toThrow(/THURSDAY/);
    expect(posts()).toBe(0);
  });

  it('a refusal by Meta is a SettingsSyncError carrying Meta’s code', async () => {
    env = await startEnv({ clock: new ManualClock(NOW) });
    const logger = captureLogger();
    const bad = loadControlPlaneConfig({
      ...CONTROL_PLANE_ENV,
      META_GRAPH_URL: env.sim.graphUrl,
      META_ACCESS_TOKEN: 'wrong',
    });
    await expect(runSettingsSync(bad, { logger, now: () => NOW })).rejects.toMatchObject({
      name: 'SettingsSyncError',
      step: 'read',
      metaCode: 190,
    });
  });
});

describe('with the hours pushed, Meta screens after-hours callers', () => {
  it('an after-hours caller gets Meta’s chat / callback screen: the call is never placed and no connect reaches the bridge', async () => {
    const clock = new ManualClock(NOW); // Wednesday 23:00 in Berlin: closed
    const received: string[] = [];
    env = await startEnv({ clock });
    const logger = captureLogger();
    await runSettingsSync(configFor(env.sim), { logger, now: () => NOW });
    await expect(env.sim.placeUserCall({ user: { waId: '4915112345678' } })).rejects.toBeInstanceOf(
      SimCallRefusedError,
    );
    await sleep(200);
    for (const c of env.rx.changes) received.push(c.field);
    expect(received).toEqual([]);
    clock.set(Date.UTC(2026, 10, 23, 9)); // Monday 10:00 in Berlin: open, the call goes through
    const call = await env.sim.placeUserCall({ user: { waId: '4915112345678' } });
    await env.rx.waitFor((c) => c.kind === 'call' && c.item.id === call.id);
  });
});
