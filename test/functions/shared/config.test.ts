import { describe, expect, it } from 'vitest';
import { ConfigError } from '#core/errors.ts';
import { CONTROL_PLANE_SETTINGS, loadControlPlaneConfig } from '#functions/shared/config.ts';
import { settingsTable } from '../../../scripts/settings-table.ts';
import { CONTROL_PLANE_ENV } from '../../helpers/control-plane-env.ts';

const env = CONTROL_PLANE_ENV;

describe('loadControlPlaneConfig', () => {
  it('applies defaults: always open, reject after hours, 1000 concurrent calls', () => {
    const config = loadControlPlaneConfig(env);
    expect(config.businessHours).toBeUndefined();
    expect(config.afterHours).toEqual({ action: 'reject' });
    expect(config.maxConcurrentCalls).toBe(1000);
    expect(config.meta.graphTimeoutMs).toBe(5000);
  });

  it.each(Object.keys(env))('fails fast naming %s when it is missing', (key) => {
    const { [key as keyof typeof env]: _gone, ...rest } = env;
    expect(() => loadControlPlaneConfig(rest)).toThrow(new RegExp(`^configuration ${key}: is required`));
  });

  it.each([
    ['META_BUSINESS_NUMBER', '+44 7700'],
    ['MAX_CONCURRENT_CALLS', '1001'],
    ['AFTER_HOURS_SIP_TARGET', 'agent@example.com'],
    ['BUSINESS_HOURS', '{"timeZone":"UTC"}'],
    ['BUSINESS_HOURS', 'not json'],
    ['CONTROL_API_KEY', 'short'],
  ])('rejects an invalid %s', (key, value) => {
    const error = (() => {
      try {
        loadControlPlaneConfig({ ...env, [key]: value });
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).key).toBe(key);
  });

  it('reads business hours and an after-hours target', () => {
    const config = loadControlPlaneConfig({
      ...env,
      BUSINESS_HOURS: JSON.stringify({ timeZone: 'UTC', weekly: [{ day: 'MONDAY', open: '0900', close: '1700' }] }),
      AFTER_HOURS_SIP_TARGET: 'sip:voicemail@127.0.0.1:5090',
    });
    expect(config.businessHours?.weekly[0]).toEqual({ day: 'MONDAY', open: 540, close: 1020 });
    expect(config.afterHours).toEqual({ action: 'route', sipTarget: 'sip:voicemail@127.0.0.1:5090' });
  });

  it('documents every setting, marking secrets and defaults', () => {
    const table = settingsTable(CONTROL_PLANE_SETTINGS);
    expect(table).toMatch(/^\| `META_APP_SECRET` \| yes \| {2}\| SecureString \|/m);
    expect(table).toMatch(/^\| `MAX_CONCURRENT_CALLS` \| no \| `1000` \| String \|/m);
    expect(table).toMatch(/^\| `BUSINESS_HOURS` \| no \| {2}\| String \|/m);
  });
});
