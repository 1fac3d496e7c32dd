/**
 * Settings sync: the bridge's configuration is the source of truth for the Meta-side calling settings it owns —
 * `call_hours` (from BUSINESS_HOURS, review D7/F6) and `voicemail` (from VOICEMAIL, review F5/S11). The sync reads
 * `GET /{PHONE_NUMBER_ID}/settings`, compares, and writes `POST /{PHONE_NUMBER_ID}/settings` only the objects that
 * differ (meta-calling-api.md §3.6), so running it again changes nothing. Every Graph request has a timeout; a
 * refusal is a {@link SettingsSyncError} carrying Meta's code.
 *
 * @module
 */
import { z } from 'zod';
import type { BusinessHours } from '../checks/business-hours.ts';
import { type MetaCallHours, toMetaCallHours } from '../checks/call-hours.ts';
import { ConfigError, MetaApiError } from '../errors.ts';
import { type GraphClientOptions, graphRequest } from './graph-client.ts';

/** Schema of the VOICEMAIL setting (JSON): Meta's voicemail, Corrections item 4 (SET26). */
export const voicemailSchema = z
  .object({
    /** What diverts a caller: `REJECT` (the business rejects) and/or `TIMEOUT` (not accepted in time). */
    triggers: z
      .array(z.enum(['REJECT', 'TIMEOUT']))
      .min(1)
      .refine((t) => new Set(t).size === t.length, 'triggers must be distinct'),
    /** Media id of the announcement: audio/ogg Opus under 60 s, uploaded with `use_case=call_voicemail_announcement`. */
    announcementMediaId: z.string().min(1),
    /** TIMEOUT: seconds from ringing until Meta diverts the call (Meta: 0–30). */
    timeoutSeconds: z.number().int().min(0).max(30).optional(),
  })
  .strict()
  .refine((v) => !v.triggers.includes('TIMEOUT') || v.timeoutSeconds !== undefined, {
    message: 'timeoutSeconds is required with the TIMEOUT trigger',
    path: ['timeoutSeconds'],
  });

/** Validated voicemail configuration. */
export type VoicemailConfig = z.output<typeof voicemailSchema>;

/**
 * Parses the VOICEMAIL setting (JSON, {@link voicemailSchema}); both deployables read it (the worker for its ring cap).
 *
 * @throws {@link ConfigError} naming VOICEMAIL and the first problem.
 */
export function parseVoicemailSetting(raw: string): VoicemailConfig {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new ConfigError('VOICEMAIL', 'is not valid JSON');
  }
  const parsed = voicemailSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError('VOICEMAIL', `${issue?.path.join('.') || '(root)'}: ${issue?.message}`);
  }
  return parsed.data;
}

/** Meta's `calling.voicemail` object (Corrections item 4). */
export interface MetaVoicemail {
  readonly status: 'ENABLED' | 'DISABLED';
  readonly triggers?: ReadonlyArray<'REJECT' | 'TIMEOUT'>;
  readonly audio?: { readonly default: { readonly announcement_media_id: string; readonly timeout_seconds?: number } };
}

/** Voicemail configuration → Meta's `voicemail` object (pure). */
export function toMetaVoicemail(v: VoicemailConfig): MetaVoicemail {
  return {
    status: 'ENABLED',
    triggers: [...v.triggers],
    audio: {
      default: {
        announcement_media_id: v.announcementMediaId,
        ...(v.timeoutSeconds === undefined ? {} : { timeout_seconds: v.timeoutSeconds }),
      },
    },
  };
}

/** What the bridge wants Meta to have; an absent entry means "off" (turned off at Meta if it is on). */
export interface DesiredCallSettings {
  readonly businessHours?: BusinessHours;
  readonly voicemail?: VoicemailConfig;
}

/** The settings sync could not read or write Meta's settings. */
export class SettingsSyncError extends MetaApiError {
  /** `read` (GET) or `write` (POST). */
  readonly step: 'read' | 'write';
  /**
   * @param step - `read` (GET) or `write` (POST)
   * @param cause - the Graph failure
   */
  constructor(step: 'read' | 'write', cause: MetaApiError) {
    super(`settings sync: ${step} of the calling settings failed: ${cause.message}`, {
      status: cause.status,
      ...(cause.metaCode === undefined ? {} : { metaCode: cause.metaCode }),
      ...(cause.details === undefined ? {} : { details: cause.details }),
      ...(cause.errorData === undefined ? {} : { errorData: cause.errorData }),
      cause,
    });
    this.name = 'SettingsSyncError';
    this.step = step;
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
/** `"04:00"` and `"0400"` are the same time (§3.6: one Meta sample shows the colon). */
const time = (v: unknown): string => String(v ?? '').replace(':', '');

/** A canonical form of a `call_hours` object for comparison (order-insensitive, times without colon). */
function canonicalHours(v: unknown): string {
  if (!isObj(v)) return 'none';
  const entries = (list: unknown, a: string, b: string, key: string): string[] =>
    (Array.isArray(list) ? list : [])
      .filter(isObj)
      .map((e) => `${String(e[key])} ${time(e[a])}-${time(e[b])}`)
      .sort();
  return JSON.stringify({
    status: v.status,
    tz: v.timezone_id,
    weekly: entries(v.weekly_operating_hours, 'open_time', 'close_time', 'day_of_week'),
    holidays: entries(v.holiday_schedule, 'start_time', 'end_time', 'date'),
  });
}

/** A canonical form of a `voicemail` object for comparison. */
function canonicalVoicemail(v: unknown): string {
  if (!isObj(v)) return 'none';
  const d = isObj(v.audio) && isObj(v.audio.default) ? v.audio.default : {};
  return JSON.stringify({
    status: v.status,
    triggers: Array.isArray(v.triggers) ? [...v.triggers].map(String).sort() : [],
    media: d.announcement_media_id,
    timeout: d.timeout_seconds,
  });
}

/**
 * The `calling` patch that brings Meta's current settings to the desired ones, or `undefined` when they already
 * match (pure). `call_hours` is sent whole (Meta replaces it on write, §3.6).
 *
 * @param current - `calling` from `GET /{PHONE_NUMBER_ID}/settings`
 * @param desired - from configuration
 * @param now - the current time (past holidays are not sent)
 * @throws {@link CallHoursMappingError} when the business hours cannot be expressed for Meta.
 */
export function callSettingsPatch(
  current: Record<string, unknown>,
  desired: DesiredCallSettings,
  now: Date,
): { call_hours?: MetaCallHours; voicemail?: MetaVoicemail } | undefined {
  const patch: { call_hours?: MetaCallHours; voicemail?: MetaVoicemail } = {};
  const have = current.call_hours;
  if (desired.businessHours) {
    const want = toMetaCallHours(desired.businessHours, now);
    if (canonicalHours(want) !== canonicalHours(have)) patch.call_hours = want;
  } else if (isObj(have) && have.status === 'ENABLED') {
    // No hours configured: open 24/7, so Meta's schedule is switched off (`DISABLED` = open 24/7, §3.6). The
    // holidays are left out: past ones would be refused, and they do not apply while disabled.
    patch.call_hours = {
      status: 'DISABLED',
      timezone_id: String(have.timezone_id),
      weekly_operating_hours: (Array.isArray(have.weekly_operating_hours)
        ? have.weekly_operating_hours
        : []) as MetaCallHours['weekly_operating_hours'],
    };
  }
  const vm = current.voicemail;
  if (desired.voicemail) {
    const want = toMetaVoicemail(desired.voicemail);
    if (canonicalVoicemail(want) !== canonicalVoicemail(vm)) patch.voicemail = want;
  } else if (isObj(vm) && vm.status === 'ENABLED') {
    patch.voicemail = { status: 'DISABLED' };
  }
  return Object.keys(patch).length === 0 ? undefined : patch;
}

/** Outcome of {@link syncCallSettings}. */
export interface SettingsSyncResult {
  /** The `calling` objects written, or undefined when Meta already matched (no POST sent). */
  readonly written?: { call_hours?: MetaCallHours; voicemail?: MetaVoicemail };
}

/**
 * Reads Meta's calling settings, and writes `call_hours` / `voicemail` only when they differ from the
 * configuration (idempotent: a second run sends no POST).
 *
 * @throws {@link SettingsSyncError} (with Meta's code) when Meta refuses or cannot be reached within the timeout;
 *   {@link CallHoursMappingError} when the hours cannot be expressed for Meta.
 */
export async function syncCallSettings(input: {
  readonly graph: GraphClientOptions;
  readonly phoneNumberId: string;
  readonly desired: DesiredCallSettings;
  readonly now: Date;
}): Promise<SettingsSyncResult> {
  const path = `${encodeURIComponent(input.phoneNumberId)}/settings`;
  let current: Record<string, unknown>;
  try {
    current = await graphRequest(input.graph, 'GET', path, undefined, { what: 'Graph GET settings' });
  } catch (err) {
    throw err instanceof MetaApiError ? new SettingsSyncError('read', err) : err;
  }
  const patch = callSettingsPatch(isObj(current.calling) ? current.calling : {}, input.desired, input.now);
  if (!patch) return {};
  try {
    await graphRequest(input.graph, 'POST', path, { calling: patch }, { what: 'Graph POST settings' });
  } catch (err) {
    throw err instanceof MetaApiError ? new SettingsSyncError('write', err) : err;
  }
  return { written: patch };
}
