/**
 * Configuration of the control plane (the Lambda functions). This module is the only reader of
 * the environment for the functions; in AWS the CDK stack fills the environment from SSM
 * Parameter Store, locally `npm start` does. Invalid or missing settings fail fast, naming the key.
 */
import { z } from 'zod';
import { ssmSettings } from '#adapters/aws/ssm-parameters.ts';
import { type BusinessHours, businessHoursSchema } from '#core/checks/business-hours.ts';
import { ConfigError } from '#core/errors.ts';
import { parseVoicemailSetting, type VoicemailConfig } from '#core/meta/call-settings.ts';
import { PERMISSION_LIMIT_PROFILES, type PermissionLimits, permissionLimitsFor } from '#core/permissions/ledger.ts';
import { parameterKeys, readSettings, type SettingSpec } from '#core/settings.ts';

const digits = z.string().regex(/^\d{6,15}$/, 'digits only, as Meta writes them (country code, no +)');
const positiveInt = z.coerce.number().int().positive();

/** The settings, their validation and documentation (the README's table is generated from them). */
export const CONTROL_PLANE_SETTINGS = {
  META_APP_SECRET: {
    schema: z.string().min(1),
    doc: 'Meta app secret; verifies X-Hub-Signature-256 on webhooks.',
    secret: true,
  },
  META_VERIFY_TOKEN: {
    schema: z.string().min(1),
    doc: 'Token Meta echoes in the webhook GET handshake.',
    secret: true,
  },
  CONTROL_API_KEY: {
    schema: z.string().min(16, 'at least 16 characters'),
    doc: 'Bearer token of the control API.',
    secret: true,
  },
  META_PHONE_NUMBER_ID: {
    schema: z.string().regex(/^\d+$/, 'digits'),
    doc: "Meta's phone number id of the business number served.",
  },
  META_BUSINESS_NUMBER: { schema: digits, doc: 'The business number, digits as Meta writes them (e.g. 13175551399).' },
  META_GRAPH_URL: { schema: z.url(), doc: 'Graph API base with version, e.g. https://graph.facebook.com/v23.0.' },
  META_ACCESS_TOKEN: { schema: z.string().min(1), doc: 'System-user access token for the Graph API.', secret: true },
  META_GRAPH_TIMEOUT_MS: {
    schema: positiveInt.max(20_000),
    doc: 'Timeout of each Graph API request.',
    default: '5000',
  },
  CALLS_TABLE: { schema: z.string().min(3), doc: 'DynamoDB table of calls, history and admission counters.' },
  PERMISSIONS_TABLE: { schema: z.string().min(3), doc: 'DynamoDB table of call permissions.' },
  WORKERS_TABLE: { schema: z.string().min(3), doc: 'DynamoDB table of media workers.' },
  WORKER_DEAD_AFTER_SECONDS: {
    schema: positiveInt.max(600),
    doc: "A worker silent this long is not live: `GET /v1/workers` leaves it out. Set the media workers' value.",
    default: '30',
  },
  CALL_JOBS_QUEUE_URL: { schema: z.url(), doc: 'SQS queue of call jobs for the media workers.' },
  AWS_REGION: { schema: z.string().min(1), doc: 'AWS region (set by Lambda).', default: 'us-east-1' },
  DYNAMODB_ENDPOINT: { schema: z.url().optional(), doc: 'DynamoDB endpoint override (local mode only).' },
  SQS_ENDPOINT: { schema: z.url().optional(), doc: 'SQS endpoint override (local mode only).' },
  BUSINESS_HOURS: {
    schema: z.string().optional(),
    doc: 'Business hours as JSON: {"timeZone","weekly":[{"day","open","close"}],"holidays":[{"date","start?","end?"}]}. Pushed to Meta\'s call_hours by the settings sync (at most 2 slots a day), so Meta screens after-hours callers; the bridge checks them too. Unset: always open (Meta\'s call_hours switched off).',
  },
  AFTER_HOURS_SIP_TARGET: {
    schema: z
      .string()
      .regex(/^sips?:/, 'a sip: or sips: URI')
      .optional(),
    doc: 'SIP URI for calls that reach the bridge outside business hours (Meta normally screens them first via call_hours). Unset: such calls are rejected at Meta.',
  },
  VOICEMAIL: {
    schema: z.string().optional(),
    doc: 'Meta voicemail as JSON: {"triggers":["REJECT"|"TIMEOUT"],"announcementMediaId","timeoutSeconds"(0-30, required with TIMEOUT)}; pushed to Meta by the settings sync. Set the same value for the media workers: their ring timeout stays below timeoutSeconds. Unset: voicemail off.',
  },
  MAX_CONCURRENT_CALLS: {
    schema: positiveInt.max(1000),
    doc: 'Concurrent calls per business number (Meta caps at 1000).',
    default: '1000',
  },
  STALE_CONNECT_SECONDS: {
    schema: positiveInt,
    doc: 'A connect webhook older than this is stale and ignored.',
    default: '60',
  },
  BIC_BLOCKED_COUNTRIES: {
    schema: z
      .string()
      .regex(/^(NONE|[A-Z]{2}(,[A-Z]{2})*)$/, 'comma-separated ISO 3166-1 alpha-2 codes (e.g. US,CA) or NONE'),
    doc: "Countries whose business numbers may not place business-initiated calls or send permission requests. Default: Meta's Jun 2026 list (US, Canada, Egypt, Vietnam, Nigeria; Turkey is no longer excluded). Meta refuses blocked countries itself (138013). NONE: no country.",
    default: 'US,CA,EG,VN,NG',
  },
  META_PERMISSION_LIMITS: {
    schema: z.enum(PERMISSION_LIMIT_PROFILES),
    doc: "Which of Meta's call-permission limits the ledger applies: production (1 request per 24 h, 2 per 7 days, revoke after 4 unanswered calls) or sandbox for sandbox and public test numbers (25 per 24 h, 100 per 7 days, revoke after 10; OVR26). Set the same value on the control plane and the worker.",
    default: 'production',
  },
  PERMISSION_RECONCILE_SECONDS: {
    schema: z.coerce.number().int().min(0),
    doc: "A permission missing from the ledger, or not valid and last compared with Meta longer ago than this, is checked with Meta's call_permissions before a business call is refused; GET /v1/permissions/{userId} re-reads it after this too (0: always).",
    default: '300',
  },
  PERMISSION_REQUEST_TEMPLATE: {
    schema: z
      .string()
      .regex(
        /^[a-z0-9_]{1,512}:[A-Za-z_]{2,15}$/,
        'name:language of an approved template, e.g. call_permission_request:en',
      )
      .optional(),
    doc: 'The approved call-permission template (one with a call_permission_request component), as name:language. POST /v1/permissions/{userId}/request with {"kind":"template"} sends it; a free-form request refused because the customer-service window is closed (Meta 131047) answers 409 naming it. Unset: templates are named per request.',
  },
  FINISHED_CALL_RETENTION_DAYS: {
    schema: positiveInt,
    doc: 'Days finished call records are kept (DynamoDB TTL).',
    default: '30',
  },
  METRICS_STAGE: {
    schema: z
      .string()
      .regex(/^[\w-]{1,40}$/)
      .optional(),
    doc: 'Stage dimension of the CloudWatch metrics (EMF in the logs). Unset: no metrics.',
  },
  LOG_LEVEL: { schema: z.enum(['DEBUG', 'INFO', 'WARN', 'ERROR']), doc: 'Log level.', default: 'INFO' },
} as const satisfies Record<string, SettingSpec>;

/** The validated control-plane configuration. */
export interface ControlPlaneConfig {
  readonly meta: {
    readonly appSecret: string;
    readonly verifyToken: string;
    readonly graphUrl: string;
    readonly accessToken: string;
    readonly graphTimeoutMs: number;
  };
  readonly controlApiKey: string;
  readonly line: { readonly phoneNumberId: string; readonly businessNumber: string };
  readonly tables: { readonly calls: string; readonly permissions: string; readonly workers: string };
  readonly callJobsQueueUrl: string;
  readonly aws: { readonly region: string; readonly dynamodbEndpoint?: string; readonly sqsEndpoint?: string };
  readonly businessHours?: BusinessHours;
  readonly afterHours: { readonly action: 'reject' } | { readonly action: 'route'; readonly sipTarget: string };
  /** Meta voicemail the settings sync pushes; undefined = off. */
  readonly voicemail?: VoicemailConfig;
  readonly maxConcurrentCalls: number;
  /** Business-initiated calls: countries of business numbers Meta blocks, and ledger reconciliation age. */
  readonly businessCalls: { readonly blockedCountries: readonly string[]; readonly reconcileAfterMs: number };
  /** META_PERMISSION_LIMITS: Meta's production or sandbox/test-number permission limits (OVR26). */
  readonly permissionLimits: PermissionLimits;
  readonly staleConnectMs: number;
  /** WORKER_DEAD_AFTER_SECONDS: a worker whose last heartbeat is older is not live. */
  readonly workerDeadAfterMs: number;
  /** PERMISSION_REQUEST_TEMPLATE: the approved permission-request template. */
  readonly permissionTemplate?: { readonly name: string; readonly language: string };
  readonly finishedRetentionSeconds: number;
  readonly logLevel: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  readonly metricsStage?: string;
}

/**
 * Reads and validates the configuration.
 *
 * @param env - the environment; defaults to `process.env`.
 * @throws {@link ConfigError} naming the first missing or invalid key.
 */
export function loadControlPlaneConfig(env: Record<string, string | undefined> = process.env): ControlPlaneConfig {
  const r = readSettings(CONTROL_PLANE_SETTINGS, env);
  let businessHours: BusinessHours | undefined;
  if (r.BUSINESS_HOURS !== undefined) {
    let json: unknown;
    try {
      json = JSON.parse(r.BUSINESS_HOURS);
    } catch {
      throw new ConfigError('BUSINESS_HOURS', 'is not valid JSON');
    }
    const parsed = businessHoursSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new ConfigError('BUSINESS_HOURS', `${issue?.path.join('.') || '(root)'}: ${issue?.message}`);
    }
    businessHours = parsed.data;
  }
  const voicemail = r.VOICEMAIL === undefined ? undefined : parseVoicemailSetting(r.VOICEMAIL);
  return {
    meta: {
      appSecret: r.META_APP_SECRET,
      verifyToken: r.META_VERIFY_TOKEN,
      graphUrl: r.META_GRAPH_URL,
      accessToken: r.META_ACCESS_TOKEN,
      graphTimeoutMs: r.META_GRAPH_TIMEOUT_MS,
    },
    controlApiKey: r.CONTROL_API_KEY,
    line: { phoneNumberId: r.META_PHONE_NUMBER_ID, businessNumber: r.META_BUSINESS_NUMBER },
    tables: { calls: r.CALLS_TABLE, permissions: r.PERMISSIONS_TABLE, workers: r.WORKERS_TABLE },
    callJobsQueueUrl: r.CALL_JOBS_QUEUE_URL,
    aws: {
      region: r.AWS_REGION,
      ...(r.DYNAMODB_ENDPOINT === undefined ? {} : { dynamodbEndpoint: r.DYNAMODB_ENDPOINT }),
      ...(r.SQS_ENDPOINT === undefined ? {} : { sqsEndpoint: r.SQS_ENDPOINT }),
    },
    ...(businessHours === undefined ? {} : { businessHours }),
    afterHours:
      r.AFTER_HOURS_SIP_TARGET === undefined
        ? { action: 'reject' }
        : { action: 'route', sipTarget: r.AFTER_HOURS_SIP_TARGET },
    ...(voicemail === undefined ? {} : { voicemail }),
    maxConcurrentCalls: r.MAX_CONCURRENT_CALLS,
    businessCalls: {
      blockedCountries: r.BIC_BLOCKED_COUNTRIES === 'NONE' ? [] : r.BIC_BLOCKED_COUNTRIES.split(','),
      reconcileAfterMs: r.PERMISSION_RECONCILE_SECONDS * 1000,
    },
    staleConnectMs: r.STALE_CONNECT_SECONDS * 1000,
    workerDeadAfterMs: r.WORKER_DEAD_AFTER_SECONDS * 1000,
    permissionLimits: permissionLimitsFor(r.META_PERMISSION_LIMITS),
    ...(r.PERMISSION_REQUEST_TEMPLATE === undefined
      ? {}
      : {
          permissionTemplate: {
            name: r.PERMISSION_REQUEST_TEMPLATE.split(':')[0]!,
            language: r.PERMISSION_REQUEST_TEMPLATE.split(':')[1]!,
          },
        }),
    finishedRetentionSeconds: r.FINISHED_CALL_RETENTION_DAYS * 86_400,
    logLevel: r.LOG_LEVEL,
    ...(r.METRICS_STAGE === undefined ? {} : { metricsStage: r.METRICS_STAGE }),
  };
}

/**
 * The configuration as a Lambda sees it in AWS: settings the stack wires into the environment
 * (table names, queue URL, `SSM_PREFIX`…) plus every operator setting stored in SSM Parameter Store
 * under `SSM_PREFIX` (secrets as SecureString, which CloudFormation cannot put into a Lambda's
 * environment). The environment wins, so the stack's wiring cannot be overridden from SSM.
 *
 * @throws {@link ConfigError} naming the first missing or invalid key.
 */
export async function loadControlPlaneConfigFromAws(
  env: Record<string, string | undefined> = process.env,
): Promise<ControlPlaneConfig> {
  const prefix = env.SSM_PREFIX;
  const fromSsm = prefix ? await ssmSettings(prefix, { keys: Object.keys(CONTROL_PLANE_SETTINGS) }) : {};
  const wired = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  return loadControlPlaneConfig({ ...fromSsm, ...wired });
}

/** Control-plane settings the stack sets on the functions. */
export const CONTROL_PLANE_WIRED = [
  'CALLS_TABLE',
  'PERMISSIONS_TABLE',
  'WORKERS_TABLE',
  'CALL_JOBS_QUEUE_URL',
  'AWS_REGION',
  'DYNAMODB_ENDPOINT',
  'SQS_ENDPOINT',
  'METRICS_STAGE',
] as const satisfies ReadonlyArray<keyof typeof CONTROL_PLANE_SETTINGS>;

/** Keys the control plane reads from SSM (every schema key the stack does not wire). */
export const CONTROL_PLANE_PARAMETER_KEYS: readonly string[] = parameterKeys(
  CONTROL_PLANE_SETTINGS,
  CONTROL_PLANE_WIRED,
);
