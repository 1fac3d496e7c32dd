/**
 * `adapters/aws/ssm-parameters.ts` against a fake SSM endpoint speaking the real wire protocol
 * (JSON 1.1, `X-Amz-Target: AmazonSSM.GetParametersByPath`, paginated). Lives here because the
 * module belongs to the deployment (issue 5); move it to test/functions/shared with its peers.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { normalizePrefix, SsmSettingsError, ssmSettings } from '#adapters/aws/ssm-parameters.ts';
import { type FakeSsm, startFakeSsm } from '#test/helpers/fake-ssm.ts';

describe('Function: ssmSettings', () => {
  let ssm: FakeSsm;
  const client = () => ssm.client();

  beforeAll(async () => {
    ssm = await startFakeSsm({
      '/wa-sip-bridge/prod/META_APP_SECRET': { Type: 'SecureString', Value: 'decrypted-secret' },
      '/wa-sip-bridge/prod/META_PHONE_NUMBER_ID': { Type: 'String', Value: '436666719526789' },
      '/wa-sip-bridge/prod/LOG_LEVEL': { Type: 'String', Value: 'DEBUG' },
      '/wa-sip-bridge/prod/lower-case-note': { Type: 'String', Value: 'ignored' },
      '/wa-sip-bridge/staging/META_APP_SECRET': { Type: 'SecureString', Value: 'other-stage' },
    });
  });
  afterAll(() => ssm.close());
  beforeEach(() => {
    ssm.calls.length = 0;
    ssm.delayMs = 0;
    ssm.fail = false;
  });

  it('returns every UPPER_SNAKE parameter directly under the prefix, decrypted, across pages', async () => {
    const settings = await ssmSettings('/wa-sip-bridge/prod/', { client: client() });

    expect(settings).toEqual({
      META_APP_SECRET: 'decrypted-secret',
      META_PHONE_NUMBER_ID: '436666719526789',
      LOG_LEVEL: 'DEBUG',
    });
    expect(ssm.calls.map((c) => c.target)).toEqual(['AmazonSSM.GetParametersByPath', 'AmazonSSM.GetParametersByPath']);
    expect(ssm.calls[0]!.body).toMatchObject({ Path: '/wa-sip-bridge/prod', Recursive: false, WithDecryption: true });
  });

  it('keeps only the keys asked for', async () => {
    const settings = await ssmSettings('/wa-sip-bridge/prod', { client: client(), keys: ['LOG_LEVEL', 'NOT_THERE'] });

    expect(settings).toEqual({ LOG_LEVEL: 'DEBUG' });
  });

  it('caches per client, so a warm invocation does not call SSM again', async () => {
    const c = client();
    await ssmSettings('/wa-sip-bridge/prod', { client: c });
    const first = ssm.calls.length;
    await ssmSettings('/wa-sip-bridge/prod', { client: c });

    expect(ssm.calls.length).toBe(first);
  });

  it('fails with SsmSettingsError naming the prefix when SSM refuses', async () => {
    ssm.fail = true;

    await expect(ssmSettings('/wa-sip-bridge/prod', { client: client() })).rejects.toThrow(SsmSettingsError);
    await expect(ssmSettings('/wa-sip-bridge/prod', { client: client(), maxAgeSeconds: 0 })).rejects.toThrow(
      /\/wa-sip-bridge\/prod: .*not authorized/,
    );
  });

  it('gives up at the deadline instead of hanging a cold start', async () => {
    ssm.delayMs = 5000; // the parameter store answers far too late
    const started = Date.now();

    await expect(ssmSettings('/wa-sip-bridge/prod', { client: client(), timeoutMs: 150 })).rejects.toThrow(
      /no answer within 150 ms/,
    );
    // Gave up at its own deadline, long before the answer (a wide bound: scheduling may delay it).
    expect(Date.now() - started).toBeLessThan(4000);
  });

  it.each(['wa-sip-bridge/prod', '/', '', '/a b'])('rejects the prefix %j', (prefix) => {
    expect(() => normalizePrefix(prefix)).toThrow(TypeError);
  });
});
