/**
 * Business hours as Meta's `calling.call_hours` (meta-calling-api.md §3.6, SET26): pushed to Meta so that Meta
 * itself screens after-hours callers — the WhatsApp client offers "chat" or "request callback" and shows the next
 * open slot instead of placing a call the bridge would have to refuse (review D7).
 *
 * Meta's rules the mapping must meet: at most 2 slots a day, `open_time` before `close_time`, no overlaps, times
 * `"HHMM"` 24-hour (0000–2359), up to 20 holiday entries, none in the past. A holiday entry is an override of that
 * date's hours: the business accepts calls from `start_time` to `end_time` (AWS End User Messaging's description
 * of the same Meta fields; Meta's page does not spell it out). The bridge's own holidays are closures, so each is
 * sent as the open windows left on that date.
 *
 * @module
 */
import type { BusinessHours } from './business-hours.ts';

/** A day of the week as Meta writes it. */
export type MetaDayOfWeek = 'MONDAY' | 'TUESDAY' | 'WEDNESDAY' | 'THURSDAY' | 'FRIDAY' | 'SATURDAY' | 'SUNDAY';

/** Meta's `calling.call_hours` object (§3.6). */
export interface MetaCallHours {
  readonly status: 'ENABLED' | 'DISABLED';
  readonly timezone_id: string;
  readonly weekly_operating_hours: ReadonlyArray<{
    readonly day_of_week: MetaDayOfWeek;
    readonly open_time: string;
    readonly close_time: string;
  }>;
  readonly holiday_schedule?: ReadonlyArray<{
    readonly date: string;
    readonly start_time: string;
    readonly end_time: string;
  }>;
}

/** Meta allows at most this many `weekly_operating_hours` entries per day (§3.6). */
export const META_MAX_SLOTS_PER_DAY = 2;
/** Meta allows at most this many `holiday_schedule` entries (§3.6). */
export const META_MAX_HOLIDAY_ENTRIES = 20;

/** The configured business hours cannot be expressed as Meta's `call_hours`. Names the day at fault. */
export class CallHoursMappingError extends Error {
  /** The day (e.g. `MONDAY`) or date (`YYYY-MM-DD`) at fault. */
  readonly day: string;
  /**
   * @param day - the day or date at fault
   * @param message - what Meta would refuse
   */
  constructor(day: string, message: string) {
    super(`BUSINESS_HOURS on ${day}: ${message}`);
    this.name = 'CallHoursMappingError';
    this.day = day;
  }
}

const DAYS: readonly MetaDayOfWeek[] = ['MONDAY', 'TUESDAY', 'WEDNESDAY', 'THURSDAY', 'FRIDAY', 'SATURDAY', 'SUNDAY'];
const DAY_END = 24 * 60;

interface Window {
  open: number;
  close: number;
}

/** Minutes after midnight → Meta's `"HHMM"`; the end of the day (24:00) becomes `2359`, Meta's last minute. */
export function toMetaTime(minutes: number): string {
  const m = Math.min(minutes, DAY_END - 1);
  return `${String(Math.floor(m / 60)).padStart(2, '0')}${String(m % 60).padStart(2, '0')}`;
}

/** Sorted, with overlapping or touching slots merged (the same hours; Meta refuses overlaps). */
function merged(slots: readonly Window[]): Window[] {
  const out: Window[] = [];
  for (const s of [...slots].sort((a, b) => a.open - b.open)) {
    const last = out.at(-1);
    if (last && s.open <= last.close) last.close = Math.max(last.close, s.close);
    else out.push({ ...s });
  }
  return out;
}

/** The weekday (Meta's name) of a `YYYY-MM-DD` calendar date. */
function weekdayOf(date: string): MetaDayOfWeek {
  const [y, m, d] = date.split('-').map(Number);
  const utcDay = new Date(Date.UTC(y ?? 0, (m ?? 1) - 1, d ?? 1)).getUTCDay(); // 0 = Sunday
  return DAYS[(utcDay + 6) % 7] as MetaDayOfWeek;
}

/** Today's date (`YYYY-MM-DD`) in `timeZone`. */
export function dateIn(timeZone: string, at: Date): string {
  return new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(at);
}

/**
 * Maps the bridge's business hours to Meta's `call_hours` (pure).
 *
 * - Weekly slots: per day, sorted, overlapping or touching slots merged; more than
 *   {@link META_MAX_SLOTS_PER_DAY} left on a day throws {@link CallHoursMappingError} naming the day.
 * - Holidays (closures in the bridge): holidays before `now`'s date in the schedule's time zone are dropped (Meta
 *   rejects past dates); each remaining date becomes the open windows left on it, one entry per window. A date
 *   closed all day is sent as `0000`–`0001` (Meta requires `start_time` before `end_time` and has no "closed"
 *   entry); the bridge's own check covers that minute. A date whose weekday has no slots needs no entry. Only the
 *   first {@link META_MAX_HOLIDAY_ENTRIES} entries by date are sent; later ones follow as the scheduled sync runs.
 * - `holiday_schedule` is always present (an empty list when there are none), since omitting it deletes Meta's
 *   holidays anyway and the comparison stays exact.
 *
 * @param hours - validated business hours
 * @param now - the current time (to drop past holidays)
 * @throws {@link CallHoursMappingError} when Meta cannot express the hours.
 */
export function toMetaCallHours(hours: BusinessHours, now: Date): MetaCallHours {
  const perDay = new Map<MetaDayOfWeek, Window[]>();
  for (const day of DAYS) {
    const slots = merged(hours.weekly.filter((s) => s.day === day).map((s) => ({ open: s.open, close: s.close })));
    if (slots.length > META_MAX_SLOTS_PER_DAY) {
      throw new CallHoursMappingError(
        day,
        `${slots.length} slots; Meta's call_hours allows at most ${META_MAX_SLOTS_PER_DAY} a day`,
      );
    }
    if (slots.length > 0) perDay.set(day, slots);
  }
  const weekly = [...perDay].flatMap(([day, slots]) =>
    slots.map((s) => ({ day_of_week: day, open_time: toMetaTime(s.open), close_time: toMetaTime(s.close) })),
  );
  const today = dateIn(hours.timeZone, now);
  const closures = new Map<string, Window[]>();
  for (const h of hours.holidays) {
    if (h.date < today) continue;
    const list = closures.get(h.date) ?? [];
    list.push({ open: h.start ?? 0, close: h.end ?? DAY_END });
    closures.set(h.date, list);
  }
  const holidays: Array<{ date: string; start_time: string; end_time: string }> = [];
  for (const date of [...closures.keys()].sort()) {
    const slots = perDay.get(weekdayOf(date)) ?? [];
    if (slots.length === 0) continue; // closed that weekday anyway
    const open = subtract(slots, merged(closures.get(date) ?? []));
    const entries =
      open.length === 0
        ? [{ date, start_time: '0000', end_time: '0001' }]
        : open.map((w) => ({ date, start_time: toMetaTime(w.open), end_time: toMetaTime(w.close) }));
    if (holidays.length + entries.length > META_MAX_HOLIDAY_ENTRIES) break;
    holidays.push(...entries);
  }
  return {
    status: 'ENABLED',
    timezone_id: hours.timeZone,
    weekly_operating_hours: weekly,
    holiday_schedule: holidays,
  };
}

/** `slots` minus the `closed` windows (both sorted, merged). */
function subtract(slots: readonly Window[], closed: readonly Window[]): Window[] {
  let out = slots.map((s) => ({ ...s }));
  for (const c of closed) {
    out = out.flatMap((s) => {
      if (c.close <= s.open || c.open >= s.close) return [s];
      const parts: Window[] = [];
      if (c.open > s.open) parts.push({ open: s.open, close: c.open });
      if (c.close < s.close) parts.push({ open: c.close, close: s.close });
      return parts;
    });
  }
  return out;
}
