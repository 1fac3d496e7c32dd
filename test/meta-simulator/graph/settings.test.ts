/**
 * `GET|POST /{pnid}/settings` (meta-calling-api.md §3.6): validation errors, replace semantics, SIP credentials.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '#simulator/graph/clock.ts';
import { type Env, startEnv } from './harness.ts';

let env: Env;
const clock = new ManualClock(Date.UTC(2026, 5, 15, 12)); // 2026-06-15
beforeAll(async () => {
  env = await startEnv({ clock });
});
afterAll(async () => {
  await env.close();
});

const settings = () => `/${env.sim.business.phoneNumberId}/settings`;
const hours = (weekly: unknown[], extra: Record<string, unknown> = {}) => ({
  calling: {
    call_hours: { status: 'ENABLED', timezone_id: 'America/Manaus', weekly_operating_hours: weekly, ...extra },
  },
});
const details = async (body: unknown): Promise<string> => {
  const res = await env.graph('POST', settings(), body);
  expect(res.status).toBe(400);
  expect(res.body.error.code).toBe(100);
  return res.body.error.error_data.details as string;
};

describe('calling settings', () => {
  it('GET shows the simulator defaults; srtp_key_exchange_protocol only once set', async () => {
    const res = await env.graph('GET', settings());
    expect(res.body).toEqual({
      calling: {
        status: 'ENABLED',
        call_icon_visibility: 'DEFAULT',
        callback_permission_status: 'DISABLED',
        sip: { status: 'DISABLED', servers: [] },
      },
    });
    expect(
      await env.graph('POST', settings(), {
        calling: { srtp_key_exchange_protocol: 'SDES', audio: { additional_codecs: ['PCMA'] } },
      }),
    ).toEqual({
      status: 200,
      body: { success: true },
    });
    const after = await env.graph('GET', settings());
    expect(after.body.calling).toMatchObject({
      srtp_key_exchange_protocol: 'SDES',
      audio: { additional_codecs: ['PCMA'] },
    });
    expect(env.sim.settings.allowG711).toBe(true);
    await env.graph('POST', settings(), {
      calling: { srtp_key_exchange_protocol: 'DTLS', audio: { additional_codecs: [] } },
    });
  });

  it('rejects bad enums, unknown fields, and bad codecs', async () => {
    expect(await details({ calling: { status: 'ON' } })).toBe(
      'Invalid value for calling.status: expected ENABLED or DISABLED',
    );
    expect(await details({ calling: { call_icon_visibility: 'HIDE' } })).toBe(
      'Invalid value for call_icon_visibility: expected DEFAULT or DISABLE_ALL',
    );
    expect(await details({ calling: { foo: 1 } })).toBe('Param calling[foo] is not a valid field');
    expect(await details({ calling: { audio: { additional_codecs: ['G729'] } } })).toBe(
      'audio.additional_codecs must be an array containing only PCMA and/or PCMU',
    );
    expect(await details({})).toBe('Param calling is required and must be an object');
  });

  it('call_hours: timezone required, non-empty, ≤ 2 per day, open < close, no overlap', async () => {
    expect(await details({ calling: { call_hours: { status: 'ENABLED', weekly_operating_hours: [] } } })).toBe(
      'call_hours.timezone_id is required',
    );
    expect(await details(hours([], { timezone_id: 'Mars/Olympus' }))).toBe('Invalid timezone_id: Mars/Olympus');
    expect(await details(hours([]))).toBe('call_hours.weekly_operating_hours is required and cannot be empty');
    expect(await details(hours([{ day_of_week: 'MONDAY', open_time: '1000', close_time: '0900' }]))).toBe(
      'open_time must be before close_time in weekly_operating_hours[0]',
    );
    expect(
      await details(
        hours([
          { day_of_week: 'MONDAY', open_time: '0800', close_time: '1000' },
          { day_of_week: 'MONDAY', open_time: '1100', close_time: '1200' },
          { day_of_week: 'MONDAY', open_time: '1300', close_time: '1400' },
        ]),
      ),
    ).toBe('More than 2 operating hour entries for MONDAY');
    expect(
      await details(
        hours([
          { day_of_week: 'TUESDAY', open_time: '0800', close_time: '1200' },
          { day_of_week: 'TUESDAY', open_time: '1130', close_time: '1400' },
        ]),
      ),
    ).toBe('Overlapping operating hours on TUESDAY');
    expect(await details(hours([{ day_of_week: 'FUNDAY', open_time: '0800', close_time: '1000' }]))).toBe(
      'Invalid day_of_week in weekly_operating_hours[0]',
    );
    expect(await details(hours([{ day_of_week: 'MONDAY', open_time: '2400', close_time: '2500' }]))).toBe(
      'Invalid time format for weekly_operating_hours[0].open_time: expected HHMM (0000-2359)',
    );
  });

  it('holidays: past dates rejected, bad format rejected, and omission deletes them (whole object replaced)', async () => {
    const weekly = [
      { day_of_week: 'MONDAY', open_time: '0800', close_time: '1200' },
      { day_of_week: 'MONDAY', open_time: '13:00', close_time: '17:00' },
    ];
    expect(
      await details(
        hours(weekly, { holiday_schedule: [{ date: '2026-06-14', start_time: '0000', end_time: '2359' }] }),
      ),
    ).toBe('holiday_schedule[0].date 2026-06-14 is in the past');
    expect(
      await details(
        hours(weekly, { holiday_schedule: [{ date: '2026-02-30', start_time: '0000', end_time: '2359' }] }),
      ),
    ).toBe('Invalid date format in holiday_schedule[0]: expected YYYY-MM-DD');
    const ok = await env.graph(
      'POST',
      settings(),
      hours(weekly, { holiday_schedule: [{ date: '2026-06-15', start_time: '0000', end_time: '2359' }] }),
    );
    expect(ok.body).toEqual({ success: true });
    expect((await env.graph('GET', settings())).body.calling.call_hours.holiday_schedule).toHaveLength(1);
    await env.graph('POST', settings(), hours(weekly));
    const after = (await env.graph('GET', settings())).body.calling.call_hours;
    expect(after.holiday_schedule).toBeUndefined();
    expect(after.weekly_operating_hours).toHaveLength(2);
  });

  it('sip: ENABLED needs a server; port defaults to 5061; credentials only with include_sip_credentials', async () => {
    expect(await details({ calling: { sip: { status: 'ENABLED' } } })).toBe(
      'At least one SIP server must be configured while sip.status is ENABLED',
    );
    expect(
      await details({
        calling: {
          sip: { servers: [{ hostname: 'sbc.example.com', request_uri_user_params: { tgrp: 'x'.repeat(129) } }] },
        },
      }),
    ).toBe('sip.servers[0].request_uri_user_params keys and values must be strings of at most 128 characters');
    await env.graph('POST', settings(), {
      calling: { sip: { status: 'DISABLED', servers: [{ hostname: 'sbc.example.com' }] } },
    });
    const plain = (await env.graph('GET', settings())).body.calling.sip;
    expect(plain).toEqual({
      status: 'DISABLED',
      servers: [{ hostname: 'sbc.example.com', port: 5061, app_id: '1000000000000001' }],
    });
    const creds = (await env.graph('GET', `${settings()}?include_sip_credentials=true`)).body.calling.sip;
    expect(creds.servers[0].sip_user_password).toMatch(/^[A-Za-z0-9_-]{24}$/);
    await env.graph('POST', settings(), { calling: { sip: { servers: [] } } });
    expect((await env.graph('GET', settings())).body.calling.sip.servers).toEqual([]);
  });

  it('call_hours are enforced on user calls: outside hours the client does not call (no webhook)', async () => {
    // 2026-06-15 is a Monday; 12:00 UTC is 08:00 in America/Manaus (UTC-4).
    await env.graph(
      'POST',
      settings(),
      hours([{ day_of_week: 'MONDAY', open_time: '0900', close_time: '1700' }], {
        holiday_schedule: [{ date: '2026-06-16', start_time: '1000', end_time: '1100' }],
      }),
    );
    await expect(env.sim.placeUserCall({ user: { waId: '5511955551234' } })).rejects.toThrow(/outside call_hours/);
    clock.advance(3_600_000); // 09:00 local
    const call = await env.sim.placeUserCall({ user: { waId: '5511955551234' } });
    call.hangUp();
    expect(env.sim.settings.isOpenAt(Date.UTC(2026, 5, 16, 13, 59))).toBe(false); // holiday, 09:59 local
    expect(env.sim.settings.isOpenAt(Date.UTC(2026, 5, 16, 14, 0))).toBe(true); // holiday, 10:00 local
    await env.graph('POST', settings(), {
      calling: {
        call_hours: {
          status: 'DISABLED',
          timezone_id: 'UTC',
          weekly_operating_hours: [{ day_of_week: 'MONDAY', open_time: '0000', close_time: '0100' }],
        },
      },
    });
    expect(env.sim.settings.isOpenAt(Date.UTC(2026, 5, 17, 3))).toBe(true);
  });
});
