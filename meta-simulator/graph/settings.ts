/**
 * Simulated `GET|POST /{PHONE_NUMBER_ID}/settings` calling configuration (meta-calling-api.md §3.6, §5.3).
 *
 * Meta documents the write errors only as human-readable messages (§6 last paragraph), so every validation
 * failure here is a Graph error 100 whose `error_data.details` names the problem.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { SimClock } from './clock.ts';
import { GraphError, invalidParameter } from './errors.ts';

/** `ENABLED | DISABLED` toggles. */
export type Toggle = 'ENABLED' | 'DISABLED';

/** One `call_hours.weekly_operating_hours[]` entry. */
export interface WeeklyHours {
  day_of_week: DayOfWeek;
  open_time: string;
  close_time: string;
}

/** One `call_hours.holiday_schedule[]` entry. */
export interface HolidayHours {
  date: string;
  start_time: string;
  end_time: string;
}

/** `calling.call_hours` (§3.6). Replaced wholesale on every write. */
export interface CallHours {
  status: Toggle;
  timezone_id: string;
  weekly_operating_hours: WeeklyHours[];
  holiday_schedule?: HolidayHours[];
}

/** One configured SIP server (per app, §3.6 / §5.3). */
export interface SipServer {
  hostname: string;
  port: number;
  request_uri_user_params?: Record<string, string>;
  app_id: string;
}

/** Stored calling settings. */
export interface CallingSettings {
  status: Toggle;
  call_icon_visibility: 'DEFAULT' | 'DISABLE_ALL';
  call_icons?: { restrict_to_user_countries: string[] };
  call_hours?: CallHours;
  callback_permission_status: Toggle;
  /** Omitted from GET unless explicitly set (§3.6). */
  srtp_key_exchange_protocol?: 'DTLS' | 'SDES';
  sip: { status: Toggle; servers: SipServer[] };
  audio?: { additional_codecs: Array<'PCMA' | 'PCMU'> };
  voicemail?: Voicemail;
}

/** What diverts a call to voicemail (Corrections item 4, SET26). */
export type VoicemailTrigger = 'REJECT' | 'TIMEOUT';

/**
 * `calling.voicemail` (Corrections item 4, SET26 Jun 26 2026): `status`, `triggers` (REJECT: a business reject
 * diverts; TIMEOUT: a call the business has not accepted or rejected within `timeout_seconds` of ringing diverts)
 * and `audio.default` (`announcement_media_id`, `timeout_seconds` 0–30).
 */
export interface Voicemail {
  status: Toggle;
  triggers?: VoicemailTrigger[];
  audio?: { default: { announcement_media_id: string; timeout_seconds?: number } };
}

/** Days accepted in `day_of_week`. */
export const DAYS_OF_WEEK = ['MONDAY', 'TUESDAY', 'WEDNESDAY', 'THURSDAY', 'FRIDAY', 'SATURDAY', 'SUNDAY'] as const;
/** A `day_of_week` value. */
export type DayOfWeek = (typeof DAYS_OF_WEEK)[number];

/** Options of {@link SettingsStore}. */
export interface SettingsStoreOptions {
  clock: SimClock;
  /**
   * Initial calling settings. Meta's default is calling `DISABLED` (§3.6); the simulator starts ENABLED so that
   * `npm start` and tests work without a settings call — pass `{ status: 'DISABLED' }` for Meta's default.
   */
  initial?: Partial<Omit<CallingSettings, 'sip'>> & { sip?: Partial<CallingSettings['sip']> };
  /** The business's daily messaging limit; enabling calling below 2000 fails with 138015 (§4.3). Default 2000. */
  messagingLimit?: number;
  /** Whether an app is subscribed to the `calls` webhook field; if not (and no SIP) enabling fails 138018. */
  callsWebhookSubscribed?: boolean;
}

const CALLING_KEYS = new Set([
  'status',
  'call_icon_visibility',
  'call_icons',
  'call_hours',
  'callback_permission_status',
  'srtp_key_exchange_protocol',
  'sip',
  'audio',
  'voicemail',
  'restrictions',
]);

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function toggle(v: unknown, field: string): Toggle {
  if (v !== 'ENABLED' && v !== 'DISABLED') {
    throw invalidParameter(`Invalid value for ${field}: expected ENABLED or DISABLED`);
  }
  return v;
}

/** Parse `"HHMM"` (or `"HH:MM"`, seen in one Meta sample, §3.6) into minutes after midnight. */
export function parseHhmm(v: unknown, field: string): number {
  const m = typeof v === 'string' ? /^(\d{2}):?(\d{2})$/.exec(v) : null;
  const h = m ? Number(m[1]) : Number.NaN;
  const min = m ? Number(m[2]) : Number.NaN;
  if (!m || h > 23 || min > 59) throw invalidParameter(`Invalid time format for ${field}: expected HHMM (0000-2359)`);
  return h * 60 + min;
}

function validTimezone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

function validateCallHours(v: unknown, now: number): CallHours {
  if (!isObj(v)) throw invalidParameter('call_hours must be an object');
  const status = toggle(v.status, 'call_hours.status');
  if (typeof v.timezone_id !== 'string' || v.timezone_id === '') {
    throw invalidParameter('call_hours.timezone_id is required');
  }
  if (!validTimezone(v.timezone_id)) throw invalidParameter(`Invalid timezone_id: ${v.timezone_id}`);
  const tz = v.timezone_id;
  const weekly = v.weekly_operating_hours;
  if (!Array.isArray(weekly) || weekly.length === 0) {
    throw invalidParameter('call_hours.weekly_operating_hours is required and cannot be empty');
  }
  const perDay = new Map<string, Array<{ open: number; close: number }>>();
  const outWeekly: WeeklyHours[] = [];
  for (const [i, e] of weekly.entries()) {
    if (!isObj(e)) throw invalidParameter(`weekly_operating_hours[${i}] must be an object`);
    if (typeof e.day_of_week !== 'string' || !(DAYS_OF_WEEK as readonly string[]).includes(e.day_of_week)) {
      throw invalidParameter(`Invalid day_of_week in weekly_operating_hours[${i}]`);
    }
    const open = parseHhmm(e.open_time, `weekly_operating_hours[${i}].open_time`);
    const close = parseHhmm(e.close_time, `weekly_operating_hours[${i}].close_time`);
    if (open >= close) {
      throw invalidParameter(`open_time must be before close_time in weekly_operating_hours[${i}]`);
    }
    const list = perDay.get(e.day_of_week) ?? [];
    list.push({ open, close });
    perDay.set(e.day_of_week, list);
    outWeekly.push({
      day_of_week: e.day_of_week as DayOfWeek,
      open_time: String(e.open_time),
      close_time: String(e.close_time),
    });
  }
  for (const [day, list] of perDay) {
    if (list.length > 2) throw invalidParameter(`More than 2 operating hour entries for ${day}`);
    list.sort((a, b) => a.open - b.open);
    for (let i = 1; i < list.length; i++) {
      const prev = list[i - 1];
      const cur = list[i];
      if (prev && cur && cur.open < prev.close) throw invalidParameter(`Overlapping operating hours on ${day}`);
    }
  }
  const out: CallHours = { status, timezone_id: tz, weekly_operating_hours: outWeekly };
  if (v.holiday_schedule !== undefined) {
    if (!Array.isArray(v.holiday_schedule)) throw invalidParameter('holiday_schedule must be an array');
    if (v.holiday_schedule.length > 20) throw invalidParameter('holiday_schedule allows at most 20 entries');
    // "Today" in the schedule's timezone, as YYYY-MM-DD.
    const today = new Intl.DateTimeFormat('en-CA', {
      timeZone: tz,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
    }).format(new Date(now));
    const holidays: HolidayHours[] = [];
    for (const [i, h] of v.holiday_schedule.entries()) {
      if (!isObj(h)) throw invalidParameter(`holiday_schedule[${i}] must be an object`);
      const d = typeof h.date === 'string' ? /^(\d{4})-(\d{2})-(\d{2})$/.exec(h.date) : null;
      const parsed = d ? new Date(Date.UTC(Number(d[1]), Number(d[2]) - 1, Number(d[3]))) : undefined;
      if (!d || !parsed || parsed.toISOString().slice(0, 10) !== h.date) {
        throw invalidParameter(`Invalid date format in holiday_schedule[${i}]: expected YYYY-MM-DD`);
      }
      if ((h.date as string) < today) throw invalidParameter(`holiday_schedule[${i}].date ${h.date} is in the past`);
      const start = parseHhmm(h.start_time, `holiday_schedule[${i}].start_time`);
      const end = parseHhmm(h.end_time, `holiday_schedule[${i}].end_time`);
      if (start >= end) throw invalidParameter(`start_time must be before end_time in holiday_schedule[${i}]`);
      holidays.push({ date: h.date as string, start_time: String(h.start_time), end_time: String(h.end_time) });
    }
    out.holiday_schedule = holidays;
  }
  return out;
}

function validateVoicemail(v: unknown): Voicemail {
  if (!isObj(v)) throw invalidParameter('voicemail must be an object');
  for (const k of Object.keys(v)) {
    if (k !== 'status' && k !== 'triggers' && k !== 'audio') {
      throw invalidParameter(`Param voicemail[${k}] is not a valid field`);
    }
  }
  const out: Voicemail = { status: toggle(v.status, 'voicemail.status') };
  if (v.triggers !== undefined) {
    if (
      !Array.isArray(v.triggers) ||
      v.triggers.length === 0 ||
      !v.triggers.every((t) => t === 'REJECT' || t === 'TIMEOUT') ||
      new Set(v.triggers).size !== v.triggers.length
    ) {
      throw invalidParameter('voicemail.triggers must be a non-empty array of distinct REJECT and/or TIMEOUT');
    }
    out.triggers = v.triggers as VoicemailTrigger[];
  }
  if (v.audio !== undefined) {
    const d = isObj(v.audio) ? v.audio.default : undefined;
    if (!isObj(d)) throw invalidParameter('voicemail.audio.default must be an object');
    if (typeof d.announcement_media_id !== 'string' || d.announcement_media_id === '') {
      throw invalidParameter('voicemail.audio.default.announcement_media_id is required');
    }
    const audio: { announcement_media_id: string; timeout_seconds?: number } = {
      announcement_media_id: d.announcement_media_id,
    };
    if (d.timeout_seconds !== undefined) {
      const t = d.timeout_seconds;
      if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t > 30) {
        throw invalidParameter('voicemail.audio.default.timeout_seconds must be an integer between 0 and 30');
      }
      audio.timeout_seconds = t;
    }
    out.audio = { default: audio };
  }
  if (out.status === 'ENABLED') {
    if (!out.triggers) throw invalidParameter('voicemail.triggers is required when voicemail is ENABLED');
    if (!out.audio) throw invalidParameter('voicemail.audio.default is required when voicemail is ENABLED');
    if (out.triggers.includes('TIMEOUT') && out.audio.default.timeout_seconds === undefined) {
      throw invalidParameter('voicemail.audio.default.timeout_seconds is required with the TIMEOUT trigger');
    }
  }
  return out;
}

/** Voicemail as the engine applies it: which triggers divert, and the TIMEOUT deadline in ms. */
export interface ActiveVoicemail {
  readonly onReject: boolean;
  /** Set when `TIMEOUT` is a trigger: ms after ringing. */
  readonly timeoutMs?: number;
}

/** In-memory calling settings of one business phone number. */
export class SettingsStore {
  #calling: CallingSettings;
  readonly #clock: SimClock;
  readonly #messagingLimit: number;
  readonly #callsSubscribed: boolean;
  /** SIP digest password per app id; generated when an app's server is first added (§5.3). */
  readonly #sipPasswords = new Map<string, string>();

  /** Create the store with Meta's field defaults (calling itself starts ENABLED, see options). */
  constructor(opts: SettingsStoreOptions) {
    this.#clock = opts.clock;
    this.#messagingLimit = opts.messagingLimit ?? 2000;
    this.#callsSubscribed = opts.callsWebhookSubscribed ?? true;
    const init = opts.initial ?? {};
    this.#calling = {
      status: 'ENABLED',
      call_icon_visibility: 'DEFAULT',
      callback_permission_status: 'DISABLED',
      ...init,
      sip: { status: 'DISABLED', servers: [], ...init.sip },
    };
  }

  /** A deep copy of the stored settings. */
  get calling(): CallingSettings {
    return structuredClone(this.#calling);
  }

  /** Calling is enabled on the number. */
  get callingEnabled(): boolean {
    return this.#calling.status === 'ENABLED';
  }

  /** SIP mode is on: Graph `/calls` is refused with 131055 and no calling webhooks are sent (§5.3). */
  get sipEnabled(): boolean {
    return this.#calling.sip.status === 'ENABLED';
  }

  /** `callback_permission_status === 'ENABLED'`. */
  get callbackPermissionEnabled(): boolean {
    return this.#calling.callback_permission_status === 'ENABLED';
  }

  /** Voicemail when `ENABLED` (Corrections item 4), else undefined. */
  get voicemail(): ActiveVoicemail | undefined {
    const vm = this.#calling.voicemail;
    if (vm?.status !== 'ENABLED') return undefined;
    const seconds = vm.audio?.default.timeout_seconds;
    return {
      onReject: vm.triggers?.includes('REJECT') ?? false,
      ...(vm.triggers?.includes('TIMEOUT') && seconds !== undefined ? { timeoutMs: seconds * 1000 } : {}),
    };
  }

  /** Key exchange the business must use in its SDP (§3.6: DTLS default). */
  get keyExchange(): 'DTLS' | 'SDES' {
    return this.#calling.srtp_key_exchange_protocol ?? 'DTLS';
  }

  /** G.711 was opted into via `audio.additional_codecs` (§3.6). */
  get allowG711(): boolean {
    return (this.#calling.audio?.additional_codecs.length ?? 0) > 0;
  }

  /**
   * Whether the number takes calls at `atMs` under `call_hours` (§3.6; `DISABLED` or unset = open 24/7).
   * Weekly entries are `[open, close)` in `timezone_id`. A holiday entry replaces that date's weekly hours with
   * `[start_time, end_time)` — Meta's page does not spell this out; this follows AWS End User Messaging's
   * description of the same Meta fields ("the time the business begins/stops accepting calls on the override date").
   * Several entries for one date are open windows of that date (like the ≤ 2 weekly slots of a day).
   */
  isOpenAt(atMs: number): boolean {
    const ch = this.#calling.call_hours;
    if (ch?.status !== 'ENABLED') return true;
    const parts = new Intl.DateTimeFormat('en-CA', {
      timeZone: ch.timezone_id,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      weekday: 'long',
      hourCycle: 'h23',
    }).formatToParts(new Date(atMs));
    const part = (t: string): string => parts.find((p) => p.type === t)?.value ?? '';
    const date = `${part('year')}-${part('month')}-${part('day')}`;
    const minutes = Number(part('hour')) * 60 + Number(part('minute'));
    const holidays = ch.holiday_schedule?.filter((h) => h.date === date) ?? [];
    if (holidays.length > 0) {
      return holidays.some(
        (h) => parseHhmm(h.start_time, 'start_time') <= minutes && minutes < parseHhmm(h.end_time, 'end_time'),
      );
    }
    const day = part('weekday').toUpperCase();
    return ch.weekly_operating_hours.some(
      (e) =>
        e.day_of_week === day &&
        parseHhmm(e.open_time, 'open_time') <= minutes &&
        minutes < parseHhmm(e.close_time, 'close_time'),
    );
  }

  /** The GET body (`{ calling: {...} }`); SIP passwords only with `includeSipCredentials` (§3.6). */
  view(opts: { includeSipCredentials?: boolean } = {}): { calling: Record<string, unknown> } {
    const c = structuredClone(this.#calling) as CallingSettings & Record<string, unknown>;
    const servers = c.sip.servers.map((s) => {
      const out: Record<string, unknown> = { ...s };
      if (opts.includeSipCredentials) out.sip_user_password = this.#sipPasswords.get(s.app_id);
      return out;
    });
    return { calling: { ...c, sip: { ...c.sip, servers } } };
  }

  /**
   * Apply a `POST /settings` body atomically (validate everything first). `appId` is the app owning the token;
   * SIP servers are stored per app (§3.6).
   */
  update(body: unknown, opts: { appId: string }): void {
    if (!isObj(body)) throw invalidParameter('Request body must be a JSON object');
    if (!isObj(body.calling)) throw invalidParameter('Param calling is required and must be an object');
    const input = body.calling;
    for (const k of Object.keys(input)) {
      if (!CALLING_KEYS.has(k) || k === 'restrictions')
        throw invalidParameter(`Param calling[${k}] is not a valid field`);
    }
    const next = structuredClone(this.#calling);
    if (input.status !== undefined) next.status = toggle(input.status, 'calling.status');
    if (input.call_icon_visibility !== undefined) {
      if (input.call_icon_visibility !== 'DEFAULT' && input.call_icon_visibility !== 'DISABLE_ALL') {
        throw invalidParameter('Invalid value for call_icon_visibility: expected DEFAULT or DISABLE_ALL');
      }
      next.call_icon_visibility = input.call_icon_visibility;
    }
    if (input.call_icons !== undefined) {
      const ci = input.call_icons;
      const list = isObj(ci) ? ci.restrict_to_user_countries : undefined;
      if (!Array.isArray(list) || !list.every((c) => typeof c === 'string' && /^[A-Z]{2}$/.test(c))) {
        throw invalidParameter('call_icons.restrict_to_user_countries must be an array of ISO 3166 alpha-2 codes');
      }
      next.call_icons = { restrict_to_user_countries: list as string[] };
    }
    if (input.call_hours !== undefined) {
      // The whole object is replaced; omitting holiday_schedule deletes existing holidays (§3.6).
      next.call_hours = validateCallHours(input.call_hours, this.#clock.now());
    }
    if (input.callback_permission_status !== undefined) {
      next.callback_permission_status = toggle(input.callback_permission_status, 'callback_permission_status');
    }
    if (input.srtp_key_exchange_protocol !== undefined) {
      if (input.srtp_key_exchange_protocol !== 'DTLS' && input.srtp_key_exchange_protocol !== 'SDES') {
        throw invalidParameter('Invalid value for srtp_key_exchange_protocol: expected DTLS or SDES');
      }
      next.srtp_key_exchange_protocol = input.srtp_key_exchange_protocol;
    }
    if (input.audio !== undefined) {
      const codecs = isObj(input.audio) ? input.audio.additional_codecs : undefined;
      if (!Array.isArray(codecs) || !codecs.every((c) => c === 'PCMA' || c === 'PCMU')) {
        throw invalidParameter('audio.additional_codecs must be an array containing only PCMA and/or PCMU');
      }
      next.audio = { additional_codecs: [...new Set(codecs as Array<'PCMA' | 'PCMU'>)] };
    }
    if (input.voicemail !== undefined) next.voicemail = validateVoicemail(input.voicemail);
    let addedServer = false;
    if (input.sip !== undefined) {
      const sip = input.sip;
      if (!isObj(sip)) throw invalidParameter('sip must be an object');
      if (sip.status !== undefined) next.sip.status = toggle(sip.status, 'sip.status');
      if (sip.servers !== undefined) {
        if (!Array.isArray(sip.servers)) throw invalidParameter('sip.servers must be an array');
        if (sip.servers.length > 1) throw invalidParameter('Only one SIP server can be configured per app');
        const mine: SipServer[] = sip.servers.map((s: unknown, i: number) => {
          if (!isObj(s) || typeof s.hostname !== 'string' || s.hostname === '') {
            throw invalidParameter(`sip.servers[${i}].hostname is required`);
          }
          const port = s.port ?? 5061;
          if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
            throw invalidParameter(`sip.servers[${i}].port must be an integer between 1 and 65535`);
          }
          const server: SipServer = { hostname: s.hostname, port, app_id: opts.appId };
          if (s.request_uri_user_params !== undefined) {
            if (!isObj(s.request_uri_user_params)) {
              throw invalidParameter(`sip.servers[${i}].request_uri_user_params must be an object`);
            }
            const params: Record<string, string> = {};
            for (const [k, v] of Object.entries(s.request_uri_user_params)) {
              if (typeof v !== 'string' || k.length > 128 || v.length > 128) {
                throw invalidParameter(
                  `sip.servers[${i}].request_uri_user_params keys and values must be strings of at most 128 characters`,
                );
              }
              params[k] = v;
            }
            server.request_uri_user_params = params;
          }
          return server;
        });
        // An empty array deletes this app's server; other apps' servers are untouched (§3.6).
        addedServer = mine.length > 0 && !next.sip.servers.some((s) => s.app_id === opts.appId);
        next.sip.servers = [...next.sip.servers.filter((s) => s.app_id !== opts.appId), ...mine];
      }
      if (next.sip.status === 'ENABLED' && next.sip.servers.length === 0) {
        throw invalidParameter('At least one SIP server must be configured while sip.status is ENABLED');
      }
    }
    if (input.status === 'ENABLED' && this.#calling.status !== 'ENABLED') {
      if (this.#messagingLimit < 2000) {
        throw new GraphError(
          138015,
          'Calling requires a messaging limit of at least 2000 business-initiated conversations',
        );
      }
      if (!this.#callsSubscribed && next.sip.status !== 'ENABLED') {
        throw new GraphError(138018, 'No app is subscribed to the calls webhook field and SIP is not configured');
      }
    }
    this.#calling = next;
    if (addedServer) this.#sipPasswords.set(opts.appId, randomBytes(18).toString('base64url'));
    if (!next.sip.servers.some((s) => s.app_id === opts.appId)) this.#sipPasswords.delete(opts.appId);
  }
}
