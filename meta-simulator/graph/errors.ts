/**
 * Graph API error bodies as the simulated Meta returns them.
 *
 * Shape (meta-calling-api.md §6):
 * `{ error: { message: '(#<code>) <text>', type: 'OAuthException', code, error_data: { messaging_product: 'whatsapp', details }, error_subcode?, fbtrace_id } }`
 * with the HTTP status from §6's table.
 *
 * Every failure inside the simulator's Graph surface is thrown as a {@link GraphError} and serialised by the
 * server with {@link GraphError.toBody}; helpers below exist for each code the simulator emits so that call sites
 * read like Meta's troubleshooting table.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';

/** The JSON body Meta's Graph API returns on failure. */
export interface GraphErrorBody {
  error: {
    message: string;
    type: 'OAuthException';
    code: number;
    error_data: { messaging_product: 'whatsapp'; details: string } & Record<string, unknown>;
    error_subcode?: number;
    fbtrace_id: string;
  };
}

/** Title text and HTTP status per Graph error code (meta-calling-api.md §6 table; 190 from Graph's OAuth errors). */
export const GRAPH_ERROR_CATALOGUE: Readonly<Record<number, { status: number; title: string }>> = {
  100: { status: 400, title: 'Invalid parameter' },
  190: { status: 401, title: 'Invalid OAuth access token - Cannot parse access token' },
  613: { status: 429, title: 'Calls to this api have exceeded the rate limit.' },
  131009: { status: 400, title: 'Parameter value is not valid' },
  131026: { status: 400, title: 'Message undeliverable' },
  131030: { status: 400, title: 'Recipient phone number not in allowed list' },
  131044: { status: 400, title: 'Payment issue' },
  131047: { status: 400, title: 'Re-engagement message' },
  131055: { status: 400, title: 'Method not allowed' },
  132000: { status: 400, title: 'Number of parameters does not match the expected number of params' },
  132001: { status: 404, title: 'Template name does not exist in the translation' },
  138000: { status: 401, title: 'Calling not enabled' },
  138001: { status: 400, title: 'Receiver is uncallable' },
  138002: { status: 429, title: 'Concurrent calls limit' },
  138003: { status: 400, title: 'Duplicate call' },
  138004: { status: 500, title: 'Connection error' },
  138005: { status: 429, title: 'Call rate limit exceeded' },
  138006: { status: 401, title: 'No approved call permission from the recipient' },
  138007: { status: 500, title: 'Connect timeout' },
  138009: { status: 400, title: 'Call permission request limit hit' },
  138012: { status: 400, title: 'Business initiated calls limit hit' },
  138013: { status: 400, title: 'Business initiated calling not available' },
  138014: { status: 400, title: 'Calling temporarily disabled' },
  138015: { status: 400, title: 'Calling cannot be enabled' },
  138017: { status: 400, title: 'Call permission request not allowed' },
  138018: { status: 400, title: 'Technical prerequisites not met' },
  138019: { status: 400, title: 'Client call setup failed' },
  138020: { status: 400, title: 'Client to relay connection failed' },
  138021: { status: 400, title: 'Client received no media for too long' },
  138022: { status: 400, title: 'Client could not transmit media' },
  138023: { status: 400, title: 'Accepted but no media signals' },
};

/** A fresh `fbtrace_id` (Graph returns an opaque ~11-character base64 token). */
export function newFbtraceId(): string {
  return randomBytes(8).toString('base64url').slice(0, 11);
}

/** Optional extras for a {@link GraphError}. */
export interface GraphErrorOptions {
  /** Override the HTTP status from the catalogue. */
  status?: number;
  /** Override the catalogue title (the text after `(#code) `). */
  title?: string;
  /** `error_subcode`; omitted from the body when undefined. */
  subcode?: number;
  /** Extra members merged into `error_data` (e.g. `limit_expiration_time` for 138012). */
  data?: Record<string, unknown>;
}

/** A Graph API failure: thrown by the simulator's engines, serialised by the server. */
export class GraphError extends Error {
  /** Graph error code, e.g. 100 or 138006. */
  readonly code: number;
  /** HTTP status the server responds with. */
  readonly status: number;
  /** `error_data.details`. */
  readonly details: string;
  /** `error_subcode`, if any. */
  readonly subcode: number | undefined;
  /** Extra `error_data` members. */
  readonly data: Record<string, unknown>;
  /** Title text used in `message`. */
  readonly title: string;

  /** Build an error for `code` with human-readable `details` (goes to `error_data.details`). */
  constructor(code: number, details: string, opts: GraphErrorOptions = {}) {
    const entry = GRAPH_ERROR_CATALOGUE[code];
    const title = opts.title ?? entry?.title ?? 'Unknown error';
    super(`(#${code}) ${title}: ${details}`);
    this.name = 'GraphError';
    this.code = code;
    this.status = opts.status ?? entry?.status ?? 400;
    this.details = details;
    this.subcode = opts.subcode;
    this.data = opts.data ?? {};
    this.title = title;
  }

  /** The exact JSON body Meta would send (a fresh `fbtrace_id` unless one is given). */
  toBody(fbtraceId: string = newFbtraceId()): GraphErrorBody {
    const body: GraphErrorBody = {
      error: {
        message: `(#${this.code}) ${this.title}`,
        type: 'OAuthException',
        code: this.code,
        error_data: { messaging_product: 'whatsapp', details: this.details, ...this.data },
        fbtrace_id: fbtraceId,
      },
    };
    if (this.subcode !== undefined) body.error.error_subcode = this.subcode;
    return body;
  }
}

/** 100 — invalid parameter (also used for SDP validation; details say what was wrong). §3.1, §3.2, §6. */
export function invalidParameter(details: string, data?: Record<string, unknown>): GraphError {
  return new GraphError(100, details, data ? { data } : {});
}

/**
 * 100 / subcode 33 — Graph's "object does not exist" for an unknown phone-number id or path.
 * (Graph's standard "Unsupported post/get request" wording.)
 */
export function unknownObject(id: string, method: 'GET' | 'POST'): GraphError {
  return new GraphError(
    100,
    `Unsupported ${method.toLowerCase()} request. Object with ID '${id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation.`,
    { subcode: 33 },
  );
}

/** 190 — missing or wrong Bearer token (HTTP 401). */
export function invalidAccessToken(missing: boolean): GraphError {
  return new GraphError(
    190,
    missing ? 'An access token is required to request this resource.' : 'The access token could not be decrypted',
  );
}

/** 613 — `call_permissions` rate limit (HTTP 429). §3.3. */
export function permissionsRateLimited(maxPerSecond: number): GraphError {
  return new GraphError(613, `call_permissions is limited to ${maxPerSecond} requests per second per phone number`);
}

/**
 * 131047 — a free-form message outside the 24 h customer-service window (Meta's re-engagement error; the reference
 * names no code for PERM26/BTN26's window rule, 131047 is what Cloud API answers). Use a template instead.
 */
export function serviceWindowClosed(kind: string): GraphError {
  return new GraphError(
    131047,
    `Message failed to send because more than 24 hours have passed since the customer last replied to this number. A free-form ${kind} message needs an open customer-service window; send a template instead.`,
  );
}

/** 131055 — Graph calling refused because the number is SIP-enabled. §5.3. */
export function sipEnabled(): GraphError {
  return new GraphError(
    131055,
    'Calling API is not allowed on this phone number because SIP is enabled. Disable SIP in calling settings to use the Graph calling API.',
  );
}

/** 138000 — calling is not enabled on the number. §3.6. */
export function callingNotEnabled(): GraphError {
  return new GraphError(138000, 'Calling is not enabled for this phone number. Enable it via the settings API.');
}

/** 138002 — concurrent-call cap for the business number. §4.2. */
export function concurrentCallLimit(limit: number): GraphError {
  return new GraphError(138002, `The business phone number has reached the limit of ${limit} concurrent calls`);
}

/** 138003 — one active call per business↔user pair. §4.2. */
export function duplicateCall(existingCallId: string): GraphError {
  return new GraphError(138003, `A call is already ongoing with this user (${existingCallId})`);
}

/** 138006 — no approved call permission. §3.1, §4.1. */
export function noCallPermission(): GraphError {
  return new GraphError(138006, 'The recipient has not approved call permission for this business phone number');
}

/** 138009 — permission request limit (1/24 h, 2/7 d); `next_allowed_time` is Unix seconds. §4.1. */
export function permissionRequestLimit(details: string, nextAllowedTime: number): GraphError {
  return new GraphError(138009, details, { data: { next_allowed_time: nextAllowedTime } });
}

/** 138012 — connected business-initiated calls per 24 h limit; `limit_expiration_time` is Unix seconds. §4.1. */
export function bicDailyLimit(maxAllowed: number, limitExpirationTime: number): GraphError {
  return new GraphError(
    138012,
    `Limit of ${maxAllowed} connected business initiated calls per 24 hours reached for this user`,
    { data: { limit_expiration_time: limitExpirationTime } },
  );
}

/** 138013 — business-initiated calling unavailable for the business number's country. §4.4. */
export function bicUnavailable(country: string): GraphError {
  return new GraphError(138013, `Business initiated calling is not available for business phone numbers in ${country}`);
}

/** 138017 — permission request refused because a permanent permission exists. §3.4. */
export function permanentPermissionExists(): GraphError {
  return new GraphError(138017, 'The user has already granted permanent call permission to this business');
}

/** An entry of a `terminate` webhook's `errors[]` (§2.7). */
export interface CallErrorEntry {
  code: number;
  message: string;
  href: string;
  error_data: { details: string };
}

/** Build a `terminate` webhook `errors[]` entry for codes like 138021 (§2.7, §6). */
export function callErrorEntry(code: number, details: string): CallErrorEntry {
  return {
    code,
    message: GRAPH_ERROR_CATALOGUE[code]?.title ?? 'Call failed',
    href: 'https://developers.facebook.com/documentation/business-messaging/whatsapp/calling/troubleshooting',
    error_data: { details },
  };
}
