/**
 * Settings schemas shared by every deployable's config module: a setting is a zod schema, a
 * description, an optional default and whether it is a secret. The README's tables and the
 * deployment's SSM parameters are generated from the same objects.
 */
import type { z } from 'zod';
import { ConfigError } from './errors.ts';

/** One setting. */
export interface SettingSpec {
  readonly schema: z.ZodType;
  readonly doc: string;
  readonly default?: string;
  readonly secret?: boolean;
}

/** The parsed values of a settings object. */
export type SettingValues<S extends Record<string, SettingSpec>> = { [K in keyof S]: z.output<S[K]['schema']> };

/**
 * Reads every setting from `env` (an empty string counts as unset), applies defaults and
 * validates.
 *
 * @throws {@link ConfigError} naming the first missing or invalid key.
 */
export function readSettings<S extends Record<string, SettingSpec>>(
  settings: S,
  env: Record<string, string | undefined>,
): SettingValues<S> {
  const values = {} as Record<string, unknown>;
  for (const [key, setting] of Object.entries(settings)) {
    const given = env[key] === '' ? undefined : env[key];
    const value = given ?? setting.default;
    const parsed = setting.schema.safeParse(value);
    if (!parsed.success) {
      throw new ConfigError(
        key,
        value === undefined ? 'is required but not set' : (parsed.error.issues[0]?.message ?? 'invalid'),
      );
    }
    values[key] = parsed.data;
  }
  return values as SettingValues<S>;
}

/**
 * The keys of `settings` a deployable reads from SSM: every key the stack does not wire into the
 * environment itself (`wired`).
 */
export function parameterKeys(settings: Record<string, SettingSpec>, wired: readonly string[]): readonly string[] {
  return Object.keys(settings).filter((k) => !wired.includes(k));
}
