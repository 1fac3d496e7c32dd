/**
 * Configuration of the local stack (`npm start`), the only reader of the environment for it.
 * Every setting has a local default, so a fresh clone runs with none set. When both
 * `META_GRAPH_URL` and `META_ACCESS_TOKEN` are set, the bridge talks to that Graph API and the
 * built-in Meta simulator is not started.
 */
import { z } from 'zod';
import { ConfigError } from '#core/errors.ts';

/** Validated local-stack settings. */
export interface LocalConfig {
  readonly host: string;
  readonly port: number;
  /** Port of the Meta simulator's Graph API (0 = any free port). */
  readonly simulatorPort: number;
  readonly meta: {
    readonly appSecret: string;
    readonly verifyToken: string;
    readonly phoneNumberId: string;
    readonly businessNumber: string;
    readonly wabaId: string;
    /** Set: use this Graph API instead of the simulator. */
    readonly external?: { readonly graphUrl: string; readonly accessToken: string };
  };
  readonly controlApiKey: string;
  /** Settings handed through to the control plane unchanged (validated there). */
  readonly controlPlane: Record<string, string | undefined>;
  readonly logLevel: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  /** The media worker's SIP side. */
  readonly sip: {
    /** Where calls go. Unset: the built-in SIP agent at `agentAddress:agentPort`. */
    readonly targetUri?: string;
    readonly agentAddress: string;
    readonly agentPort: number;
    /** The worker's own SIP port on 127.0.0.1. */
    readonly workerPort: number;
  };
  /** Worker settings passed through unchanged (validated by the worker's config). */
  readonly worker: Record<string, string | undefined>;
  /** The environment child processes inherit (PATH, HOME…). */
  readonly inheritedEnv: Record<string, string | undefined>;
}

const schema = z.object({
  HOST: z.string().default('127.0.0.1'),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  META_SIMULATOR_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  META_APP_SECRET: z.string().min(1).default('local-app-secret'),
  META_VERIFY_TOKEN: z.string().min(1).default('local-verify-token'),
  CONTROL_API_KEY: z.string().min(16).default('local-control-api-key'),
  META_PHONE_NUMBER_ID: z.string().regex(/^\d+$/).default('436666719526789'),
  // A UK drama-range number: business-initiated calling is not available for US numbers (§4.4).
  META_BUSINESS_NUMBER: z
    .string()
    .regex(/^\d{6,15}$/)
    .default('447700900123'),
  META_WABA_ID: z.string().regex(/^\d+$/).default('366634483210360'),
  META_GRAPH_URL: z.url().optional(),
  META_ACCESS_TOKEN: z.string().min(1).optional(),
  LOG_LEVEL: z.enum(['DEBUG', 'INFO', 'WARN', 'ERROR']).default('INFO'),
  SIP_TARGET_URI: z
    .string()
    .regex(/^sips?:/, 'a sip: or sips: URI')
    .optional(),
  LOCAL_SIP_AGENT_PORT: z.coerce.number().int().min(1).max(65535).default(5080),
  SIP_PORT: z.coerce.number().int().min(1).max(65535).default(5060),
});

/** Worker keys the local stack passes through when set. */
const WORKER_PASS_THROUGH = [
  'SIP_FAILOVER_URIS',
  'SIP_USERNAME',
  'SIP_PASSWORD',
  'SIP_TRANSPORTS',
  'SIP_RING_TIMEOUT_SECONDS',
  'SIP_X_HEADERS',
  'CODEC_ORDER',
  'MAX_CALLS_PER_WORKER',
  'RTP_PORT_MIN',
  'RTP_PORT_MAX',
  'PBX_ALLOWED_SOURCES',
  'BIC_BLOCKED_COUNTRIES',
];

/** Control-plane keys the local stack passes through when set. */
const PASS_THROUGH = [
  'BUSINESS_HOURS',
  'AFTER_HOURS_SIP_TARGET',
  'MAX_CONCURRENT_CALLS',
  'STALE_CONNECT_SECONDS',
  'META_GRAPH_TIMEOUT_MS',
  'BIC_BLOCKED_COUNTRIES',
  'PERMISSION_RECONCILE_SECONDS',
];

/**
 * Reads the local-stack configuration.
 * @throws {@link ConfigError} naming the invalid key.
 */
export function loadLocalConfig(env: Record<string, string | undefined> = process.env): LocalConfig {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ''));
  const parsed = schema.safeParse(cleaned);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(String(issue?.path[0] ?? '?'), issue?.message ?? 'invalid');
  }
  const c = parsed.data;
  if ((c.META_GRAPH_URL === undefined) !== (c.META_ACCESS_TOKEN === undefined)) {
    throw new ConfigError(
      c.META_GRAPH_URL === undefined ? 'META_GRAPH_URL' : 'META_ACCESS_TOKEN',
      'set both META_GRAPH_URL and META_ACCESS_TOKEN to use a real Graph API, or neither for the simulator',
    );
  }
  return {
    host: c.HOST,
    port: c.PORT,
    simulatorPort: c.META_SIMULATOR_PORT ?? (c.PORT === 0 ? 0 : c.PORT + 1),
    meta: {
      appSecret: c.META_APP_SECRET,
      verifyToken: c.META_VERIFY_TOKEN,
      phoneNumberId: c.META_PHONE_NUMBER_ID,
      businessNumber: c.META_BUSINESS_NUMBER,
      wabaId: c.META_WABA_ID,
      ...(c.META_GRAPH_URL && c.META_ACCESS_TOKEN
        ? { external: { graphUrl: c.META_GRAPH_URL, accessToken: c.META_ACCESS_TOKEN } }
        : {}),
    },
    controlApiKey: c.CONTROL_API_KEY,
    controlPlane: Object.fromEntries(PASS_THROUGH.map((k) => [k, cleaned[k]])),
    logLevel: c.LOG_LEVEL,
    sip: {
      ...(c.SIP_TARGET_URI ? { targetUri: c.SIP_TARGET_URI } : {}),
      agentAddress: '127.0.0.2',
      agentPort: c.LOCAL_SIP_AGENT_PORT,
      workerPort: c.SIP_PORT,
    },
    worker: Object.fromEntries(WORKER_PASS_THROUGH.map((k) => [k, cleaned[k]])),
    inheritedEnv: env,
  };
}
