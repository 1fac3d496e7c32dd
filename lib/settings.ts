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
import { CONTROL_PLANE_SETTINGS } from '../functions/shared/config.ts';
import { WORKER_SETTINGS } from '../media-worker/src/config.ts';

type Setting = { schema: z.ZodType; doc: string; default?: string; secret?: boolean };

/** Prefix of a stage's parameters, without the trailing slash. */
export function parameterPrefix(stage: string): string {
  return `/wa-sip-bridge/${stage}`;
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

/**
 * Worker settings the stack sets on the task (or deliberately leaves unset). Ports and transports
 * must match the security group; addresses are discovered per task; `WORKER_ID` must differ per
 * task (one parameter would give every task the same id); SIP over TLS needs certificate files,
 * which the image does not carry yet.
 */
export const WORKER_WIRED = [
  'WORKER_ID',
  'MAX_CALLS_PER_WORKER',
  'SIP_BIND_ADDRESS',
  'SIP_PORT',
  'SIP_TRANSPORTS',
  'SIP_TLS_PORT',
  'SIP_TLS_CERT_FILE',
  'SIP_TLS_KEY_FILE',
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
] as const satisfies ReadonlyArray<keyof typeof WORKER_SETTINGS>;

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

/** Keys the control plane reads from SSM (every schema key the stack does not wire). */
export const CONTROL_PLANE_PARAMETER_KEYS: readonly string[] = Object.keys(CONTROL_PLANE_SETTINGS).filter(
  (k) => !(CONTROL_PLANE_WIRED as readonly string[]).includes(k),
);

/** Keys the media worker reads from SSM. */
export const WORKER_PARAMETER_KEYS: readonly string[] = Object.keys(WORKER_SETTINGS).filter(
  (k) => !(WORKER_WIRED as readonly string[]).includes(k),
);
