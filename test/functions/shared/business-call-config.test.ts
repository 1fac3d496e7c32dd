import { describe, expect, it } from 'vitest';
import { ConfigError } from '#core/errors.ts';
import { loadControlPlaneConfig } from '#functions/shared/config.ts';
import { CONTROL_PLANE_ENV } from '../../helpers/control-plane-env.ts';

const env = CONTROL_PLANE_ENV;

describe('business-initiated call settings', () => {
  it("defaults to Meta's blocked countries and a 5-minute reconciliation age", () => {
    expect(loadControlPlaneConfig(env).businessCalls).toEqual({
      blockedCountries: ['US', 'CA', 'TR', 'EG', 'VN', 'NG'],
      reconcileAfterMs: 300_000,
    });
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
