/**
 * Command line for the Meta simulator: `npm run sim -- <command> [options]`.
 *
 * - `serve`: run a standalone simulator (flags or `SIM_*` env vars).
 * - `call`, `hangup`, `dtmf`, `tone`, `calls`, `call-info`, `script`, `permission`: client commands against a
 *   running simulator's `/_sim` control API (`--sim-url` or `SIM_URL`, default `http://127.0.0.1:3001`, where `npm start` serves it).
 *
 * Every command prints JSON on stdout; logs go to stderr. Secrets are never printed.
 *
 * @module
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { MetaSimulator } from './simulator.ts';

/** Default port of `serve` and default target of the client commands. */
/** The local stack serves the simulator on PORT+1 = 3001 by default; the CLI targets it. */
export const DEFAULT_SIM_PORT = 3001;

/** Where the CLI writes and which environment it reads (injectable for tests). */
export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  env: Record<string, string | undefined>;
  /** `serve` resolves this promise to shut down (default: SIGINT/SIGTERM). */
  shutdown?: Promise<void>;
}

const USAGE = `Usage: npm run sim -- <command> [options]

Commands:
  serve      --webhook-url URL --app-secret S --verify-token T --access-token T
             [--pnid ID] [--number DIGITS] [--waba-id ID] [--port N] [--graph-version v23.0]
             [--no-verify] [--unanswered-ms N] [--log-level info]
             (env: SIM_WEBHOOK_URL, SIM_APP_SECRET, SIM_VERIFY_TOKEN, SIM_ACCESS_TOKEN, SIM_PNID, SIM_NUMBER,
              SIM_WABA_ID, SIM_PORT)
  call       --from DIGITS [--user-id BSUID] [--name N] [--username U] [--deeplink-payload P] [--cta-payload P]
  hangup     <call-id>
  dtmf       <call-id> <digits>
  tone       <call-id> <hz> [dbfs]
  calls
  call-info  <call-id>
  script     <user> [--permission-reply accept_temporary|accept_permanent|reject|none]
             [--bic-answer accept|reject|no_answer] [--bic-answer-delay-ms N]
  permission <user> [temporary|permanent|no_permission]
Client options: --sim-url URL (env SIM_URL, default http://127.0.0.1:${DEFAULT_SIM_PORT})`;

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
  from: { type: 'string' },
  'user-id': { type: 'string' },
  name: { type: 'string' },
  username: { type: 'string' },
  'deeplink-payload': { type: 'string' },
  'cta-payload': { type: 'string' },
  'permission-reply': { type: 'string' },
  'bic-answer': { type: 'string' },
  'bic-answer-delay-ms': { type: 'string' },
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
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
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

async function client(command: string, args: string[], v: Values, io: CliIo): Promise<number> {
  const base = (s(v, 'sim-url') ?? io.env.SIM_URL ?? `http://127.0.0.1:${DEFAULT_SIM_PORT}`).replace(/\/+$/, '');
  const call = async (method: 'GET' | 'POST', path: string, body?: unknown): Promise<number> => {
    const res = await fetch(`${base}/_sim${path}`, {
      method,
      ...(body !== undefined ? { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(15_000),
    });
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
      const hz = Number(required(args[1], '<hz>'));
      const dbfs = args[2] !== undefined ? Number(args[2]) : -20;
      return call('POST', `/calls/${id()}/tone`, { hz, dbfs });
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
      return call('POST', `/users/${user}/script`, body);
    }
    case 'permission': {
      const user = encodeURIComponent(required(args[0], '<user>'));
      return args[1]
        ? call('POST', `/users/${user}/permission`, { status: args[1] })
        : call('GET', `/users/${user}/permission`);
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
