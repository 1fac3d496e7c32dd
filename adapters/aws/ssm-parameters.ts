/**
 * Reads the deployment's settings from SSM Parameter Store: every parameter directly under the
 * stage prefix (`/wa-sip-bridge/<stage>/<KEY>`), SecureStrings decrypted, as `{ KEY: value }`.
 *
 * CloudFormation cannot put SecureString values into a Lambda's environment, so the control plane
 * reads its settings here at cold start, and the media worker's image entrypoint does the same
 * before the worker starts. The result is merged *under* the environment the stack sets, so the
 * stack's wiring (table names, queue URLs, ports) always wins over a stray parameter:
 *
 * ```ts
 * const config = loadControlPlaneConfig({
 *   ...(await ssmSettings(process.env.SSM_PREFIX!, { keys: Object.keys(CONTROL_PLANE_SETTINGS) })),
 *   ...process.env,
 * });
 * ```
 *
 * Values are cached for `maxAgeSeconds` (Powertools Parameters cache), and the whole read has a
 * deadline, so a cold start never hangs on SSM.
 */
import { SSMProvider } from '@aws-lambda-powertools/parameters/ssm';
import { SSMClient } from '@aws-sdk/client-ssm';

/** Options of {@link ssmSettings}. */
export interface SsmSettingsOptions {
  /**
   * Only these keys are returned; any other parameter under the prefix is ignored.
   * @default every parameter directly under the prefix whose name is an UPPER_SNAKE key
   */
  readonly keys?: readonly string[];
  /**
   * How long values are cached in this process, in seconds.
   * @default 300
   */
  readonly maxAgeSeconds?: number;
  /**
   * Deadline of the whole read (all pages), in milliseconds.
   * @default 5000
   */
  readonly timeoutMs?: number;
  /**
   * The SSM client. Tests and local endpoints pass their own.
   * @default a client for `AWS_REGION` with 1 s connect and 2 s request timeouts, 3 attempts
   */
  readonly client?: SSMClient;
}

/** The settings could not be read from SSM (access denied, timeout, throttling). */
export class SsmSettingsError extends Error {
  override readonly name = 'SsmSettingsError';
  /** The prefix that was read. */
  readonly prefix: string;

  constructor(prefix: string, message: string, options?: ErrorOptions) {
    super(`SSM parameters under ${prefix}: ${message}`, options);
    this.prefix = prefix;
  }
}

const KEY = /^[A-Z][A-Z0-9_]*$/;
let defaultClient: SSMClient | undefined;
/** One provider (and so one cache) per client. */
const providers = new WeakMap<SSMClient, SSMProvider>();

/**
 * Every setting under `prefix`, decrypted, keyed by its last path segment.
 *
 * @param prefix - the stage prefix, e.g. `/wa-sip-bridge/prod` (a trailing `/` is allowed)
 * @throws {@link SsmSettingsError} when SSM cannot be read within the deadline
 * @throws {TypeError} when the prefix is not an absolute SSM path
 */
export async function ssmSettings(prefix: string, options: SsmSettingsOptions = {}): Promise<Record<string, string>> {
  const path = normalizePrefix(prefix);
  const timeoutMs = options.timeoutMs ?? 5000;
  let client = options.client;
  if (!client) {
    defaultClient ??= newClient();
    client = defaultClient;
  }
  let provider = providers.get(client);
  if (!provider) {
    provider = new SSMProvider({ awsSdkV3Client: client });
    providers.set(client, provider);
  }
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SsmSettingsError(path, `no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  let values: Record<string, unknown> | undefined;
  try {
    values = await Promise.race([
      provider.getMultiple(path, { decrypt: true, recursive: false, maxAge: options.maxAgeSeconds ?? 300 }),
      deadline,
    ]);
  } catch (error) {
    if (error instanceof SsmSettingsError) throw error;
    throw new SsmSettingsError(path, error instanceof Error ? error.message : String(error), { cause: error });
  } finally {
    clearTimeout(timer);
  }
  const wanted = options.keys ? new Set(options.keys) : undefined;
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(values ?? {})) {
    // Powertools returns names relative to the path; strip a leading slash to be safe.
    const key = name.replace(/^\//, '');
    if (!KEY.test(key) || typeof value !== 'string') continue;
    if (wanted && !wanted.has(key)) continue;
    out[key] = value;
  }
  return out;
}

/** `/wa-sip-bridge/prod/` → `/wa-sip-bridge/prod`. */
export function normalizePrefix(prefix: string): string {
  const path = prefix.replace(/\/+$/, '');
  if (!/^\/[\w.-]+(\/[\w.-]+)*$/.test(path)) {
    throw new TypeError(`SSM prefix must be an absolute path like /wa-sip-bridge/prod, got ${JSON.stringify(prefix)}`);
  }
  return path;
}

function newClient(): SSMClient {
  return new SSMClient({
    maxAttempts: 3,
    requestHandler: { connectionTimeout: 1000, requestTimeout: 2000 },
  });
}
