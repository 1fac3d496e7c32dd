/**
 * Meta-side call recording and transcription opt-ins (2026; meta-calling-api.md §2.11 and Corrections item 7,
 * page key M-REC). The objects go on `accept` (user-initiated) and `connect` (business-initiated); Meta refuses the
 * request (error 100) unless, when ENABLED, `purpose` is given, at most 250 characters, and `announcement_language`
 * is on Meta's fixed list. The bridge checks the same rules when its configuration loads, so a bad opt-in fails at
 * start-up instead of on every call.
 */

/**
 * `announcement_language` values accepted (M-REC: "a fixed list"). The reference does not reproduce Meta's list;
 * these are the locales it names: `en_US` (REF26/REC samples), `es_ES` and `nl` (TRX: accepted, announced in English).
 */
export const ANNOUNCEMENT_LANGUAGES: readonly string[] = ['en_US', 'es_ES', 'nl'];

/** Maximum length of an opt-in's `purpose` (M-REC). */
export const MAX_OPT_IN_PURPOSE = 250;

/** One opt-in as Meta takes it on `accept`/`connect`. */
export interface CallOptIn {
  readonly status: 'ENABLED';
  /** Why the call is recorded or transcribed, in the announcement language; ≤ 250 characters. */
  readonly purpose: string;
  readonly announcement_language: string;
}

/** The opt-ins the bridge sends on every `accept` and `connect`; absent members are not sent (Meta: off). */
export interface CallOptIns {
  readonly recording?: CallOptIn;
  readonly transcription?: CallOptIn;
}

/**
 * Why an opt-in would be refused by Meta, or `undefined` when it is valid (M-REC).
 *
 * @param value - the parsed setting, `{ purpose, announcement_language }`
 */
export function optInProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return 'must be a JSON object {"purpose": "…", "announcement_language": "en_US"}';
  }
  const v = value as Record<string, unknown>;
  const unknown = Object.keys(v).filter((k) => k !== 'purpose' && k !== 'announcement_language');
  if (unknown.length > 0) return `unknown member ${unknown[0]}; only purpose and announcement_language`;
  if (typeof v.purpose !== 'string' || v.purpose.trim() === '')
    return 'purpose is required (Meta: mandatory when ENABLED)';
  if (v.purpose.length > MAX_OPT_IN_PURPOSE) {
    return `purpose must be at most ${MAX_OPT_IN_PURPOSE} characters (got ${v.purpose.length})`;
  }
  if (typeof v.announcement_language !== 'string' || !ANNOUNCEMENT_LANGUAGES.includes(v.announcement_language)) {
    return `announcement_language must be one of ${ANNOUNCEMENT_LANGUAGES.join(', ')} (got ${String(v.announcement_language)})`;
  }
  return undefined;
}
