/**
 * The simulator plays Meta's voicemail (Corrections item 4, SET26), `call_hours` screening (§3.6) and the
 * `account_update` webhook (§2.10) as Meta documents them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SimCallRefusedError } from '#simulator/graph/call-engine.ts';
import { ManualClock } from '#simulator/graph/clock.ts';
import { sleep } from '../../helpers/async.ts';
import { callEvent, type Env, startEnv } from './harness.ts';

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

const settingsPath = () => `/${env?.sim.business.phoneNumberId}/settings`;
const voicemail = (v: unknown) => ({ calling: { voicemail: v } });
const ENABLED_TIMEOUT = {
  status: 'ENABLED',
  triggers: ['TIMEOUT'],
  audio: { default: { announcement_media_id: '1234567890', timeout_seconds: 20 } },
};
const details = async (body: unknown): Promise<string> => {
  const res = await env?.graph('POST', settingsPath(), body);
  expect(res?.status).toBe(400);
  expect(res?.body.error.code).toBe(100);
  return res?.body.error.error_data.details as string;
};

describe('voicemail settings are validated as Meta documents (status, triggers, media id, timeout 0–30)', () => {
  it('refuses a bad trigger, a missing media id, a timeout outside 0–30, an unknown field; stores a good one', async () => {
    env = await startEnv();
    expect(await details(voicemail({ ...ENABLED_TIMEOUT, triggers: ['BUSY'] }))).toBe(
      'voicemail.triggers must be a non-empty array of distinct REJECT and/or TIMEOUT',
    );
    expect(await details(voicemail({ ...ENABLED_TIMEOUT, audio: { default: { timeout_seconds: 20 } } }))).toBe(
      'voicemail.audio.default.announcement_media_id is required',
    );
    expect(
      await details(
        voicemail({ ...ENABLED_TIMEOUT, audio: { default: { announcement_media_id: '1', timeout_seconds: 31 } } }),
      ),
    ).toBe('voicemail.audio.default.timeout_seconds must be an integer between 0 and 30');
    expect(await details(voicemail({ ...ENABLED_TIMEOUT, audio: { default: { announcement_media_id: '1' } } }))).toBe(
      'voicemail.audio.default.timeout_seconds is required with the TIMEOUT trigger',
    );
    expect(await details(voicemail({ status: 'ENABLED', audio: ENABLED_TIMEOUT.audio }))).toBe(
      'voicemail.triggers is required when voicemail is ENABLED',
    );
    expect(await details(voicemail({ ...ENABLED_TIMEOUT, greeting: 'x' }))).toBe(
      'Param voicemail[greeting] is not a valid field',
    );
    expect((await env.graph('POST', settingsPath(), voicemail(ENABLED_TIMEOUT))).status).toBe(200);
    expect((await env.graph('GET', settingsPath())).body.calling.voicemail).toEqual(ENABLED_TIMEOUT);
  });
});

describe('voicemail diverts the caller', () => {
  it('TIMEOUT: a call not accepted within timeout_seconds of ringing ends for the business, then the voicemail arrives as an audio message whose id is the wacid', async () => {
    const clock = new ManualClock();
    env = await startEnv({ clock, timers: { voicemailRecordingMs: 5_000 } });
    await env.graph('POST', settingsPath(), voicemail(ENABLED_TIMEOUT));
    const call = await env.sim.placeUserCall({ user: { waId: '5511955551234' } });
    await env.rx.waitFor(callEvent('connect', call.id));
    clock.advance(19_999);
    await sleep(100);
    expect(call.state).toBe('offered');
    clock.advance(1);
    const term = await env.rx.waitFor(callEvent('terminate', call.id));
    expect(term.item.status).toBe('COMPLETED');
    expect(term.item.start_time).toBeUndefined();
    expect(call.record.endReason).toBe('voicemail');
    clock.advance(5_000);
    const vm = await env.rx.waitFor((c) => c.field === 'messages' && c.item.type === 'audio');
    expect(vm.item.id).toBe(call.id);
    expect(vm.item.from).toBe('5511955551234');
    expect(vm.item.audio).toMatchObject({ mime_type: 'audio/ogg; codecs=opus' });
  });

  it('REJECT: the business rejecting an offered call diverts it to voicemail', async () => {
    env = await startEnv({ timers: { voicemailRecordingMs: 1 } });
    await env.graph(
      'POST',
      settingsPath(),
      voicemail({ status: 'ENABLED', triggers: ['REJECT'], audio: { default: { announcement_media_id: '42' } } }),
    );
    const call = await env.sim.placeUserCall({ user: { waId: '5511955551234' } });
    await env.rx.waitFor(callEvent('connect', call.id));
    const res = await env.graph('POST', `/${env.sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      call_id: call.id,
      action: 'reject',
    });
    expect(res.status).toBe(200);
    await env.rx.waitFor(callEvent('terminate', call.id));
    expect(call.record.endReason).toBe('voicemail');
    const vm = await env.rx.waitFor((c) => c.field === 'messages' && c.item.type === 'audio');
    expect(vm.item.id).toBe(call.id);
  });

  it('without voicemail a reject is a plain business reject and no audio message follows', async () => {
    env = await startEnv({ timers: { voicemailRecordingMs: 1 } });
    const call = await env.sim.placeUserCall({ user: { waId: '5511955551234' } });
    await env.rx.waitFor(callEvent('connect', call.id));
    await env.graph('POST', `/${env.sim.business.phoneNumberId}/calls`, {
      messaging_product: 'whatsapp',
      call_id: call.id,
      action: 'reject',
    });
    await env.rx.waitFor(callEvent('terminate', call.id));
    await sleep(100);
    expect(call.record.endReason).toBe('business_reject');
    expect(env.rx.changes.filter((c) => c.field === 'messages')).toEqual([]);
  });
});

describe('call_hours screen after-hours callers at Meta', () => {
  it('outside call_hours the client offers chat / callback instead: no call, no connect webhook to the business', async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 15, 23)); // Monday 19:00 in America/Manaus (UTC-4)
    env = await startEnv({ clock });
    const weekly = [{ day_of_week: 'MONDAY', open_time: '0900', close_time: '1700' }];
    await env.graph('POST', settingsPath(), {
      calling: { call_hours: { status: 'ENABLED', timezone_id: 'America/Manaus', weekly_operating_hours: weekly } },
    });
    await expect(env.sim.placeUserCall({ user: { waId: '5511955551234' } })).rejects.toBeInstanceOf(
      SimCallRefusedError,
    );
    await sleep(100);
    expect(env.rx.changes.filter((c) => c.field === 'calls')).toEqual([]);
  });

  it('several holiday entries on one date are that date’s open windows', async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 15, 12));
    env = await startEnv({ clock });
    const res = await env.graph('POST', settingsPath(), {
      calling: {
        call_hours: {
          status: 'ENABLED',
          timezone_id: 'UTC',
          weekly_operating_hours: [{ day_of_week: 'WEDNESDAY', open_time: '0900', close_time: '1700' }],
          holiday_schedule: [
            { date: '2026-06-17', start_time: '0900', end_time: '1200' },
            { date: '2026-06-17', start_time: '1300', end_time: '1700' },
          ],
        },
      },
    });
    expect(res.status).toBe(200);
    expect(env.sim.settings.isOpenAt(Date.UTC(2026, 5, 17, 10))).toBe(true);
    expect(env.sim.settings.isOpenAt(Date.UTC(2026, 5, 17, 12, 30))).toBe(false);
    expect(env.sim.settings.isOpenAt(Date.UTC(2026, 5, 17, 14))).toBe(true);
  });
});

describe('account_update (§2.10)', () => {
  it('the control API emits ACCOUNT_VIOLATION and ACCOUNT_RESTRICTION webhooks on field account_update', async () => {
    env = await startEnv();
    const v = await env.ctl('POST', '/account_update', {
      event: 'ACCOUNT_VIOLATION',
      violationType: 'USER_INITIATED_CALLS_LOW_PICKUP_RATE',
    });
    expect(v.status).toBe(200);
    const seen = await env.rx.waitFor((c) => c.field === 'account_update');
    expect(seen.value).toEqual({
      phone_number: '447700900123',
      event: 'ACCOUNT_VIOLATION',
      violation_info: { violation_type: 'USER_INITIATED_CALLS_LOW_PICKUP_RATE' },
    });
    const r = await env.ctl('POST', '/account_update', {
      event: 'ACCOUNT_RESTRICTION',
      restrictions: [{ type: 'RESTRICTED_USER_INITIATED_CALLING', expiration: 1_800_000_000 }],
    });
    expect(r.status).toBe(200);
    const restricted = await env.rx.waitFor(
      (c) => c.field === 'account_update' && c.value.event !== 'ACCOUNT_VIOLATION',
    );
    expect(restricted.value.restriction_info).toEqual([
      { restriction_type: 'RESTRICTED_USER_INITIATED_CALLING', expiration: 1_800_000_000 },
    ]);
    expect((await env.ctl('POST', '/account_update', { event: 'ACCOUNT_BANNED' })).status).toBe(400);
  });
});
