import { describe, expect, it } from 'vitest';
import { businessHoursSchema, isOpen } from '#core/checks/business-hours.ts';

const hours = businessHoursSchema.parse({
  timeZone: 'Europe/Berlin',
  weekly: [
    { day: 'MONDAY', open: '0900', close: '1200' },
    { day: 'MONDAY', open: '13:00', close: '17:30' },
    { day: 'SATURDAY', open: '1000', close: '1400' },
  ],
  holidays: [{ date: '2026-12-28' }, { date: '2026-11-30', start: '1500', end: '2359' }],
});

describe('isOpen', () => {
  it.each([
    // 2026-11-23 is a Monday; Berlin is UTC+1 in November.
    ['Monday 08:59 Berlin', '2026-11-23T07:59:00Z', false],
    ['Monday 09:00 Berlin', '2026-11-23T08:00:00Z', true],
    ['Monday 11:59 Berlin', '2026-11-23T10:59:00Z', true],
    ['Monday 12:00 Berlin (lunch)', '2026-11-23T11:00:00Z', false],
    ['Monday 17:29 Berlin', '2026-11-23T16:29:00Z', true],
    ['Monday 17:30 Berlin (closed)', '2026-11-23T16:30:00Z', false],
    ['Tuesday 10:00 Berlin', '2026-11-24T09:00:00Z', false],
    ['Saturday 10:00 Berlin', '2026-11-28T09:00:00Z', true],
    ['Monday 23:30 UTC = Tuesday 00:30 Berlin', '2026-11-23T23:30:00Z', false],
    ['holiday Monday 10:00', '2026-12-28T09:00:00Z', false],
    ['part-day holiday before its start', '2026-11-30T13:00:00Z', true],
    ['part-day holiday after its start', '2026-11-30T14:00:00Z', false],
  ])('%s → %s', (_when, iso, open) => {
    expect(isOpen(hours, new Date(iso))).toBe(open);
  });

  it('is always open without a schedule', () => {
    expect(isOpen(undefined, new Date('2026-11-24T03:00:00Z'))).toBe(true);
  });

  it.each([
    ['unknown time zone', { timeZone: 'Mars/Olympus', weekly: [{ day: 'MONDAY', open: '0900', close: '1000' }] }],
    ['closing before opening', { timeZone: 'UTC', weekly: [{ day: 'MONDAY', open: '1000', close: '0900' }] }],
    ['no slots', { timeZone: 'UTC', weekly: [] }],
    ['a bad time', { timeZone: 'UTC', weekly: [{ day: 'MONDAY', open: '9am', close: '1000' }] }],
    ['a bad day', { timeZone: 'UTC', weekly: [{ day: 'MON', open: '0900', close: '1000' }] }],
  ])('rejects a schedule with %s', (_what, value) => {
    expect(businessHoursSchema.safeParse(value).success).toBe(false);
  });
});
