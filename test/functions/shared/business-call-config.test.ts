import { describe, expect, it } from 'vitest';
import { ConfigError } from '#core/errors.ts';
import { blockedCountryOf, DEFAULT_BIC_BLOCKED_COUNTRIES } from '#core/outbound/rules.ts';
import { loadControlPlaneConfig } from '#functions/shared/config.ts';
import { WORKER_SETTINGS } from '#worker/config.ts';
import { CONTROL_PLANE_ENV } from '../../helpers/control-plane-env.ts';

const env = CONTROL_PLANE_ENV;

describe('business-initiated call settings', () => {
  it("defaults to Meta's blocked countries and a 5-minute reconciliation age", () => {
    expect(loadControlPlaneConfig(env).businessCalls).toEqual({
      blockedCountries: ['US', 'CA', 'EG', 'VN', 'NG'],
      reconcileAfterMs: 300_000,
    });
  });

  it('lets a Turkish business number call by default: Meta excludes only US, CA, EG, VN, NG (OVR26, D5)', () => {
    // Before: TR was in every default list, so Turkish numbers were refused locally although Meta allows them.
    const turkish = '905321234567';
    expect(blockedCountryOf(turkish, DEFAULT_BIC_BLOCKED_COUNTRIES)).toBeUndefined();
    expect(blockedCountryOf(turkish, loadControlPlaneConfig(env).businessCalls.blockedCountries)).toBeUndefined();
    // The worker's default is the same list (it reads DEFAULT_BIC_BLOCKED_COUNTRIES) and says so.
    expect(WORKER_SETTINGS.BIC_BLOCKED_COUNTRIES.doc).toContain('Default: US,CA,EG,VN,NG ');
    // Still configurable: an operator who wants the older list gets it.
    const withTurkey = loadControlPlaneConfig({ ...env, BIC_BLOCKED_COUNTRIES: 'US,CA,TR,EG,VN,NG' });
    expect(blockedCountryOf(turkish, withTurkey.businessCalls.blockedCountries)).toBe('TR');
  });

  it('takes a custom country list, or NONE', () => {
    expect(loadControlPlaneConfig({ ...env, BIC_BLOCKED_COUNTRIES: 'US,GB' }).businessCalls.blockedCountries).toEqual([
      'US',
      'GB',
    ]);
    expect(loadControlPlaneConfig({ ...env, BIC_BLOCKED_COUNTRIES: 'NONE' }).businessCalls.blockedCountries).toEqual(
      [],
    );
  });

  it.each(['us', 'USA', 'US,', 'US;CA'])('refuses %s naming the key', (value) => {
    expect(() => loadControlPlaneConfig({ ...env, BIC_BLOCKED_COUNTRIES: value })).toThrow(ConfigError);
    expect(() => loadControlPlaneConfig({ ...env, BIC_BLOCKED_COUNTRIES: value })).toThrow(/BIC_BLOCKED_COUNTRIES/);
  });
});
