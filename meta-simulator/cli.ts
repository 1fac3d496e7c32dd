/**
 * Command line for the Meta simulator: `npm run sim -- <command> [options]`.
 *
 * - `serve`: run a standalone simulator (flags or `SIM_*` env vars).
 * - `call`, `hangup`, `dtmf`, `tone`, `heard`, `calls`, `call-info`, `script`, `permission`, `text`, `account-update`: client commands
 *   against a running simulator's `/_sim` control API (`--sim-url` or `SIM_URL`, default `http://127.0.0.1:3001`,
 *   where `npm start` serves it with the default `PORT`; its banner prints the URL otherwise).
 *
 * Every command prints JSON on stdout; logs go to stderr. Secrets are never printed.
 *
 * @module
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pino from 'pino';

/**
 * Default port of `serve` and default target of the client commands: the local stack serves the simulator on
 * PORT+1, 3001 with the default PORT.
 */
export const DEFAULT_SIM_PORT = 3001;

/** Where the client commands go without `--sim-url` or `SIM_URL`. */
export const DEFAULT_SIM_URL = `http://127.0.0.1:${DEFAULT_SIM_PORT}`;

/**
 * The command that places a first call against the simulator at `simBaseUrl` (what `npm start` prints as
 * "try it"): `SIM_URL=… ` goes in front unless the simulator is where the CLI looks by default.
 */
export function tryItCommand(simBaseUrl: string): string {
  const command = 'npm run sim -- call --from 5511987654321 --name Ana';
  return simBaseUrl.replace(/\/+$/, '') === DEFAULT_SIM_URL ? command : `SIM_URL=${simBaseUrl} ${command}`;
}

/** Where the CLI writes and which environment it reads (injectable for tests). */
export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  env: Record<string, string | undefined>;
  /** `serve` resolves this promise to shut down (default: SIGINT/SIGTERM). */
  shutdown?: Promise<void>;
  /** HTTP client of the client commands (default: the global `fetch`). */
  fetch?: typeof fetch;
}

const USAGE = `Usage: npm run sim -- <command> [options]

Commands:
  serve      --webhook-url URL --app-secret S --verify-token T --access-token T
             [--pnid ID] [--number DIGITS] [--waba-id ID] [--port N] [--graph-version v23.0]
             [--no-verify] [--unanswered-ms N (30000-60000, default 30000)] [--log-level info]
             (env: SIM_WEBHOOK_URL, SIM_APP_SECRET, SIM_VERIFY_TOKEN, SIM_ACCESS_TOKEN, SIM_PNID, SIM_NUMBER,
              SIM_WABA_ID, SIM_PORT)
  call       --from DIGITS [--user-id BSUID] [--name N] [--username U] [--deeplink-payload P] [--cta-payload P]
  hangup     <call-id>
  dtmf       <call-id> <digits>
  tone       <call-id> <hz> [dbfs]      the user plays a tone (dbfs ≤ 0, default -20), e.g. tone <id> 440 -10
  heard      <call-id>                  what the user hears now: dominant hz and dbfs of the last second
  calls
  call-info  <call-id>
  script     <user> [--permission-reply accept_temporary|accept_permanent|reject|none]
             [--bic-answer accept|reject|no_answer] [--bic-answer-delay-ms N]
             [--accepted-delay-ms N] [--accepted-duplicates N] [--accepted-lost]
             (faults of the ACCEPTED status of business-initiated calls: late, duplicated, lost)
  permission <user> [temporary|permanent|no_permission]
  text       <user> <message…>          the user texts the business (opens the 24 h customer-service window)
  account-update violation <LOW_BUSINESS_INITIATED_CALLING_QUALITY|LOW_USER_INITIATED_CALLING_QUALITY|
                            USER_INITIATED_CALLS_LOW_PICKUP_RATE>
  account-update restriction <RESTRICTED_BUSINESS_INITIATED_CALLING|RESTRICTED_USER_INITIATED_CALLING|
                              RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN> [--days N (default 7)]
             Meta's account_update webhook (quality warning / 7-day calling pause)
  fail       <call-id> <code> [--details TEXT]
             the user's WhatsApp client fails: Meta terminates FAILED with errors[code] (M-TRB): 138019 set-up,
             138020 relay connection, 138021 no media received, 138022 cannot send media, 138023 no media signals
  number-faults [--test-allow-list D1,D2|none] [--payment-issue on|off]
             [--calling-paused business-initiated|user-initiated|all|none]
             the number's account faults: 131030 (test number calls only its allow list), 131044 (no payment
             method: user calls get an error webhook instead of connect), 138014 (calling paused); none shows them
Client options: --sim-url URL (env SIM_URL, default ${DEFAULT_SIM_URL}; npm start prints the URL it serves)`;

/** Raised when the simulator cannot be reached (exit code 1): names the URL and the network cause. */
export class SimUnreachableError extends Error {
  /** The URL the command tried. */
  readonly url: string;
  /** The network cause, e.g. `ECONNREFUSED` or `timeout after 15 s`. */
  readonly reason: string;
  /**
   * @param url - the URL the command tried
   * @param reason - the network cause
   */
  constructor(url: string, reason: string) {
    super(
      `cannot reach the Meta simulator at ${url} (${reason}). Is \`npm start\` running? Its "try it" line ` +
        'shows the SIM_URL to set when the simulator is not at the default; or pass --sim-url http://host:port',
    );
    this.name = 'SimUnreachableError';
    this.url = url;
    this.reason = reason;
  }
}

/** The network cause of a failed `fetch`: undici wraps it as `TypeError('fetch failed', { cause })`. */
export function fetchFailureReason(error: unknown): string {
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) return error.message;
  const cause = error instanceof Error ? (error.cause as { code?: unknown; message?: unknown } | undefined) : undefined;
  if (cause && typeof cause.code === 'string') return cause.code;
  if (cause && typeof cause.message === 'string' && cause.message) return cause.message;
  return error instanceof Error ? error.message : String(error);
}

/**
 * `parseArgs` reads `-10` as the short options `-1 -0`, so `tone <id> 440 -10` failed. This moves every
 * positional (anything not starting with `-`, and negative numbers) behind a `--`, after the options and
 * their values, keeping the order of both; unknown flags stay where `parseArgs` rejects them.
 */
export function negativeNumbersAsPositionals(argv: readonly string[]): string[] {
  const flags: string[] = [];
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || NEGATIVE_NUMBER.test(arg)) {
      positionals.push(arg);
      continue;
    }
    flags.push(arg);
    const name = arg.startsWith('--') ? arg.slice(2) : undefined;
    const option = name !== undefined ? OPTIONS[name as keyof typeof OPTIONS] : undefined;
    if (option?.type === 'string' && i + 1 < argv.length) flags.push(argv[++i] as string);
  }
  return positionals.length > 0 ? [...flags, '--', ...positionals] : flags;
}

const NEGATIVE_NUMBER = /^-(\d+\.?\d*|\.\d+)$/;

/** Raised for bad command lines (exit code 2). */
export class CliUsageError extends Error {
  /** @param message - what is wrong */
  constructor(message: string) {
    super(message);
    this.name = 'CliUsageError';
  }
}

const OPTIONS = {
  'webhook-url': { type: 'string' },
  'app-secret': { type: 'string' },
  'verify-token': { type: 'string' },
  'access-token': { type: 'string' },
  pnid: { type: 'string' },
  number: { type: 'string' },
  'waba-id': { type: 'string' },
  port: { type: 'string' },
  'graph-version': { type: 'string' },
  'no-verify': { type: 'boolean' },
  'unanswered-ms': { type: 'string' },
  'log-level': { type: 'string' },
  'sim-url': { type: 'string' },
  days: { type: 'string' },
  from: { type: 'string' },
  'user-id': { type: 'string' },
  name: { type: 'string' },
  username: { type: 'string' },
  'deeplink-payload': { type: 'string' },
  'cta-payload': { type: 'string' },
  'permission-reply': { type: 'string' },
  'bic-answer': { type: 'string' },
  'bic-answer-delay-ms': { type: 'string' },
  'accepted-delay-ms': { type: 'string' },
  'accepted-duplicates': { type: 'string' },
  'accepted-lost': { type: 'boolean' },
  details: { type: 'string' },
  'test-allow-list': { type: 'string' },
  'payment-issue': { type: 'string' },
  'calling-paused': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function required(value: string | undefined, name: string): string {
  if (!value) throw new CliUsageError(`missing ${name}`);
  return value;
}

function int(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new CliUsageError(`${name} must be a non-negative integer`);
  return n;
}

/** Run the CLI; resolves with the process exit code. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  let parsed: ReturnType<
    typeof parseArgs<{ args: string[]; options: typeof OPTIONS; allowPositionals: true; strict: true }>
  >;
  try {
    parsed = parseArgs({
      args: negativeNumbersAsPositionals(argv),
      options: OPTIONS,
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    io.err(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    return 2;
  }
  const { values: v, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (v.help || !command) {
    io.out(USAGE);
    return command || v.help ? 0 : 2;
  }
  try {
    if (command === 'serve') return await serve(v, io);
    return await client(command, rest, v, io);
  } catch (err) {
    if (err instanceof CliUsageError) {
      io.err(`${err.message}\n${USAGE}`);
      return 2;
    }
    if (err instanceof SimUnreachableError) {
      io.err(JSON.stringify({ error: err.message, url: err.url, cause: err.reason }));
      return 1;
    }
    io.err(JSON.stringify({ error: err instanceof Error ? err.message : String(err) }));
    return 1;
  }
}

type Values = Partial<Record<keyof typeof OPTIONS, string | boolean>>;
const s = (v: Values, k: keyof typeof OPTIONS): string | undefined =>
  typeof v[k] === 'string' ? (v[k] as string) : undefined;

async function serve(v: Values, io: CliIo): Promise<number> {
  const env = io.env;
  const logger = pino({ level: s(v, 'log-level') ?? env.SIM_LOG_LEVEL ?? 'info' }, pino.destination(2));
  const unanswered = int(s(v, 'unanswered-ms'), '--unanswered-ms');
  // Meta ends an unanswered user-initiated call "about 30 to 60 seconds" after the connect (M-REF26).
  if (unanswered !== undefined && (unanswered < 30_000 || unanswered > 60_000))
    throw new CliUsageError('--unanswered-ms must be within Meta’s window, 30000–60000');
  // Loaded here so the client commands (and `tryItCommand` for `npm start`) do not load WebRTC.
  const { MetaSimulator } = await import('./simulator.ts');
  const sim = await MetaSimulator.start({
    port: int(s(v, 'port') ?? env.SIM_PORT, '--port') ?? DEFAULT_SIM_PORT,
    graphVersion: s(v, 'graph-version') ?? env.SIM_GRAPH_VERSION ?? 'v23.0',
    webhookUrl: required(s(v, 'webhook-url') ?? env.SIM_WEBHOOK_URL, '--webhook-url (or SIM_WEBHOOK_URL)'),
    appSecret: required(s(v, 'app-secret') ?? env.SIM_APP_SECRET, '--app-secret (or SIM_APP_SECRET)'),
    verifyToken: required(s(v, 'verify-token') ?? env.SIM_VERIFY_TOKEN, '--verify-token (or SIM_VERIFY_TOKEN)'),
    accessToken: required(s(v, 'access-token') ?? env.SIM_ACCESS_TOKEN, '--access-token (or SIM_ACCESS_TOKEN)'),
    business: {
      phoneNumberId: s(v, 'pnid') ?? env.SIM_PNID ?? '100000000000001',
      displayPhoneNumber: (s(v, 'number') ?? env.SIM_NUMBER ?? '447700900123').replace(/^\+/, ''),
      wabaId: s(v, 'waba-id') ?? env.SIM_WABA_ID ?? '200000000000001',
    },
    verifyWebhook: v['no-verify'] !== true,
    ...(unanswered !== undefined ? { timers: { unansweredMs: unanswered } } : {}),
    logger,
  });
  io.out(
    JSON.stringify({
      graphUrl: sim.graphUrl,
      controlUrl: `${sim.baseUrl}/_sim`,
      business: sim.business,
    }),
  );
  const shutdown =
    io.shutdown ??
    new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
  await shutdown;
  await sim.stop();
  return 0;
}

/** The part of `GET /_sim/calls/{id}` the `heard` command reports. */
interface CallDetail {
  id: string;
  state: string;
  relay?: {
    connectionState?: string;
    receivedDigits?: string;
    stats?: { packetsReceived?: number };
    heard?: { audible: boolean; hz: number; dbfs: number | null; ms: number };
  };
}

/**
 * What `heard` prints: what the simulated user hears now (dominant frequency and level of the last second of
 * the business's audio, as the relay decoded it), the digits it received and how many packets.
 */
export function heardReport(detail: CallDetail): Record<string, unknown> {
  const relay = detail.relay ?? {};
  return {
    id: detail.id,
    state: detail.state,
    heard: relay.heard ?? null,
    digitsReceived: relay.receivedDigits ?? '',
    packetsReceived: relay.stats?.packetsReceived ?? 0,
  };
}

async function client(command: string, args: string[], v: Values, io: CliIo): Promise<number> {
  const base = (s(v, 'sim-url') ?? io.env.SIM_URL ?? DEFAULT_SIM_URL).replace(/\/+$/, '');
  const http = io.fetch ?? fetch;
  const request = async (method: 'GET' | 'POST', path: string, body?: unknown): Promise<Response> => {
    const url = `${base}/_sim${path}`;
    try {
      return await http(url, {
        method,
        ...(body !== undefined ? { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (error) {
      throw new SimUnreachableError(url, fetchFailureReason(error));
    }
  };
  const call = async (method: 'GET' | 'POST', path: string, body?: unknown): Promise<number> => {
    const res = await request(method, path, body);
    const text = await res.text();
    (res.ok ? io.out : io.err)(text);
    return res.ok ? 0 : 1;
  };
  const id = (): string => encodeURIComponent(required(args[0], '<call-id>'));
  switch (command) {
    case 'call': {
      const body: Record<string, string> = {};
      const from = s(v, 'from');
      const userId = s(v, 'user-id');
      if (!from && !userId) throw new CliUsageError('call needs --from DIGITS or --user-id BSUID');
      if (from) body.from = from;
      if (userId) body.userId = userId;
      for (const [flag, key] of [
        ['name', 'name'],
        ['username', 'username'],
        ['deeplink-payload', 'deeplinkPayload'],
        ['cta-payload', 'ctaPayload'],
      ] as const) {
        const value = s(v, flag);
        if (value !== undefined) body[key] = value;
      }
      return call('POST', '/calls', body);
    }
    case 'hangup':
      return call('POST', `/calls/${id()}/hangup`);
    case 'dtmf':
      return call('POST', `/calls/${id()}/dtmf`, { digits: required(args[1], '<digits>') });
    case 'tone': {
      const callId = id();
      const hz = Number(required(args[1], '<hz>'));
      if (!(hz > 0)) throw new CliUsageError(`<hz> must be a positive number, got ${args[1]}`);
      const dbfs = args[2] !== undefined ? Number(args[2]) : -20;
      if (!(dbfs <= 0)) throw new CliUsageError(`[dbfs] must be a number ≤ 0 (dBFS, e.g. -10), got ${args[2]}`);
      return call('POST', `/calls/${callId}/tone`, { hz, dbfs });
    }
    case 'heard': {
      const res = await request('GET', `/calls/${id()}`);
      if (!res.ok) {
        io.err(await res.text());
        return 1;
      }
      io.out(JSON.stringify(heardReport((await res.json()) as CallDetail)));
      return 0;
    }
    case 'calls':
      return call('GET', '/calls');
    case 'call-info':
      return call('GET', `/calls/${id()}`);
    case 'script': {
      const user = encodeURIComponent(required(args[0], '<user>'));
      const body: Record<string, unknown> = {};
      const pr = s(v, 'permission-reply');
      if (pr) body.permissionReply = pr;
      const bic = s(v, 'bic-answer');
      if (bic) body.bicAnswer = bic;
      const delay = int(s(v, 'bic-answer-delay-ms'), '--bic-answer-delay-ms');
      if (delay !== undefined) body.bicAnswerDelayMs = delay;
      const acceptedDelay = int(s(v, 'accepted-delay-ms'), '--accepted-delay-ms');
      const duplicates = int(s(v, 'accepted-duplicates'), '--accepted-duplicates');
      const accepted: Record<string, unknown> = {
        ...(acceptedDelay !== undefined ? { delayMs: acceptedDelay } : {}),
        ...(duplicates !== undefined ? { duplicates } : {}),
        ...(v['accepted-lost'] === true ? { lost: true } : {}),
      };
      if (Object.keys(accepted).length > 0) body.acceptedStatus = accepted;
      return call('POST', `/users/${user}/script`, body);
    }
    case 'permission': {
      const user = encodeURIComponent(required(args[0], '<user>'));
      return args[1]
        ? call('POST', `/users/${user}/permission`, { status: args[1] })
        : call('GET', `/users/${user}/permission`);
    }
    case 'text': {
      const user = encodeURIComponent(required(args[0], '<user>'));
      return call('POST', `/users/${user}/messages`, {
        text: required(args.slice(1).join(' ') || undefined, '<message>'),
      });
    }
    case 'account-update': {
      const kind = required(args[0], 'violation|restriction');
      const type = required(args[1], '<type>');
      if (kind === 'violation')
        return call('POST', '/account_update', { event: 'ACCOUNT_VIOLATION', violationType: type });
      if (kind !== 'restriction') throw new CliUsageError(`account-update needs violation or restriction, got ${kind}`);
      const days = int(s(v, 'days'), '--days') ?? 7;
      const expiration = Math.floor(Date.now() / 1000) + days * 86_400;
      return call('POST', '/account_update', { event: 'ACCOUNT_RESTRICTION', restrictions: [{ type, expiration }] });
    }
    case 'fail': {
      const callId = id();
      const code = Number(required(args[1], '<code>'));
      if (!Number.isInteger(code)) throw new CliUsageError(`<code> must be a Meta error code, got ${args[1]}`);
      const details = s(v, 'details');
      return call('POST', `/calls/${callId}/fail`, { code, ...(details !== undefined ? { details } : {}) });
    }
    case 'number-faults': {
      const body: Record<string, unknown> = {};
      const list = s(v, 'test-allow-list');
      if (list !== undefined) body.testAllowList = list === 'none' ? null : list.split(',').map((n) => n.trim());
      const payment = s(v, 'payment-issue');
      if (payment !== undefined) {
        if (payment !== 'on' && payment !== 'off') throw new CliUsageError('--payment-issue must be on or off');
        body.paymentIssue = payment === 'on';
      }
      const paused = s(v, 'calling-paused');
      if (paused !== undefined) body.callingPaused = paused === 'none' ? null : paused;
      return Object.keys(body).length === 0 ? call('GET', '/number/faults') : call('POST', '/number/faults', body);
    }
    default:
      throw new CliUsageError(`unknown command ${command}`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runCli(process.argv.slice(2), {
    out: (l) => process.stdout.write(`${l}\n`),
    err: (l) => process.stderr.write(`${l}\n`),
    env: process.env,
  }).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
