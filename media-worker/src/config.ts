/**
 * Configuration of the media worker, the only reader of the environment for it. In AWS the CDK
 * stack fills the task's environment from SSM; locally `npm start` does. Invalid settings fail at
 * start-up naming the key.
 */
import { availableParallelism, hostname } from 'node:os';
import { z } from 'zod';
import { ConfigError } from '#core/errors.ts';
import { parseVoicemailSetting } from '#core/meta/call-settings.ts';
import { type CallOptIn, type CallOptIns, optInProblem } from '#core/meta/opt-ins.ts';
import { PERMISSION_LIMIT_PROFILES, type PermissionLimits, permissionLimitsFor } from '#core/permissions/ledger.ts';
import { parameterKeys, readSettings, type SettingSpec } from '#core/settings.ts';

const sipUri = z.string().regex(/^sips?:[^\s]+$/, 'a sip: or sips: URI');
const positiveInt = z.coerce.number().int().positive();

/** Settings and their documentation. */
export const WORKER_SETTINGS = {
  WORKER_ID: {
    schema: z
      .string()
      .regex(/^[\w.-]{1,64}$/)
      .optional(),
    doc: 'Unique id of this worker. In ECS the image sets the ECS task id; elsewhere the default is host name and process id.',
  },
  MAX_CALLS_PER_WORKER: {
    schema: positiveInt.max(2000),
    doc: 'Calls this worker bridges at once; a full worker leaves jobs for others.',
    default: '100',
  },
  MEDIA_THREADS: {
    schema: z.union([z.literal('auto'), z.coerce.number().int().min(0).max(64)]),
    doc: "Media threads: each call's media (WhatsApp leg, RTP session, bridge) runs on one of this many worker threads, pinned there for the call, while SIP and the call logic stay on the main thread; a thread takes at most its share of MAX_CALLS_PER_WORKER (rounded up) and a new call goes to the thread with the fewest calls. One per vCPU uses every core: the stack sets it to the task's vCPUs; `auto` is the host's available parallelism. 0 runs the media on the main thread (local mode and tests).",
    default: '0',
  },
  SIP_TARGET_URI: {
    schema: sipUri,
    doc: 'SIP URI calls are placed to, e.g. sip:agent@pbx.example.com:5060;transport=tcp.',
  },
  SIP_FAILOVER_URIS: {
    schema: z.string().optional(),
    doc: 'Comma-separated SIP URIs tried in order when the target times out or answers 5xx.',
  },
  SIP_USERNAME: { schema: z.string().optional(), doc: 'Digest username for the SIP target.' },
  SIP_PASSWORD: { schema: z.string().optional(), doc: 'Digest password for the SIP target.', secret: true },
  SIP_BIND_ADDRESS: { schema: z.ipv4(), doc: 'Address the SIP stack binds.', default: '127.0.0.1' },
  SIP_PORT: { schema: z.coerce.number().int().min(1).max(65535), doc: 'SIP port (UDP and TCP).', default: '5060' },
  SIP_TRANSPORTS: {
    schema: z.string().regex(/^(udp|tcp|tls)(,(udp|tcp|tls))*$/),
    doc: 'Transports to listen on.',
    default: 'udp,tcp',
  },
  SIP_TLS_PORT: {
    schema: z.coerce.number().int().min(1).max(65535),
    doc: 'SIP over TLS port, when `tls` is in SIP_TRANSPORTS.',
    default: '5061',
  },
  SIP_TLS_CERT_FILE: {
    schema: z.string().optional(),
    doc: 'PEM certificate file for SIP over TLS (required with `tls`).',
  },
  SIP_TLS_KEY_FILE: {
    schema: z.string().optional(),
    doc: 'PEM private key file for SIP over TLS (required with `tls`).',
    secret: true,
  },
  SIP_TLS_CA_FILE: {
    schema: z.string().optional(),
    doc: "PEM file of CAs trusted for the PBX's TLS certificate, in addition to the default ones (Node's bundle and NODE_EXTRA_CA_CERTS); for a PBX certificate from a private CA. In-process stack only: drachtio-server reads its own trust store.",
  },
  SIP_TLS_VERIFY: {
    schema: z.enum(['true', 'false']).transform((v) => v === 'true'),
    doc: "Outgoing SIP over TLS (a `sips:` target or `;transport=tls`): `true` sends the target's host name as SNI and refuses a PBX whose certificate does not chain to a trusted CA or is not for that name (the target fails with 503 `TLS failed: …` and the next one is tried). With SIP_STACK=drachtio, drachtio-server 0.9.4 can neither send SNI nor verify a server certificate by name, so TLS targets are refused unless this is `false`. `false` is for a lab only: the PBX is not authenticated, and a warning is logged at start.",
    default: 'true',
  },
  SIP_FROM_DOMAIN: {
    schema: z.string().optional(),
    doc: 'Domain of the From URI. Default: the SIP bind or public address.',
  },
  SIP_STACK: {
    schema: z.enum(['inprocess', 'drachtio']),
    doc: 'SIP stack: `inprocess` (the `sip` package inside the worker, for local mode) or `drachtio` (drachtio-srf connected to a drachtio-server at DRACHTIO_HOST:DRACHTIO_PORT, which owns the SIP sockets; SIP_BIND_ADDRESS, SIP_PORT, SIP_TRANSPORTS and SIP_TLS_* then describe nothing the worker binds).',
    default: 'inprocess',
  },
  DRACHTIO_HOST: {
    schema: z.string().min(1),
    doc: 'Address of the drachtio-server the worker connects to as an application (SIP_STACK=drachtio).',
    default: '127.0.0.1',
  },
  DRACHTIO_PORT: {
    schema: z.coerce.number().int().min(1).max(65535),
    doc: "drachtio-server's application (admin) TCP port (SIP_STACK=drachtio).",
    default: '9022',
  },
  DRACHTIO_SECRET: {
    schema: z.string().min(1).optional(),
    doc: 'Shared secret drachtio-server expects from applications; required with SIP_STACK=drachtio.',
    secret: true,
  },
  SIP_RING_TIMEOUT_SECONDS: {
    schema: positiveInt.max(300),
    doc: "How long the agent may ring before the bridge gives up. A user-initiated call never rings longer than what is left of Meta's answer window (30 s after Meta's connect, less 2 s for the accept), so the agent never answers a call Meta has already ended.",
    default: '45',
  },
  SIP_SESSION_EXPIRES_SECONDS: {
    schema: positiveInt.min(90).max(86_400),
    doc: "SIP session timers (RFC 4028): the Session-Expires the bridge asks for on the INVITEs it sends, with `Supported: timer`. The PBX may shorten it (down to 90 s, the bridge's Min-SE; a 422 with a larger Min-SE is retried once with it) and says who refreshes: when it names the bridge, the bridge refreshes at half the interval (UPDATE when the PBX allows it, else re-INVITE); when it refreshes itself and stops, the bridge sends BYE a little before expiry (the interval less min(32 s, a third)) and the call ends as the SIP side gone. Calls the PBX places follow the interval in its INVITE.",
    default: '1800',
  },
  VOICEMAIL: {
    schema: z.string().optional(),
    doc: "Meta voicemail, the same JSON as the control plane's VOICEMAIL (one SSM parameter serves both). With the TIMEOUT trigger Meta diverts a call not accepted within timeoutSeconds, so the agent rings at most timeoutSeconds after Meta's connect, less 2 s for the accept. Unset: voicemail off.",
  },
  EARLY_MEDIA_ACCEPT: {
    schema: z.enum(['true', 'false']).transform((v) => v === 'true'),
    doc: "User-initiated calls: `true` accepts the WhatsApp call at the agent's 183 with SDP, so the PBX's early media (ringback, announcements) reaches the caller; the caller's call timer then starts at the 183, not when the agent answers. `false`: the caller hears WhatsApp's own ringing, the call is accepted at the agent's 200 and early media is dropped. Either way nothing reaches Meta before `accept` has returned (WhatsApp clients take the first media packet as the answer).",
    default: 'false',
  },
  SIP_X_HEADERS: {
    schema: z.string().optional(),
    doc: 'Which X-headers carry call context, as header=field pairs. Default: X-WA-Caller=callerNumber,X-WA-User-Id=userId,X-WA-Display-Name=displayName,X-WA-Call-Id=callId,X-WA-Phone-Number-Id=phoneNumberId,X-WA-CTA-Payload=ctaPayload,X-WA-Deeplink-Payload=deeplinkPayload.',
  },
  CODEC_ORDER: {
    schema: z.string().regex(/^(opus|PCMU|PCMA)(,(opus|PCMU|PCMA))*$/),
    doc: 'Codecs offered to the SIP endpoint, in order.',
    default: 'opus,PCMU,PCMA',
  },
  SIP_SRTP: {
    schema: z.enum(['off', 'optional', 'required']),
    doc: "SRTP on the PBX leg, keyed by SDES (RFC 4568: `a=crypto` in the SDP, suite AES_CM_128_HMAC_SHA1_80, a fresh key per call; RTCP too). `off`: plain RTP; a PBX's `RTP/SAVP` offer is refused 488. `required`: we offer `RTP/SAVP` and an answer without a usable key ends the call; a PBX's offer without one (`RTP/AVP` without `a=crypto`, or keys we cannot use) is refused 488. `optional`: best effort, as Asterisk's `media_encryption_optimistic` and baresip's `mediaenc=srtp` do it (RFC 4568 itself has no \"SRTP if you can\"): we offer `RTP/AVP` with `a=crypto`, and the PBX's answer decides (a key: SRTP; none: plain RTP); a PBX's offer with a usable key gets SRTP, one without plain RTP. Only meaningful over SIP TLS: over UDP or TCP the key crosses the network in clear text.",
    default: 'off',
  },
  TRANSCODE_JITTER_MS: {
    schema: z.coerce
      .number()
      .int()
      .refine(
        (v) => v === 0,
        'must be 0: the de-jitter buffer for transcoded audio was removed; transcoding encodes each 20 ms as it arrives and WhatsApp de-jitters (unset this key)',
      ),
    doc: 'Retired: must be 0 or unset. Transcoding (G.711 at the PBX) encodes each 20 ms as it arrives and leaves de-jittering to WhatsApp; the optional de-jitter buffer was removed, and a non-zero value stops the worker at start-up.',
    default: '0',
  },
  TRANSCODE_OPUS_COMPLEXITY: {
    schema: z.coerce.number().int().min(0).max(10),
    doc: 'Transcoding: libopus encoder complexity 0–10 at 8 kHz. Higher costs more CPU per call (see README § Performance).',
    default: '1',
  },
  OPUS_ALLOW_WASM: {
    schema: z.enum(['true', 'false']).transform((v) => v === 'true'),
    doc: "Start even when libopus runs as WebAssembly (the native addon of @evan/opus did not load): transcoding then costs several times the CPU. By default the worker refuses to start, naming the addon's load error.",
    default: 'false',
  },
  RTP_BIND_ADDRESS: { schema: z.ipv4(), doc: 'Address RTP and WebRTC sockets bind.', default: '127.0.0.1' },
  RTP_PORT_MIN: { schema: positiveInt.max(65534), doc: 'Lowest RTP port for the SIP leg.', default: '20000' },
  RTP_PORT_MAX: { schema: positiveInt.max(65535), doc: 'Highest RTP port for the SIP leg.', default: '30000' },
  PUBLIC_ADDRESS: { schema: z.ipv4().optional(), doc: 'Public IPv4 advertised in SDP and ICE (behind cloud NAT).' },
  SIP_ADVERTISED_ADDRESS: {
    schema: z.union([z.enum(['public', 'private']), z.ipv4()]),
    doc: "The address the SIP leg advertises (Via, Contact, From domain and the SIP SDP's `c=`): `public` (PUBLIC_ADDRESS, else the bind address), `private` (the bind addresses: a PBX over VPN or Direct Connect), or an IPv4 (e.g. behind your own NAT). The WhatsApp leg always advertises PUBLIC_ADDRESS: ICE towards Meta must be public.",
    default: 'public',
  },
  META_PHONE_NUMBER_ID: {
    schema: z.string().regex(/^\d+$/, 'digits').optional(),
    doc: "Meta's phone number id of the business number; needed for calls the PBX starts.",
  },
  META_BUSINESS_NUMBER: {
    schema: z
      .string()
      .regex(/^\d{6,15}$/, 'digits as Meta writes them')
      .optional(),
    doc: 'The business number (digits); needed for calls the PBX starts.',
  },
  PBX_ALLOWED_SOURCES: {
    schema: z.string().optional(),
    doc: 'Comma-separated addresses or CIDRs allowed to start WhatsApp calls with an INVITE to sip:+<number>@bridge. Unset: the PBX cannot start calls.',
  },
  BIC_BLOCKED_COUNTRIES: {
    schema: z
      .string()
      .regex(/^(NONE|[A-Z]{2}(,[A-Z]{2})*)$/, 'comma-separated ISO country codes, or NONE')
      .optional(),
    doc: "Countries whose business numbers may not place WhatsApp calls (Meta blocks them, 138013). Default: US,CA,EG,VN,NG (Meta's Jun 2026 list; Turkey is no longer excluded).",
  },
  META_PERMISSION_LIMITS: {
    schema: z.enum(PERMISSION_LIMIT_PROFILES),
    doc: "Which of Meta's call-permission limits the ledger applies: production (1 request per 24 h, 2 per 7 days, revoke after 4 unanswered calls) or sandbox for sandbox and public test numbers (25 per 24 h, 100 per 7 days, revoke after 10; OVR26). Set the same value on the control plane and the worker.",
    default: 'production',
  },
  PERMISSION_RECONCILE_SECONDS: {
    schema: z.coerce.number().int().min(0),
    doc: "PBX-started calls: a permission missing from the ledger, or not valid and last compared with Meta longer ago than this, is checked with Meta's call_permissions before the call is refused (0: always ask).",
    default: '300',
  },
  PBX_SIP_USERNAME: {
    schema: z.string().min(1).optional(),
    doc: 'Digest username the PBX must present on INVITEs (with PBX_SIP_PASSWORD); checked besides PBX_ALLOWED_SOURCES.',
  },
  PBX_SIP_PASSWORD: {
    schema: z.string().min(8).optional(),
    doc: 'Digest password for INVITEs from the PBX.',
    secret: true,
  },
  PBX_SIP_REALM: {
    schema: z.string().min(1),
    doc: 'Digest realm of the challenge to the PBX.',
    default: 'wa-sip-bridge',
  },
  MAX_CONCURRENT_CALLS: {
    schema: positiveInt.max(1000),
    doc: 'Concurrent calls per business number (Meta caps at 1000); also enforced for PBX-started calls.',
    default: '1000',
  },
  META_GRAPH_URL: { schema: z.url(), doc: 'Graph API base with version.' },
  META_ACCESS_TOKEN: { schema: z.string().min(1), doc: 'Graph API access token.', secret: true },
  META_RECORDING: {
    schema: z.string().optional(),
    doc: 'Meta-side call recording, opted in on every accept and connect: JSON {"purpose","announcement_language"}; purpose ≤ 250 characters in the announcement language, announcement_language one of en_US, es_ES, nl (M-REC). Both parties hear a legal announcement. Unset: not recorded.',
  },
  META_TRANSCRIPTION: {
    schema: z.string().optional(),
    doc: 'Meta-side call transcription, opted in on every accept and connect: JSON {"purpose","announcement_language"} as META_RECORDING (with both set, Meta announces the recording\'s purpose). Unset: not transcribed.',
  },
  META_GRAPH_TIMEOUT_MS: {
    schema: positiveInt.max(20_000),
    doc: 'Timeout of each Graph API request.',
    default: '5000',
  },
  PERMISSIONS_TABLE: {
    schema: z.string().min(3).optional(),
    doc: 'DynamoDB permissions table (the ledger checked before PBX-started calls).',
  },
  CALLS_TABLE: { schema: z.string().min(3), doc: 'DynamoDB calls table.' },
  WORKERS_TABLE: { schema: z.string().min(3), doc: 'DynamoDB workers table.' },
  CALL_JOBS_QUEUE_URL: { schema: z.url(), doc: 'SQS queue of call jobs.' },
  SQS_RECEIVE_BATCH: {
    schema: positiveInt.max(10),
    doc: 'Messages asked for per SQS receive. SQS answers a long poll as soon as any message is there; the local emulator waits for a full batch, so local mode uses 1.',
    default: '10',
  },
  CONTROL_QUEUE_PREFIX: {
    schema: z.string().regex(/^[\w-]{1,40}$/),
    doc: 'Name prefix of per-worker control queues.',
    default: 'wa-sip-bridge-worker',
  },
  AWS_REGION: { schema: z.string().min(1), doc: 'AWS region.', default: 'us-east-1' },
  DYNAMODB_ENDPOINT: { schema: z.url().optional(), doc: 'DynamoDB endpoint override (local mode only).' },
  SQS_ENDPOINT: { schema: z.url().optional(), doc: 'SQS endpoint override (local mode only).' },
  WORKER_DEAD_AFTER_SECONDS: {
    schema: positiveInt.max(600),
    doc: 'A worker silent this long is dead; a live worker ends its calls at Meta and in the store.',
    default: '30',
  },
  METRICS_STAGE: {
    schema: z
      .string()
      .regex(/^[\w-]{1,40}$/)
      .optional(),
    doc: 'Stage dimension of the CloudWatch metrics the worker writes (EMF on stdout). Unset: no metrics.',
  },
  TASK_PROTECTION_MINUTES: {
    schema: positiveInt.max(2880),
    doc: 'ECS task scale-in protection period while the worker has calls (refreshed at half of it).',
    default: '120',
  },
  ECS_AGENT_URI: { schema: z.url().optional(), doc: 'Set by ECS: the agent endpoint for task scale-in protection.' },
  ECS_TASK_ARN: {
    schema: z.string().startsWith('arn:').optional(),
    doc: "Set by the image in ECS (task metadata): this worker's task, for the retirement check. Unset: no retirement check.",
  },
  ECS_CLUSTER: {
    schema: z.string().startsWith('arn:').optional(),
    doc: "Set by the image in ECS (task metadata): the task's cluster ARN.",
  },
  WORKER_DEPLOYMENT: {
    schema: z
      .string()
      .regex(/^[\w-]{1,255}:\d+$/)
      .optional(),
    doc: "Set by the image in ECS (task metadata): the task definition as `family:revision`, in the worker's heartbeat.",
  },
  HEALTH_FILE: {
    schema: z.string().startsWith('/').optional(),
    doc: 'A file the worker touches after every heartbeat the workers table accepted (every 5 s); the ECS container health check fails when it is 30 s old. Unset: none.',
  },
  RETIREMENT_CHECK_SECONDS: {
    schema: positiveInt.min(5).max(3600),
    doc: 'In ECS, how often the worker checks whether it should retire (superseded by a new deployment, or surplus after scale-in): it then takes no new calls, finishes its calls, and its scale-in protection drops with the last one so ECS can stop it.',
    default: '30',
  },
  FINISHED_CALL_RETENTION_DAYS: { schema: positiveInt, doc: 'Days finished call records are kept.', default: '30' },
  LOG_LEVEL: {
    schema: z.enum(['debug', 'info', 'warn', 'error', 'DEBUG', 'INFO', 'WARN', 'ERROR']),
    doc: 'Log level.',
    default: 'info',
  },
} as const satisfies Record<string, SettingSpec>;

/** Fields of the call that X-headers can carry. */
export const X_HEADER_FIELDS = [
  'callerNumber',
  'userId',
  'parentUserId',
  'displayName',
  'username',
  'callId',
  'phoneNumberId',
  'businessNumber',
  'ctaPayload',
  'deeplinkPayload',
] as const;
export type XHeaderField = (typeof X_HEADER_FIELDS)[number];

const DEFAULT_X_HEADERS: ReadonlyArray<[string, XHeaderField]> = [
  ['X-WA-Caller', 'callerNumber'],
  ['X-WA-User-Id', 'userId'],
  ['X-WA-Display-Name', 'displayName'],
  ['X-WA-Call-Id', 'callId'],
  ['X-WA-Phone-Number-Id', 'phoneNumberId'],
  ['X-WA-CTA-Payload', 'ctaPayload'],
  ['X-WA-Deeplink-Payload', 'deeplinkPayload'],
];

/** Validated worker configuration. */
export interface WorkerConfig {
  readonly workerId: string;
  readonly maxCalls: number;
  /** Media threads (MEDIA_THREADS); 0: media on the main thread. */
  readonly mediaThreads: number;
  readonly sip: {
    readonly targets: ReadonlyArray<{ uri: string; auth?: { username: string; password: string } }>;
    readonly bindAddress: string;
    readonly port: number;
    readonly transports: ReadonlyArray<'udp' | 'tcp' | 'tls'>;
    readonly tls?: {
      readonly port: number;
      readonly certFile: string;
      readonly keyFile: string;
      /** Extra CAs for outgoing TLS (SIP_TLS_CA_FILE). */
      readonly caFile?: string;
    };
    /** Verify the PBX's certificate chain and name on outgoing TLS (SIP_TLS_VERIFY). */
    readonly tlsVerify: boolean;
    readonly fromDomain: string;
    /** Host of our Via and Contact (SIP_ADVERTISED_ADDRESS); unset: the bind address. */
    readonly advertisedAddress?: string;
    /** Which SipPort adapter runs the SIP leg (SIP_STACK). */
    readonly stack:
      | { readonly kind: 'inprocess' }
      | { readonly kind: 'drachtio'; readonly host: string; readonly port: number; readonly secret: string };
    readonly ringTimeoutMs: number;
    /** The Session-Expires our INVITEs ask for (SIP_SESSION_EXPIRES_SECONDS, RFC 4028). */
    readonly sessionExpiresS: number;
    /** Meta diverts an unaccepted user-initiated call to voicemail this long after its connect (VOICEMAIL TIMEOUT). */
    readonly voicemailTimeoutMs?: number;
    /** User-initiated calls: accept at Meta on a 183 with SDP, so early media reaches the caller (EARLY_MEDIA_ACCEPT). */
    readonly earlyMediaAccept?: boolean;
    readonly xHeaders: ReadonlyArray<readonly [string, XHeaderField]>;
  };
  readonly media: {
    readonly codecs: ReadonlyArray<'opus' | 'PCMU' | 'PCMA'>;
    /** SDES-SRTP on the PBX leg (SIP_SRTP); absent: `off`. */
    readonly srtp?: 'off' | 'optional' | 'required';
    readonly bindAddress: string;
    readonly portMin: number;
    readonly portMax: number;
    readonly publicAddress?: string;
    /** The SIP leg's RTP address in its SDP (SIP_ADVERTISED_ADDRESS); unset: the RTP socket's bind address. */
    readonly sipAddress?: string;
    /** Options of the transcoding path, handed to every `MediaBridge`. */
    readonly transcode: { readonly opusComplexity: number };
  };
  /** OPUS_ALLOW_WASM: start on libopus's WebAssembly build. */
  readonly opusAllowWasm: boolean;
  readonly meta: {
    readonly graphUrl: string;
    readonly accessToken: string;
    readonly timeoutMs: number;
    /** Recording/transcription opt-ins sent on accept and connect (M-REC). */
    readonly optIns: CallOptIns;
  };
  readonly tables: { readonly calls: string; readonly workers: string; readonly permissions?: string };
  readonly callJobsQueueUrl: string;
  readonly controlQueuePrefix: string;
  readonly sqsReceiveBatch: number;
  readonly deadAfterMs: number;
  readonly metricsStage?: string;
  readonly taskProtection?: { readonly agentUri: string; readonly minutes: number };
  /** HEALTH_FILE: touched after every accepted heartbeat. */
  readonly healthFile?: string;
  /** In ECS: what the retirement check reads (ops/retirement.ts). */
  readonly ecs?: {
    readonly taskArn: string;
    readonly cluster: string;
    readonly deployment?: string;
    readonly retirementCheckMs: number;
  };
  /** The business line PBX-started calls use. */
  readonly line?: { readonly phoneNumberId: string; readonly businessNumber: string };
  readonly pbxAllowedSources: readonly string[];
  /** Digest credentials PBX INVITEs must carry, when configured. */
  readonly pbxAuth?: { readonly realm: string; readonly username: string; readonly password: string };
  readonly maxConcurrentCalls: number;
  /** Undefined: the rules' default list. */
  readonly bicBlockedCountries?: readonly string[];
  /** A ledger entry older than this (ms) is compared with Meta's `call_permissions` before a refusal. */
  readonly permissionReconcileMs: number;
  /** META_PERMISSION_LIMITS: Meta's production or sandbox/test-number permission limits (OVR26). */
  readonly permissionLimits: PermissionLimits;
  readonly aws: { readonly region: string; readonly dynamodbEndpoint?: string; readonly sqsEndpoint?: string };
  readonly finishedRetentionSeconds: number;
  readonly logLevel: string;
}

/**
 * Reads and validates the worker configuration.
 * @throws {@link ConfigError} naming the first missing or invalid key.
 */
export function loadWorkerConfig(env: Record<string, string | undefined> = process.env): WorkerConfig {
  const r = readSettings(WORKER_SETTINGS, env) as Record<string, unknown>;
  const get = <T>(k: keyof typeof WORKER_SETTINGS) => r[k] as T;
  if (
    (get<string | undefined>('SIP_USERNAME') === undefined) !==
    (get<string | undefined>('SIP_PASSWORD') === undefined)
  ) {
    throw new ConfigError('SIP_PASSWORD', 'SIP_USERNAME and SIP_PASSWORD go together');
  }
  if (
    (get<string | undefined>('PBX_SIP_USERNAME') === undefined) !==
    (get<string | undefined>('PBX_SIP_PASSWORD') === undefined)
  ) {
    throw new ConfigError('PBX_SIP_PASSWORD', 'PBX_SIP_USERNAME and PBX_SIP_PASSWORD go together');
  }
  if (get<string>('SIP_STACK') === 'drachtio' && get<string | undefined>('DRACHTIO_SECRET') === undefined)
    throw new ConfigError('DRACHTIO_SECRET', 'is required with SIP_STACK=drachtio');
  if (get<number>('RTP_PORT_MIN') >= get<number>('RTP_PORT_MAX'))
    throw new ConfigError('RTP_PORT_MAX', 'must be above RTP_PORT_MIN');
  const auth = get<string | undefined>('SIP_USERNAME')
    ? { username: get<string>('SIP_USERNAME'), password: get<string>('SIP_PASSWORD') }
    : undefined;
  const uris = [
    get<string>('SIP_TARGET_URI'),
    ...(get<string | undefined>('SIP_FAILOVER_URIS') ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  ];
  for (const uri of uris)
    if (!/^sips?:/.test(uri)) throw new ConfigError('SIP_FAILOVER_URIS', `${uri} is not a sip: URI`);
  const transports = get<string>('SIP_TRANSPORTS').split(',') as Array<'udp' | 'tcp' | 'tls'>;
  if (
    transports.includes('tls') &&
    (!get<string | undefined>('SIP_TLS_CERT_FILE') || !get<string | undefined>('SIP_TLS_KEY_FILE'))
  ) {
    throw new ConfigError(
      get<string | undefined>('SIP_TLS_CERT_FILE') ? 'SIP_TLS_KEY_FILE' : 'SIP_TLS_CERT_FILE',
      'is required when SIP_TRANSPORTS includes tls',
    );
  }
  const xHeaders = parseXHeaders(get<string | undefined>('SIP_X_HEADERS'));
  const recording = parseOptIn('META_RECORDING', get<string | undefined>('META_RECORDING'));
  const transcription = parseOptIn('META_TRANSCRIPTION', get<string | undefined>('META_TRANSCRIPTION'));
  const publicAddress = get<string | undefined>('PUBLIC_ADDRESS');
  // The SIP leg's advertised address, apart from the WhatsApp leg's (ICE must be public).
  const advertise = get<string>('SIP_ADVERTISED_ADDRESS');
  const sipAddress = advertise === 'public' ? publicAddress : advertise === 'private' ? undefined : advertise;
  return {
    workerId:
      get<string | undefined>('WORKER_ID') ?? `${hostname()}-${process.pid}`.replace(/[^\w.-]/g, '-').slice(0, 64),
    maxCalls: get<number>('MAX_CALLS_PER_WORKER'),
    mediaThreads:
      get<number | 'auto'>('MEDIA_THREADS') === 'auto' ? availableParallelism() : get<number>('MEDIA_THREADS'),
    sip: {
      targets: uris.map((uri) => ({ uri, ...(auth ? { auth } : {}) })),
      bindAddress: get<string>('SIP_BIND_ADDRESS'),
      port: get<number>('SIP_PORT'),
      transports,
      ...(transports.includes('tls')
        ? {
            tls: {
              port: get<number>('SIP_TLS_PORT'),
              certFile: get<string>('SIP_TLS_CERT_FILE'),
              keyFile: get<string>('SIP_TLS_KEY_FILE'),
              ...(get<string | undefined>('SIP_TLS_CA_FILE') ? { caFile: get<string>('SIP_TLS_CA_FILE') } : {}),
            },
          }
        : {}),
      tlsVerify: get<boolean>('SIP_TLS_VERIFY'),
      fromDomain: get<string | undefined>('SIP_FROM_DOMAIN') ?? sipAddress ?? get<string>('SIP_BIND_ADDRESS'),
      ...(sipAddress ? { advertisedAddress: sipAddress } : {}),
      stack:
        get<string>('SIP_STACK') === 'drachtio'
          ? {
              kind: 'drachtio',
              host: get<string>('DRACHTIO_HOST'),
              port: get<number>('DRACHTIO_PORT'),
              secret: get<string>('DRACHTIO_SECRET'),
            }
          : { kind: 'inprocess' },
      ringTimeoutMs: get<number>('SIP_RING_TIMEOUT_SECONDS') * 1000,
      sessionExpiresS: get<number>('SIP_SESSION_EXPIRES_SECONDS'),
      ...voicemailTimeout(get<string | undefined>('VOICEMAIL')),
      earlyMediaAccept: get<boolean>('EARLY_MEDIA_ACCEPT'),
      xHeaders,
    },
    media: {
      codecs: get<string>('CODEC_ORDER').split(',') as Array<'opus' | 'PCMU' | 'PCMA'>,
      srtp: get<'off' | 'optional' | 'required'>('SIP_SRTP'),
      bindAddress: get<string>('RTP_BIND_ADDRESS'),
      portMin: get<number>('RTP_PORT_MIN'),
      portMax: get<number>('RTP_PORT_MAX'),
      ...(publicAddress ? { publicAddress } : {}),
      ...(sipAddress ? { sipAddress } : {}),
      transcode: {
        opusComplexity: get<number>('TRANSCODE_OPUS_COMPLEXITY'),
      },
    },
    opusAllowWasm: get<boolean>('OPUS_ALLOW_WASM'),
    meta: {
      graphUrl: get<string>('META_GRAPH_URL'),
      accessToken: get<string>('META_ACCESS_TOKEN'),
      timeoutMs: get<number>('META_GRAPH_TIMEOUT_MS'),
      optIns: {
        ...(recording === undefined ? {} : { recording }),
        ...(transcription === undefined ? {} : { transcription }),
      },
    },
    tables: {
      calls: get<string>('CALLS_TABLE'),
      workers: get<string>('WORKERS_TABLE'),
      ...(get<string | undefined>('PERMISSIONS_TABLE') ? { permissions: get<string>('PERMISSIONS_TABLE') } : {}),
    },
    callJobsQueueUrl: get<string>('CALL_JOBS_QUEUE_URL'),
    controlQueuePrefix: get<string>('CONTROL_QUEUE_PREFIX'),
    sqsReceiveBatch: get<number>('SQS_RECEIVE_BATCH'),
    deadAfterMs: get<number>('WORKER_DEAD_AFTER_SECONDS') * 1000,
    ...(get<string | undefined>('METRICS_STAGE') ? { metricsStage: get<string>('METRICS_STAGE') } : {}),
    ...(get<string | undefined>('HEALTH_FILE') ? { healthFile: get<string>('HEALTH_FILE') } : {}),
    ...(get<string | undefined>('ECS_TASK_ARN') && get<string | undefined>('ECS_CLUSTER')
      ? {
          ecs: {
            taskArn: get<string>('ECS_TASK_ARN'),
            cluster: get<string>('ECS_CLUSTER'),
            ...(get<string | undefined>('WORKER_DEPLOYMENT') ? { deployment: get<string>('WORKER_DEPLOYMENT') } : {}),
            retirementCheckMs: get<number>('RETIREMENT_CHECK_SECONDS') * 1000,
          },
        }
      : {}),
    ...(get<string | undefined>('ECS_AGENT_URI')
      ? { taskProtection: { agentUri: get<string>('ECS_AGENT_URI'), minutes: get<number>('TASK_PROTECTION_MINUTES') } }
      : {}),
    ...(get<string | undefined>('META_PHONE_NUMBER_ID') && get<string | undefined>('META_BUSINESS_NUMBER')
      ? {
          line: {
            phoneNumberId: get<string>('META_PHONE_NUMBER_ID'),
            businessNumber: get<string>('META_BUSINESS_NUMBER'),
          },
        }
      : {}),
    pbxAllowedSources: (get<string | undefined>('PBX_ALLOWED_SOURCES') ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    maxConcurrentCalls: get<number>('MAX_CONCURRENT_CALLS'),
    ...(get<string | undefined>('PBX_SIP_USERNAME')
      ? {
          pbxAuth: {
            realm: get<string>('PBX_SIP_REALM'),
            username: get<string>('PBX_SIP_USERNAME'),
            password: get<string>('PBX_SIP_PASSWORD'),
          },
        }
      : {}),
    permissionReconcileMs: get<number>('PERMISSION_RECONCILE_SECONDS') * 1000,
    permissionLimits: permissionLimitsFor(get<'production' | 'sandbox'>('META_PERMISSION_LIMITS')),
    ...(get<string | undefined>('BIC_BLOCKED_COUNTRIES') === undefined
      ? {}
      : {
          bicBlockedCountries:
            get<string>('BIC_BLOCKED_COUNTRIES') === 'NONE' ? [] : get<string>('BIC_BLOCKED_COUNTRIES').split(','),
        }),
    aws: {
      region: get<string>('AWS_REGION'),
      ...(get<string | undefined>('DYNAMODB_ENDPOINT') ? { dynamodbEndpoint: get<string>('DYNAMODB_ENDPOINT') } : {}),
      ...(get<string | undefined>('SQS_ENDPOINT') ? { sqsEndpoint: get<string>('SQS_ENDPOINT') } : {}),
    },
    finishedRetentionSeconds: get<number>('FINISHED_CALL_RETENTION_DAYS') * 86_400,
    logLevel: get<string>('LOG_LEVEL').toLowerCase(),
  };
}

/** A recording/transcription opt-in setting, checked with Meta's rules (M-REC) so a bad one fails at start-up. */
function parseOptIn(key: 'META_RECORDING' | 'META_TRANSCRIPTION', raw: string | undefined): CallOptIn | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new ConfigError(key, 'is not valid JSON');
  }
  const problem = optInProblem(json);
  if (problem !== undefined) throw new ConfigError(key, problem);
  const v = json as { purpose: string; announcement_language: string };
  return { status: 'ENABLED', purpose: v.purpose, announcement_language: v.announcement_language };
}

function parseXHeaders(spec: string | undefined): ReadonlyArray<readonly [string, XHeaderField]> {
  if (spec === undefined) return DEFAULT_X_HEADERS;
  if (spec.trim() === '') return [];
  return spec.split(',').map((pair) => {
    const [name, field] = pair.split('=').map((s) => s.trim());
    if (!name || !/^X-[\w-]+$/i.test(name))
      throw new ConfigError('SIP_X_HEADERS', `header name ${name} must start with X-`);
    if (!X_HEADER_FIELDS.includes(field as XHeaderField))
      throw new ConfigError('SIP_X_HEADERS', `unknown field ${field}; one of ${X_HEADER_FIELDS.join(', ')}`);
    return [name, field as XHeaderField] as const;
  });
}

/**
 * Worker settings the stack sets on the task (or deliberately leaves unset). Ports and transports
 * must match the security group; addresses are discovered per task; `WORKER_ID` must differ per
 * task (one parameter would give every task the same id). In AWS the SIP leg runs through the
 * task's drachtio-server sidecar (`SIP_STACK=drachtio` on 127.0.0.1:9022 with a secret the stack
 * generates), which also terminates SIP over TLS, so the worker's own TLS files stay unset.
 */
export const WORKER_WIRED = [
  'WORKER_ID',
  'MAX_CALLS_PER_WORKER',
  'MEDIA_THREADS',
  'SIP_BIND_ADDRESS',
  'SIP_PORT',
  'SIP_TRANSPORTS',
  'SIP_TLS_PORT',
  'SIP_TLS_CERT_FILE',
  'SIP_TLS_KEY_FILE',
  'SIP_STACK',
  'DRACHTIO_HOST',
  'DRACHTIO_PORT',
  'DRACHTIO_SECRET',
  'RTP_BIND_ADDRESS',
  'RTP_PORT_MIN',
  'RTP_PORT_MAX',
  'PUBLIC_ADDRESS',
  'CALLS_TABLE',
  'WORKERS_TABLE',
  'PERMISSIONS_TABLE',
  'CALL_JOBS_QUEUE_URL',
  'CONTROL_QUEUE_PREFIX',
  'AWS_REGION',
  'DYNAMODB_ENDPOINT',
  'SQS_ENDPOINT',
  'METRICS_STAGE',
  'TASK_PROTECTION_MINUTES',
  'ECS_AGENT_URI',
  'ECS_TASK_ARN',
  'ECS_CLUSTER',
  'WORKER_DEPLOYMENT',
  'HEALTH_FILE',
  'SIP_ADVERTISED_ADDRESS',
] as const satisfies ReadonlyArray<keyof typeof WORKER_SETTINGS>;

/** Keys the media worker reads from SSM. */
export const WORKER_PARAMETER_KEYS: readonly string[] = parameterKeys(WORKER_SETTINGS, WORKER_WIRED);

/** `voicemailTimeoutMs` when VOICEMAIL sets the TIMEOUT trigger (Corrections item 4). */
function voicemailTimeout(raw: string | undefined): { voicemailTimeoutMs?: number } {
  if (raw === undefined) return {};
  const v = parseVoicemailSetting(raw);
  return v.triggers.includes('TIMEOUT') && v.timeoutSeconds !== undefined
    ? { voicemailTimeoutMs: v.timeoutSeconds * 1000 }
    : {};
}
