/**
 * Pre-deploy check of a stage's SSM parameters: `npm run preflight -- --stage <s>`.
 *
 * Reads every parameter under `/wa-sip-bridge/<stage>/` (SecureStrings decrypted, all pages, one
 * deadline) and checks them against the same config schemas the Lambdas and the media worker
 * validate at start-up, so a missing or wrong setting is reported here instead of as tasks that
 * exit and a deployment the circuit breaker rolls back (issue 15 item 4). It reports:
 * - **missing**: a setting a deployable cannot start without (no default, not optional);
 * - **invalid**: a value its schema refuses, or a combination the deployable's loader refuses
 *   (e.g. BUSINESS_HOURS that is not JSON, a VOICEMAIL that does not parse);
 * - **not-secure**: a secret stored as a plain `String` instead of a `SecureString`;
 * - **unknown**: a name under the prefix that is no setting (usually a typo: the nearest key is
 *   suggested), which the deployables would silently ignore;
 * - **ignored**: a parameter for a setting the stack sets itself (table names, ports…): the
 *   environment wins, so the parameter has no effect.
 * The first three are errors (exit 1), the last two warnings. Secret values are never printed,
 * not even inside a schema's message.
 *
 * Options: `--stage` (required), `--region` (else AWS_REGION / the SDK's chain), `--endpoint` (an
 * SSM endpoint, e.g. a local fake), `--timeout-ms` (whole read, default 10000), `--json` (the report
 * as one JSON object instead of lines). Exit codes: 0 no errors, 1 errors or SSM unreadable, 2 bad
 * usage.
 */

import { parseArgs } from 'node:util';
import { paginateGetParametersByPath, SSMClient } from '@aws-sdk/client-ssm';
import { ConfigError } from '#core/errors.ts';
import { CONTROL_PLANE_SETTINGS, CONTROL_PLANE_WIRED, loadControlPlaneConfig } from '#functions/shared/config.ts';
import { loadWorkerConfig, WORKER_SETTINGS, WORKER_WIRED } from '#worker/config.ts';
import { operatorParameters, parameterPrefix } from '../lib/settings.ts';

/** One parameter as SSM returned it. */
export interface FoundParameter {
  readonly name: string;
  readonly type: string;
  readonly value: string;
}

/** What is wrong with one setting or parameter. */
export interface PreflightFinding {
  readonly severity: 'error' | 'warning';
  readonly problem: 'missing' | 'invalid' | 'not-secure' | 'unknown' | 'ignored';
  /** The setting's key (for `unknown`: the last name segment as found). */
  readonly key: string;
  /** The full parameter name. */
  readonly name: string;
  readonly detail: string;
}

/** The outcome of {@link checkParameters}. */
export interface PreflightReport {
  readonly stage: string;
  readonly prefix: string;
  /** No errors (warnings allowed). */
  readonly ok: boolean;
  /** Parameters found under the prefix. */
  readonly found: number;
  readonly findings: readonly PreflightFinding[];
}

type Setting = { schema: { safeParse(v: unknown): { success: boolean; error?: { issues: { message: string }[] } } } };

/**
 * Placeholders for the settings the stack wires and a loader requires, so the loaders' cross-field
 * checks can run on the operator's parameters alone (their values are the stack's, not checked here).
 */
const WIRED_PLACEHOLDERS: Record<string, string> = {
  CALLS_TABLE: 'preflight-calls',
  PERMISSIONS_TABLE: 'preflight-permissions',
  WORKERS_TABLE: 'preflight-workers',
  CALL_JOBS_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/000000000000/preflight-call-jobs',
};

/**
 * Checks the parameters found under a stage's prefix against both deployables' schemas and
 * loaders. Pure: no I/O.
 */
export function checkParameters(stage: string, found: readonly FoundParameter[]): PreflightReport {
  const prefix = parameterPrefix(stage);
  const specs = operatorParameters(stage);
  const byName = new Map(found.map((p) => [p.name, p]));
  const settings: Record<string, Setting> = { ...WORKER_SETTINGS, ...CONTROL_PLANE_SETTINGS };
  const wired = new Set<string>([...CONTROL_PLANE_WIRED, ...WORKER_WIRED]);
  const secretKeys = new Set(specs.filter((s) => s.type === 'SecureString').map((s) => s.key));
  const findings: PreflightFinding[] = [];
  const values: Record<string, string> = {};

  for (const spec of specs) {
    const p = byName.get(spec.name);
    if (!p || p.value === '') {
      if (spec.required) {
        findings.push({
          severity: 'error',
          problem: 'missing',
          key: spec.key,
          name: spec.name,
          detail: `required by ${spec.usedBy.join(' and ')}: ${spec.doc}`,
        });
      }
      continue;
    }
    values[spec.key] = p.value;
    if (spec.type === 'SecureString' && p.type !== 'SecureString') {
      findings.push({
        severity: 'error',
        problem: 'not-secure',
        key: spec.key,
        name: spec.name,
        detail: `a secret stored as ${p.type}: recreate it as a SecureString`,
      });
    }
    for (const schemaOwner of [CONTROL_PLANE_SETTINGS, WORKER_SETTINGS] as Record<string, Setting>[]) {
      const setting = schemaOwner[spec.key];
      if (!setting) continue;
      const parsed = setting.schema.safeParse(p.value);
      if (!parsed.success) {
        findings.push(invalid(spec.key, spec.name, parsed.error?.issues[0]?.message ?? 'invalid', secretKeys));
        break;
      }
    }
  }

  for (const p of found) {
    if (!p.name.startsWith(`${prefix}/`)) continue;
    const key = p.name.slice(prefix.length + 1);
    if (wired.has(key)) {
      findings.push({
        severity: 'warning',
        problem: 'ignored',
        key,
        name: p.name,
        detail: 'the stack sets this setting itself; the parameter has no effect',
      });
    } else if (!(key in settings)) {
      const near = nearestKey(key, Object.keys(settings));
      findings.push({
        severity: 'warning',
        problem: 'unknown',
        key,
        name: p.name,
        detail: `no such setting; nothing reads it${near ? ` (did you mean ${near}?)` : ''}`,
      });
    }
  }

  // The loaders' own checks (JSON, combinations), once every single value passed its schema.
  if (!findings.some((f) => f.severity === 'error')) {
    const env = { ...values, ...WIRED_PLACEHOLDERS };
    for (const load of [loadControlPlaneConfig, loadWorkerConfig]) {
      try {
        load(env);
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        findings.push(invalid(error.key, `${prefix}/${error.key}`, error.problem, secretKeys));
      }
    }
  }
  return { stage, prefix, ok: !findings.some((f) => f.severity === 'error'), found: found.length, findings };
}

function invalid(key: string, name: string, message: string, secrets: ReadonlySet<string>): PreflightFinding {
  return {
    severity: 'error',
    problem: 'invalid',
    key,
    name,
    // A schema's message may quote the value (an enum's "received '…'"): never for a secret.
    detail: secrets.has(key) ? 'the value does not pass the setting’s check (not shown: a secret)' : message,
  };
}

/** The key within edit distance 2 of `key` (case-insensitive), if one is. */
function nearestKey(key: string, keys: readonly string[]): string | undefined {
  let best: { key: string; d: number } | undefined;
  for (const k of keys) {
    const d = editDistance(key.toUpperCase(), k);
    if (d <= 2 && (!best || d < best.d)) best = { key: k, d };
  }
  return best?.key;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

/** SSM could not be read (access denied, no credentials, timeout). */
export class PreflightReadError extends Error {
  override readonly name = 'PreflightReadError';
  constructor(
    readonly prefix: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(`SSM parameters under ${prefix}/: ${message}`, options);
  }
}

/** Every parameter directly under `prefix`, decrypted, all pages, within `timeoutMs`. */
export async function readStageParameters(
  client: SSMClient,
  prefix: string,
  timeoutMs: number,
): Promise<FoundParameter[]> {
  const signal = AbortSignal.timeout(timeoutMs);
  const found: FoundParameter[] = [];
  try {
    const pages = paginateGetParametersByPath({ client }, { Path: prefix, Recursive: false, WithDecryption: true });
    for await (const page of withSignal(pages, signal)) {
      for (const p of page.Parameters ?? []) {
        if (p.Name) found.push({ name: p.Name, type: p.Type ?? 'String', value: p.Value ?? '' });
      }
    }
  } catch (error) {
    if (signal.aborted) throw new PreflightReadError(prefix, `no answer within ${timeoutMs} ms`, { cause: error });
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    throw new PreflightReadError(prefix, message, { cause: error });
  }
  return found;
}

/** Iterates `it`, failing as soon as `signal` aborts (the SDK's own timeouts are per request). */
async function* withSignal<T>(it: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  const iterator = it[Symbol.asyncIterator]();
  const aborted = new Promise<never>((_, reject) => {
    const fail = () => reject(signal.reason);
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
  aborted.catch(() => undefined);
  for (;;) {
    const next = await Promise.race([iterator.next(), aborted]);
    if (next.done) return;
    yield next.value;
  }
}

/** Renders the report as lines for a person. */
export function formatReport(report: PreflightReport): string[] {
  const lines = [`preflight ${report.prefix}/: ${report.found} parameter(s) found`];
  for (const f of report.findings) lines.push(`${f.severity.toUpperCase()} ${f.problem} ${f.name}: ${f.detail}`);
  lines.push(
    report.ok
      ? 'ok: every setting the deployables need is present and valid'
      : 'NOT READY: fix the errors above before `cdk deploy`',
  );
  return lines;
}

/** Command line: parses arguments, reads SSM, prints the report, returns the exit code. */
export async function main(
  argv: readonly string[],
  env: Record<string, string | undefined>,
  out: (line: string) => void,
  newClient: (o: { region?: string; endpoint?: string }) => SSMClient = (o) =>
    new SSMClient({
      ...(o.region ? { region: o.region } : {}),
      ...(o.endpoint ? { endpoint: o.endpoint } : {}),
      maxAttempts: 3,
    }),
): Promise<number> {
  let values: { stage?: string; region?: string; endpoint?: string; 'timeout-ms'?: string; json?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        stage: { type: 'string' },
        region: { type: 'string' },
        endpoint: { type: 'string' },
        'timeout-ms': { type: 'string' },
        json: { type: 'boolean' },
      },
      strict: true,
    }));
  } catch (error) {
    out(`usage error: ${error instanceof Error ? error.message : String(error)}`);
    return 2;
  }
  const stage = values.stage;
  if (!stage || !/^[A-Za-z0-9_.-]+$/.test(stage)) {
    out('usage: npm run preflight -- --stage <stage> [--region r] [--endpoint url] [--timeout-ms n] [--json]');
    return 2;
  }
  const timeoutMs = values['timeout-ms'] === undefined ? 10_000 : Number(values['timeout-ms']);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    out('usage error: --timeout-ms must be a positive integer');
    return 2;
  }
  const region = values.region ?? env.AWS_REGION;
  const client = newClient({
    ...(region ? { region } : {}),
    ...(values.endpoint ? { endpoint: values.endpoint } : {}),
  });
  const prefix = parameterPrefix(stage);
  let report: PreflightReport;
  try {
    report = checkParameters(stage, await readStageParameters(client, prefix, timeoutMs));
  } catch (error) {
    if (!(error instanceof PreflightReadError)) throw error;
    out(values.json ? JSON.stringify({ stage, prefix, ok: false, error: error.message }) : `ERROR ${error.message}`);
    return 1;
  } finally {
    client.destroy();
  }
  if (values.json) out(JSON.stringify(report, null, 2));
  else for (const line of formatReport(report)) out(line);
  return report.ok ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main(process.argv.slice(2), process.env, (line) => console.log(line));
}
