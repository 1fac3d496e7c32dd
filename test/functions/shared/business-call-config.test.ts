import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../functions/core/errors.ts';
import { loadControlPlaneConfig } from '../../../functions/shared/config.ts';

const env = {
  META_APP_SECRET: 's',
  META_VERIFY_TOKEN: 'v',
  CONTROL_API_KEY: 'k'.repeat(16),
  META_PHONE_NUMBER_ID: '436666719526789',
  META_BUSINESS_NUMBER: '447700900123',
  META_GRAPH_URL: 'http://127.0.0.1:1/v23.0',
  META_ACCESS_TOKEN: 't',
  CALLS_TABLE: 'calls',
  PERMISSIONS_TABLE: 'permissions',
  WORKERS_TABLE: 'workers',
  CALL_JOBS_QUEUE_URL: 'http://127.0.0.1:2/000/jobs',
};

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
