/**
 * Which settings are SSM parameters, derived from the config schemas themselves
 * (`CONTROL_PLANE_SETTINGS`, `WORKER_SETTINGS`), so the stack, the README tables and the code that
 * validates settings cannot drift apart.
 *
 * Every setting of either schema is one of:
 * - **stack-wired**: the stack sets it from its own resources or props (table names, queue URLs,
 *   ports the security group opens, addresses the task discovers). It is an environment variable
 *   of the function or task; a parameter of the same name is ignored, because the environment wins.
 * - **a parameter** `/wa-sip-bridge/<stage>/<KEY>` the operator creates (SecureString when the
 *   schema marks it `secret`). One parameter serves both deployables when both schemas have the key.
 *
 * The stack does not create these parameters: CloudFormation cannot create SecureStrings, and a
 * String parameter owned by the stack would be reset by every deploy after an operator changed it.
 */
import type { z } from 'zod';
import { CONTROL_PLANE_PARAMETER_KEYS, CONTROL_PLANE_SETTINGS, CONTROL_PLANE_WIRED } from '#functions/shared/config.ts';
import { WORKER_PARAMETER_KEYS, WORKER_SETTINGS, WORKER_WIRED } from '#worker/config.ts';

/** Re-exported for the stack and its tests: each deployable's config module owns its lists. */
export { CONTROL_PLANE_PARAMETER_KEYS, CONTROL_PLANE_WIRED, WORKER_PARAMETER_KEYS, WORKER_WIRED };

type Setting = { schema: z.ZodType; doc: string; default?: string; secret?: boolean };

/** Prefix of a stage's parameters, without the trailing slash. */
export function parameterPrefix(stage: string): string {
  return `/wa-sip-bridge/${stage}`;
}

/**
 * The stack-owned String parameter listing the fixed addresses (fixed-address mode), one level
 * below the settings prefix so that the settings read (not recursive) never takes it for a setting.
 */
export function pbxAllowListParameterName(stage: string): string {
  return `${parameterPrefix(stage)}/stack/pbx-allow-list`;
}

/** One operator-managed SSM parameter. */
export interface ParameterSpec {
  /** The setting's key, also the last segment of the parameter name. */
  readonly key: string;
  /** The full parameter name, `/wa-sip-bridge/<stage>/<KEY>`. */
  readonly name: string;
  /** `SecureString` when either schema marks the setting secret. */
  readonly type: 'String' | 'SecureString';
  /** Whether a deployable fails to start without it (no default, not optional). */
  readonly required: boolean;
  /** Which deployables read it. */
  readonly usedBy: ReadonlyArray<'control-plane' | 'media-worker'>;
  readonly doc: string;
}

/** Every parameter the operator manages for `stage`, in schema order (control plane first). */
export function operatorParameters(stage: string): ParameterSpec[] {
  const byKey = new Map<string, ParameterSpec>();
  const add = (settings: Record<string, Setting>, wired: readonly string[], who: 'control-plane' | 'media-worker') => {
    for (const [key, s] of Object.entries(settings)) {
      if (wired.includes(key)) continue;
      const required = s.default === undefined && !s.schema.safeParse(undefined).success;
      const prior = byKey.get(key);
      byKey.set(key, {
        key,
        name: `${parameterPrefix(stage)}/${key}`,
        type: s.secret || prior?.type === 'SecureString' ? 'SecureString' : 'String',
        required: required || (prior?.required ?? false),
        usedBy: [...(prior?.usedBy ?? []), who],
        doc: prior?.doc ?? s.doc,
      });
    }
  };
  add(CONTROL_PLANE_SETTINGS, CONTROL_PLANE_WIRED, 'control-plane');
  add(WORKER_SETTINGS, WORKER_WIRED, 'media-worker');
  return [...byKey.values()];
}

/**
 * Where the SIP-over-TLS certificate and key come from (the `sipTlsSecret` context key): one secret
 * value holding the PEM certificate (and chain) followed by the PEM private key. ECS hands it to
 * the drachtio-server sidecar as an environment secret; the sidecar's entrypoint writes the two
 * files only its user can read.
 */
export type SipTlsSource =
  | { readonly kind: 'secretsmanager'; readonly arn: string }
  | { readonly kind: 'secretsmanager'; readonly name: string }
  | { readonly kind: 'ssm'; readonly name: string };

/**
 * Reads the `sipTlsSecret` context value: a Secrets Manager secret ARN or name, or an SSM
 * SecureString parameter name (starting with `/`) or ARN.
 * @throws {TypeError} naming the context key when the value is neither
 */
export function sipTlsSource(value: string): SipTlsSource {
  const ssmArn = /^arn:aws[\w-]*:ssm:[\w-]+:\d{12}:parameter(\/.+)$/.exec(value);
  if (ssmArn) return { kind: 'ssm', name: ssmArn[1]! };
  if (/^\/[\w.\-/]+$/.test(value)) return { kind: 'ssm', name: value };
  if (/^arn:aws[\w-]*:secretsmanager:[\w-]+:\d{12}:secret:[\w/+=.@-]+$/.test(value))
    return { kind: 'secretsmanager', arn: value };
  if (/^[\w/+=.@-]{1,512}$/.test(value) && !value.startsWith('arn:')) return { kind: 'secretsmanager', name: value };
  throw new TypeError(
    `sipTlsSecret must be a Secrets Manager secret ARN or name, or an SSM SecureString name (/…) or ARN; got ${JSON.stringify(value)}`,
  );
}
