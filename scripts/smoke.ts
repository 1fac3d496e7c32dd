/**
 * Smoke test of a deployed (or local) bridge: `npm run smoke -- --url <api base>`.
 *
 * Checks, each with the status it must get:
 * - `GET /healthz` → 200 with `status: ok` (the function starts, reads its settings, reaches DynamoDB)
 * - webhook handshake with the right verify token → 200 echoing the challenge (needs the token)
 * - webhook handshake with a wrong token → 403
 * - unsigned `POST /webhook` → 401, and one signed with a wrong secret → 401
 * - with the app secret: a correctly signed POST of an envelope with no entries → 200 (the deployed
 *   secret is the one you hold; nothing is stored or enqueued)
 * - with the control API key: `GET /v1/workers` → 200 with at least one live worker, and per live
 *   worker (`worker-sip:<id>`) every SIP target answered the worker's OPTIONS (any final response,
 *   RFC 3261 §11) within the last 90 s: the PBX is reachable from the workers and answers
 *
 * Secrets come from `--verify-token`/`--app-secret`/`--api-key` or the environment
 * (`META_VERIFY_TOKEN`, `META_APP_SECRET`, `CONTROL_API_KEY`), so they need not appear in shell history. Prints one JSON report; exits 1
 * when any check fails, 2 on bad usage.
 */
import { createHmac, randomBytes, randomInt } from 'node:crypto';
import { parseArgs } from 'node:util';

/** Options of {@link runSmoke}. */
export interface SmokeOptions {
  /** API base URL, e.g. `https://abc.execute-api.eu-west-1.amazonaws.com/` or `http://127.0.0.1:3000`. */
  readonly url: string;
  /** Meta verify token; without it the right-token handshake is skipped, and the report is not ok. */
  readonly verifyToken?: string;
  /** Meta app secret; without it the correctly signed POST is skipped, and the report is not ok. */
  readonly appSecret?: string;
  /** Control API key; without it the worker checks are skipped, and the report is not ok. */
  readonly apiKey?: string;
  /** Epoch ms, to age the workers' SIP checks. @default Date.now */
  readonly now?: () => number;
  /** Timeout of each request. @default 10000 */
  readonly timeoutMs?: number;
  /** @default globalThis.fetch */
  readonly fetch?: typeof fetch;
}

/** One check's result. */
export interface SmokeCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly skipped?: boolean;
  readonly expected?: number;
  readonly status?: number;
  readonly ms?: number;
  readonly detail?: string;
}

/** The report. */
export interface SmokeReport {
  readonly url: string;
  readonly ok: boolean;
  readonly checks: readonly SmokeCheck[];
}

/** Runs every check against `url`; never throws for a failing check. */
export async function runSmoke(options: SmokeOptions): Promise<SmokeReport> {
  const base = options.url.replace(/\/+$/, '');
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const checks: SmokeCheck[] = [];

  const request = async (
    name: string,
    expected: number,
    path: string,
    init: RequestInit = {},
    verify?: (body: string) => string | undefined,
  ) => {
    const started = Date.now();
    try {
      const res = await doFetch(`${base}${path}`, { ...init, signal: AbortSignal.timeout(timeoutMs) });
      const body = await res.text();
      const problem =
        res.status !== expected ? `expected ${expected}, got ${res.status}: ${body.slice(0, 200)}` : verify?.(body);
      checks.push({
        name,
        ok: problem === undefined,
        expected,
        status: res.status,
        ms: Date.now() - started,
        ...(problem ? { detail: problem } : {}),
      });
    } catch (error) {
      checks.push({
        name,
        ok: false,
        expected,
        ms: Date.now() - started,
        detail: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
      });
    }
  };
  // A check that did not run proves nothing: the report is not ok (issue 15: a pipeline must not
  // pass a deploy whose handshake or signature was never checked).
  const skip = (name: string, detail: string) => checks.push({ name, ok: false, skipped: true, detail });
  const handshake = (token: string, challenge: string) =>
    `/webhook?${new URLSearchParams({ 'hub.mode': 'subscribe', 'hub.challenge': challenge, 'hub.verify_token': token })}`;
  const post = (body: string, signature?: string): RequestInit => ({
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(signature ? { 'x-hub-signature-256': signature } : {}) },
    body,
  });
  const sign = (body: string, secret: string) => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

  await request('health', 200, '/healthz', {}, (body) => {
    try {
      const status = (JSON.parse(body) as { status?: unknown }).status;
      return status === 'ok' ? undefined : `status is ${JSON.stringify(status)}`;
    } catch {
      return 'body is not JSON';
    }
  });

  const challenge = String(randomInt(1_000_000_000, 2_000_000_000));
  if (options.verifyToken) {
    await request('handshake-right-token', 200, handshake(options.verifyToken, challenge), {}, (body) =>
      body === challenge ? undefined : `body ${JSON.stringify(body.slice(0, 40))} is not the challenge`,
    );
  } else {
    skip('handshake-right-token', 'no --verify-token (or META_VERIFY_TOKEN)');
  }
  await request('handshake-wrong-token', 403, handshake(`smoke-wrong-${randomBytes(8).toString('hex')}`, challenge));

  // Signature checks: an envelope with no entries, so a wrongly accepted POST still changes nothing.
  const body = JSON.stringify({ object: 'whatsapp_business_account', entry: [] });
  await request('post-unsigned', 401, '/webhook', post(body));
  await request('post-mis-signed', 401, '/webhook', post(body, sign(body, randomBytes(16).toString('hex'))));
  if (options.appSecret) {
    await request('post-signed', 200, '/webhook', post(body, sign(body, options.appSecret)));
  } else {
    skip('post-signed', 'no --app-secret (or META_APP_SECRET)');
  }
  if (options.apiKey) {
    let listed: SmokeWorker[] | undefined;
    await request('workers', 200, '/v1/workers', { headers: { authorization: `Bearer ${options.apiKey}` } }, (text) => {
      try {
        listed = (JSON.parse(text) as { workers?: SmokeWorker[] }).workers;
      } catch {
        return 'body is not JSON';
      }
      if (!Array.isArray(listed)) return 'no workers list';
      return listed.length === 0 ? 'no live worker' : undefined;
    });
    const now = (options.now ?? Date.now)();
    for (const worker of listed ?? []) {
      const problems = sipProblems(worker, now);
      checks.push({
        name: `worker-sip:${worker.workerId}`,
        ok: problems.length === 0,
        ...(problems.length === 0 ? {} : { detail: problems.join('; ') }),
      });
    }
  } else {
    skip('workers', 'no --api-key (or CONTROL_API_KEY)');
  }
  return { url: base, ok: checks.every((c) => c.ok), checks };
}

/** How recent a worker's OPTIONS answer must be: three of its 30 s rounds. */
export const SIP_ANSWER_MAX_AGE_MS = 90_000;

/** A worker as `GET /v1/workers` lists it (the fields the smoke test reads). */
interface SmokeWorker {
  readonly workerId: string;
  readonly sipTargets?: ReadonlyArray<{ uri: string; status?: number; error?: string; checkedAt: number }>;
}

/** What is wrong with a worker's SIP targets: none checked, one unanswered, one answered too long ago. */
function sipProblems(worker: SmokeWorker, now: number): string[] {
  const targets = worker.sipTargets ?? [];
  if (targets.length === 0) return ['no SIP target checked yet'];
  return targets.flatMap((t) => {
    if (t.status === undefined) return [`${t.uri}: no answer (${t.error ?? 'unknown'})`];
    const age = now - t.checkedAt;
    return age > SIP_ANSWER_MAX_AGE_MS
      ? [`${t.uri}: last answer ${Math.round(age / 1000)} s ago (over ${SIP_ANSWER_MAX_AGE_MS / 1000} s)`]
      : [];
  });
}

/** Command line: parses arguments and environment, prints the report, returns the exit code. */
export async function main(
  argv: readonly string[],
  env: Record<string, string | undefined>,
  out: (line: string) => void,
): Promise<number> {
  let values: {
    url?: string;
    'verify-token'?: string;
    'app-secret'?: string;
    'api-key'?: string;
    'timeout-ms'?: string;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        url: { type: 'string' },
        'verify-token': { type: 'string' },
        'app-secret': { type: 'string' },
        'api-key': { type: 'string' },
        'timeout-ms': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (error) {
    out(JSON.stringify({ ok: false, error: error instanceof Error ? error.message : String(error) }));
    return 2;
  }
  if (values.help || !values.url) {
    out(
      'usage: npm run smoke -- --url <api base> [--verify-token T] [--app-secret S] [--api-key K] [--timeout-ms N]\n' +
        '       (or META_VERIFY_TOKEN / META_APP_SECRET / CONTROL_API_KEY in the environment)',
    );
    return values.help ? 0 : 2;
  }
  const verifyToken = values['verify-token'] ?? env.META_VERIFY_TOKEN;
  const appSecret = values['app-secret'] ?? env.META_APP_SECRET;
  const apiKey = values['api-key'] ?? env.CONTROL_API_KEY;
  const report = await runSmoke({
    url: values.url,
    ...(verifyToken ? { verifyToken } : {}),
    ...(appSecret ? { appSecret } : {}),
    ...(apiKey ? { apiKey } : {}),
    ...(values['timeout-ms'] ? { timeoutMs: Number(values['timeout-ms']) } : {}),
  });
  out(JSON.stringify(report, null, 2));
  return report.ok ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main(process.argv.slice(2), process.env, (line) => console.log(line));
}
