/** Which settings are SSM parameters (`lib/settings.ts`), derived from the config schemas. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONTROL_PLANE_SETTINGS } from '#functions/shared/config.ts';
import { WORKER_SETTINGS } from '#worker/config.ts';
import {
  CONTROL_PLANE_WIRED,
  operatorParameters,
  parameterPrefix,
  sipTlsSource,
  WORKER_WIRED,
} from '../../lib/settings.ts';

describe('Function: operatorParameters', () => {
  const params = operatorParameters('prod');
  const byKey = new Map(params.map((p) => [p.key, p]));

  it('puts every parameter under the stage prefix', () => {
    expect(parameterPrefix('prod')).toBe('/wa-sip-bridge/prod');
    for (const p of params) expect(p.name).toBe(`/wa-sip-bridge/prod/${p.key}`);
  });

  it('covers every setting of both schemas that the stack does not wire, once', () => {
    const expected = new Set([
      ...Object.keys(CONTROL_PLANE_SETTINGS).filter((k) => !(CONTROL_PLANE_WIRED as readonly string[]).includes(k)),
      ...Object.keys(WORKER_SETTINGS).filter((k) => !(WORKER_WIRED as readonly string[]).includes(k)),
    ]);
    expect(new Set(params.map((p) => p.key))).toEqual(expected);
    expect(params).toHaveLength(expected.size);
  });

  it('makes every secret of either schema a SecureString, and nothing else', () => {
    const secrets = new Set(
      [...Object.entries(CONTROL_PLANE_SETTINGS), ...Object.entries(WORKER_SETTINGS)]
        .filter(([, s]) => 'secret' in s && s.secret)
        .map(([k]) => k)
        .filter((k) => byKey.has(k)),
    );
    expect(new Set(params.filter((p) => p.type === 'SecureString').map((p) => p.key))).toEqual(secrets);
    expect(byKey.get('META_APP_SECRET')).toMatchObject({
      type: 'SecureString',
      required: true,
      usedBy: ['control-plane'],
    });
  });

  it('shares one parameter between the deployables when both read the setting', () => {
    expect(byKey.get('META_ACCESS_TOKEN')).toMatchObject({
      type: 'SecureString',
      required: true,
      usedBy: ['control-plane', 'media-worker'],
    });
    expect(byKey.get('SIP_TARGET_URI')).toMatchObject({ required: true, usedBy: ['media-worker'] });
  });

  it('never asks the operator for table names, queue URLs, ports or addresses', () => {
    for (const key of [
      'CALLS_TABLE',
      'CALL_JOBS_QUEUE_URL',
      'SIP_PORT',
      'RTP_PORT_MIN',
      'PUBLIC_ADDRESS',
      'WORKER_ID',
    ]) {
      expect(byKey.has(key)).toBe(false);
    }
  });
});

describe('README: Deploy to AWS', () => {
  it('lists exactly the settings the stack wires, so the parameter guidance cannot drift', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const start = readme.indexOf('except the ones the stack sets itself');
    const end = readme.indexOf('A key both tables list', start);
    expect(start).toBeGreaterThan(0);
    const listed = new Set([...readme.slice(start, end).matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1]));
    expect(listed).toEqual(new Set([...CONTROL_PLANE_WIRED, ...WORKER_WIRED]));
  });
});

describe('Function: sipTlsSource (the sipTlsSecret context key)', () => {
  it('reads a Secrets Manager secret from its ARN or its name', () => {
    const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:wa-sip-tls-AbCdEf';
    expect(sipTlsSource(arn)).toEqual({ kind: 'secretsmanager', arn });
    expect(sipTlsSource('wa-sip-tls')).toEqual({ kind: 'secretsmanager', name: 'wa-sip-tls' });
  });

  it('reads an SSM SecureString from its name (a leading slash) or its ARN', () => {
    expect(sipTlsSource('/pki/tls.pem')).toEqual({ kind: 'ssm', name: '/pki/tls.pem' });
    expect(sipTlsSource('arn:aws:ssm:eu-west-1:123456789012:parameter/pki/tls.pem')).toEqual({
      kind: 'ssm',
      name: '/pki/tls.pem',
    });
  });

  it('refuses what is neither, naming the context key', () => {
    expect(() => sipTlsSource('arn:aws:s3:::bucket/tls.pem')).toThrow(/sipTlsSecret/);
    expect(() => sipTlsSource('has space')).toThrow(/sipTlsSecret/);
  });
});
