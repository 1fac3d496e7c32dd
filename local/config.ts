/**
 * Configuration of the local stack (`npm start`), the only reader of the environment for it.
 * Every setting has a local default, so a fresh clone runs with none set. When both
 * `META_GRAPH_URL` and `META_ACCESS_TOKEN` are set, the bridge talks to that Graph API and the
 * built-in Meta simulator is not started.
 */
import { z } from 'zod';
import { ConfigError } from '#core/errors.ts';
import { readSettings, type SettingSpec } from '#core/settings.ts';

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
  /** With SIP_STACK=drachtio: the drachtio-server binary the local stack starts (DRACHTIO_SERVER_BIN). */
  readonly drachtioServerBin?: string;
  /** The environment child processes inherit (PATH, HOME…). */
  readonly inheritedEnv: Record<string, string | undefined>;
}

/**
 * The local stack's own settings (environment variables of `npm start`, each with a local default). README's
 * local-mode table is generated from them (`npm run docs:settings`). Worker and control-plane settings the local
 * stack passes through are listed in {@link WORKER_PASS_THROUGH} and {@link PASS_THROUGH}.
 */
export const LOCAL_SETTINGS = {
  HOST: {
    schema: z.string().min(1),
    default: '127.0.0.1',
    doc: 'Address the HTTP API and the Meta simulator listen on.',
  },
  PORT: {
    schema: z.coerce.number().int().min(0).max(65535),
    default: '3000',
    doc: 'Port of the HTTP API (webhook, control API, health); 0: any free port.',
  },
  META_SIMULATOR_PORT: {
    schema: z.coerce.number().int().min(0).max(65535).optional(),
    doc: 'Port of the Meta simulator (Graph API and its /_sim control API). Default: PORT+1 (3001), or any free port when PORT is 0. `npm run sim` looks at 3001 unless SIM_URL says otherwise.',
  },
  META_APP_SECRET: {
    schema: z.string().min(1),
    default: 'local-app-secret',
    secret: true,
    doc: 'App secret the simulator signs webhooks with and the webhook handler verifies.',
  },
  META_VERIFY_TOKEN: {
    schema: z.string().min(1),
    default: 'local-verify-token',
    secret: true,
    doc: 'Verify token of the webhook GET handshake.',
  },
  CONTROL_API_KEY: {
    schema: z.string().min(16),
    default: 'local-control-api-key',
    secret: true,
    doc: 'Bearer token of the control API (16 characters or more).',
  },
  META_PHONE_NUMBER_ID: {
    schema: z.string().regex(/^\d+$/),
    default: '436666719526789',
    doc: "Meta's phone number id of the simulated business number.",
  },
  // A UK drama-range number: business-initiated calling is not available for US numbers (§4.4).
  META_BUSINESS_NUMBER: {
    schema: z.string().regex(/^\d{6,15}$/),
    default: '447700900123',
    doc: 'The simulated business number (digits).',
  },
  META_WABA_ID: {
    schema: z.string().regex(/^\d+$/),
    default: '366634483210360',
    doc: 'WhatsApp Business Account id in the simulated webhooks.',
  },
  META_GRAPH_URL: {
    schema: z.url().optional(),
    doc: 'With META_ACCESS_TOKEN: talk to this Graph API instead of starting the Meta simulator.',
  },
  META_ACCESS_TOKEN: {
    schema: z.string().min(1).optional(),
    secret: true,
    doc: 'With META_GRAPH_URL: the Graph API access token.',
  },
  LOG_LEVEL: { schema: z.enum(['DEBUG', 'INFO', 'WARN', 'ERROR']), default: 'INFO', doc: 'Log level of every part.' },
  SIP_TARGET_URI: {
    schema: z
      .string()
      .regex(/^sips?:/, 'a sip: or sips: URI')
      .optional(),
    doc: 'Where the media worker sends INVITEs (your PBX, a SIP phone). Unset: the built-in SIP agent.',
  },
  DRACHTIO_SERVER_BIN: {
    schema: z.string().min(1).optional(),
    doc: "With SIP_STACK=drachtio: the drachtio-server binary the local stack starts on 127.0.0.1 (its SIP on the worker's SIP_PORT), e.g. the prebuilt test tool `../shared/tools/drachtio-server/bin/drachtio-server`. Unset: the worker connects to DRACHTIO_HOST/DRACHTIO_PORT with DRACHTIO_SECRET.",
  },
  LOCAL_SIP_AGENT_PORT: {
    schema: z.coerce.number().int().min(1).max(65535),
    default: '5080',
    doc: 'SIP port (UDP and TCP) of the built-in SIP agent on 127.0.0.2, started when SIP_TARGET_URI is unset.',
  },
  SIP_PORT: {
    schema: z.coerce.number().int().min(1).max(65535),
    default: '5060',
    doc: "The media worker's SIP port (UDP and TCP) on 127.0.0.1; calls the PBX starts go to `sip:+<number>@127.0.0.1:<SIP_PORT>`.",
  },
} as const satisfies Record<string, SettingSpec>;

/** Worker keys the local stack passes through when set. */
const WORKER_PASS_THROUGH: readonly string[] = [
  'SIP_STACK',
  'DRACHTIO_HOST',
  'DRACHTIO_PORT',
  'DRACHTIO_SECRET',
  'SIP_FAILOVER_URIS',
  'SIP_USERNAME',
  'SIP_PASSWORD',
  'SIP_TRANSPORTS',
  'SIP_RING_TIMEOUT_SECONDS',
  'EARLY_MEDIA_ACCEPT',
  'SIP_X_HEADERS',
  'CODEC_ORDER',
  'MAX_CALLS_PER_WORKER',
  'MEDIA_THREADS',
  'RTP_PORT_MIN',
  'RTP_PORT_MAX',
  'PBX_ALLOWED_SOURCES',
  'BIC_BLOCKED_COUNTRIES',
  'PERMISSION_RECONCILE_SECONDS',
  'META_RECORDING',
  'META_TRANSCRIPTION',
  'META_PERMISSION_LIMITS',
  'VOICEMAIL',
];

/** Control-plane keys the local stack passes through when set. */
const PASS_THROUGH: readonly string[] = [
  'BUSINESS_HOURS',
  'AFTER_HOURS_SIP_TARGET',
  'VOICEMAIL',
  'MAX_CONCURRENT_CALLS',
  'STALE_CONNECT_SECONDS',
  'META_GRAPH_TIMEOUT_MS',
  'BIC_BLOCKED_COUNTRIES',
  'PERMISSION_RECONCILE_SECONDS',
  'PERMISSION_REQUEST_TEMPLATE',
  'META_PERMISSION_LIMITS',
];

/** The settings of the two tables `npm start` hands on from its environment (README lists them). */
export const LOCAL_PASS_THROUGH = { controlPlane: PASS_THROUGH, worker: WORKER_PASS_THROUGH } as const;

/**
 * Reads the local-stack configuration.
 * @throws {@link ConfigError} naming the invalid key.
 */
export function loadLocalConfig(env: Record<string, string | undefined> = process.env): LocalConfig {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ''));
  const c = readSettings(LOCAL_SETTINGS, cleaned);
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
    ...(c.DRACHTIO_SERVER_BIN ? { drachtioServerBin: c.DRACHTIO_SERVER_BIN } : {}),
    inheritedEnv: env,
  };
}
