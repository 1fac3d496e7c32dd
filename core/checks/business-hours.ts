/**
 * Business hours: weekly opening slots in a time zone plus holidays. Without a schedule the
 * business is always open.
 */
import { z } from 'zod';

const DAYS = ['MONDAY', 'TUESDAY', 'WEDNESDAY', 'THURSDAY', 'FRIDAY', 'SATURDAY', 'SUNDAY'] as const;
const hhmm = z
  .string()
  .regex(/^([01]\d|2[0-3]):?[0-5]\d$|^24:?00$/, 'time must be HH:MM or HHMM, 24-hour')
  .transform((t) => Number(t.replace(':', '').slice(0, 2)) * 60 + Number(t.replace(':', '').slice(2)));

/** Schema of the business-hours configuration (JSON in config). */
export const businessHoursSchema = z
  .object({
    /** IANA time zone, e.g. `Europe/Berlin`. */
    timeZone: z.string().refine(isTimeZone, 'unknown IANA time zone'),
    /** Weekly open slots; a day may have several. */
    weekly: z
      .array(z.object({ day: z.enum(DAYS), open: hhmm, close: hhmm }))
      .min(1, 'weekly needs at least one slot')
      .refine((slots) => slots.every((s) => s.open < s.close), 'each slot must open before it closes'),
    /** Dates (YYYY-MM-DD, in the time zone) closed all day, or closed between start and end. */
    holidays: z
      .array(
        z.object({
          date: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'date must be YYYY-MM-DD'),
          start: hhmm.optional(),
          end: hhmm.optional(),
        }),
      )
      .default([]),
  })
  .strict();

/** Validated business hours (times in minutes after midnight). */
export type BusinessHours = z.output<typeof businessHoursSchema>;

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/**
 * True when `at` falls inside an open slot and outside every holiday closure.
 * `undefined` hours mean always open.
 */
export function isOpen(hours: BusinessHours | undefined, at: Date): boolean {
  if (!hours) return true;
  const local = localParts(at, hours.timeZone);
  const holidayClosed = hours.holidays.some(
    (h) => h.date === local.date && local.minute >= (h.start ?? 0) && local.minute <= (h.end ?? 24 * 60),
  );
  if (holidayClosed) return false;
  return hours.weekly.some((s) => s.day === local.day && local.minute >= s.open && local.minute < s.close);
}

function localParts(at: Date, timeZone: string): { day: (typeof DAYS)[number]; date: string; minute: number } {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    weekday: 'long',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(at);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
  return {
    day: get('weekday').toUpperCase() as (typeof DAYS)[number],
    date: `${get('year')}-${get('month')}-${get('day')}`,
    minute: Number(get('hour')) * 60 + Number(get('minute')),
  };
}
