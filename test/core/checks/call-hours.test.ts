/**
 * Business hours become Meta's `call_hours` (meta-calling-api.md §3.6): exact objects, Meta's limits named.
 */
import { describe, expect, it } from 'vitest';
import { businessHoursSchema } from '#core/checks/business-hours.ts';
import { CallHoursMappingError, toMetaCallHours } from '#core/checks/call-hours.ts';
import { callSettingsPatch, voicemailSchema } from '#core/meta/call-settings.ts';

const NOW = new Date('2026-11-20T12:00:00Z'); // a Friday
const hours = businessHoursSchema.parse({
  timeZone: 'Europe/Berlin',
  weekly: [
    { day: 'MONDAY', open: '13:00', close: '17:30' },
    { day: 'MONDAY', open: '0900', close: '1200' },
    { day: 'SATURDAY', open: '1000', close: '2400' },
  ],
  holidays: [
    { date: '2026-11-01' }, // past: dropped
    { date: '2026-12-28' }, // a Monday, closed all day
    { date: '2026-11-30', start: '1500', end: '2359' }, // a Monday, closes early
    { date: '2026-12-29' }, // a Tuesday: closed anyway, no entry
  ],
});

describe('business hours → Meta call_hours', () => {
  it('maps slots, times and holidays exactly as Meta writes them', () => {
    expect(toMetaCallHours(hours, NOW)).toEqual({
      status: 'ENABLED',
      timezone_id: 'Europe/Berlin',
      weekly_operating_hours: [
        { day_of_week: 'MONDAY', open_time: '0900', close_time: '1200' },
        { day_of_week: 'MONDAY', open_time: '1300', close_time: '1730' },
        { day_of_week: 'SATURDAY', open_time: '1000', close_time: '2359' },
      ],
      holiday_schedule: [
        { date: '2026-11-30', start_time: '0900', end_time: '1200' },
        { date: '2026-11-30', start_time: '1300', end_time: '1500' },
        { date: '2026-12-28', start_time: '0000', end_time: '0001' },
      ],
    });
  });

  it('more than two slots on a day fails, naming the day', () => {
    const three = businessHoursSchema.parse({
      timeZone: 'UTC',
      weekly: [
        { day: 'WEDNESDAY', open: '0800', close: '0900' },
        { day: 'WEDNESDAY', open: '1000', close: '1100' },
        { day: 'WEDNESDAY', open: '1200', close: '1300' },
      ],
    });
    expect(() => toMetaCallHours(three, NOW)).toThrow(CallHoursMappingError);
    expect(() => toMetaCallHours(three, NOW)).toThrow(
      "BUSINESS_HOURS on WEDNESDAY: 3 slots; Meta's call_hours allows at most 2 a day",
    );
  });

  it('overlapping or touching slots are merged first (the same hours, and Meta refuses overlaps)', () => {
    const touching = businessHoursSchema.parse({
      timeZone: 'UTC',
      weekly: [
        { day: 'FRIDAY', open: '0800', close: '1000' },
        { day: 'FRIDAY', open: '1000', close: '1200' },
        { day: 'FRIDAY', open: '1100', close: '1300' },
      ],
    });
    expect(toMetaCallHours(touching, NOW).weekly_operating_hours).toEqual([
      { day_of_week: 'FRIDAY', open_time: '0800', close_time: '1300' },
    ]);
  });
});

describe('settings patch', () => {
  it('is empty when Meta already has the hours (also with "HH:MM" times), and carries the whole object otherwise', () => {
    const want = toMetaCallHours(hours, NOW);
    const colon = {
      ...want,
      weekly_operating_hours: want.weekly_operating_hours.map((e) => ({
        ...e,
        open_time: `${e.open_time.slice(0, 2)}:${e.open_time.slice(2)}`,
      })),
    };
    expect(callSettingsPatch({ call_hours: colon }, { businessHours: hours }, NOW)).toBeUndefined();
    expect(callSettingsPatch({}, { businessHours: hours }, NOW)).toEqual({ call_hours: want });
  });

  it('no hours configured switches an enabled Meta schedule off; voicemail follows the VOICEMAIL setting', () => {
    const metaHours = { status: 'ENABLED', timezone_id: 'UTC', weekly_operating_hours: [] };
    expect(callSettingsPatch({ call_hours: metaHours }, {}, NOW)).toEqual({
      call_hours: { status: 'DISABLED', timezone_id: 'UTC', weekly_operating_hours: [] },
    });
    const voicemail = voicemailSchema.parse({ triggers: ['TIMEOUT'], announcementMediaId: '77', timeoutSeconds: 25 });
    expect(callSettingsPatch({}, { voicemail }, NOW)).toEqual({
      voicemail: {
        status: 'ENABLED',
        triggers: ['TIMEOUT'],
        audio: { default: { announcement_media_id: '77', timeout_seconds: 25 } },
      },
    });
    expect(callSettingsPatch({ voicemail: { status: 'ENABLED' } }, {}, NOW)).toEqual({
      voicemail: { status: 'DISABLED' },
    });
    expect(voicemailSchema.safeParse({ triggers: ['TIMEOUT'], announcementMediaId: '77' }).success).toBe(false);
  });
});
