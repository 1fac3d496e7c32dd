/**
 * SIP_STACK picks the worker's SIP adapter: the in-process `sip` package by default (local mode),
 * drachtio-srf over a drachtio-server with SIP_STACK=drachtio (issue 14's fixed names).
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '#core/errors.ts';
import { loadWorkerConfig } from '#worker/config.ts';

const env = (extra: Record<string, string>) => ({
  SIP_TARGET_URI: 'sip:agent@127.0.0.2:5060',
  META_GRAPH_URL: 'http://127.0.0.1:1/v23.0',
  META_ACCESS_TOKEN: 'token',
  CALLS_TABLE: 'calls',
  WORKERS_TABLE: 'workers',
  CALL_JOBS_QUEUE_URL: 'http://127.0.0.1:1/queue/jobs',
  ...extra,
});

describe('Setting: SIP_STACK', () => {
  it('is the in-process stack when unset', () => {
    expect(loadWorkerConfig(env({})).sip.stack).toEqual({ kind: 'inprocess' });
  });

  it('drachtio connects to DRACHTIO_HOST:DRACHTIO_PORT (default 127.0.0.1:9022) with DRACHTIO_SECRET', () => {
    expect(loadWorkerConfig(env({ SIP_STACK: 'drachtio', DRACHTIO_SECRET: 'cymru' })).sip.stack).toEqual({
      kind: 'drachtio',
      host: '127.0.0.1',
      port: 9022,
      secret: 'cymru',
    });
    expect(
      loadWorkerConfig(
        env({ SIP_STACK: 'drachtio', DRACHTIO_HOST: 'sip-sidecar', DRACHTIO_PORT: '9023', DRACHTIO_SECRET: 's' }),
      ).sip.stack,
    ).toMatchObject({ host: 'sip-sidecar', port: 9023 });
  });

  it('refuses drachtio without a secret and an unknown stack, naming the setting', () => {
    expect(() => loadWorkerConfig(env({ SIP_STACK: 'drachtio' }))).toThrow(ConfigError);
    expect(() => loadWorkerConfig(env({ SIP_STACK: 'drachtio' }))).toThrow(/DRACHTIO_SECRET/);
    expect(() => loadWorkerConfig(env({ SIP_STACK: 'pjsip' }))).toThrow(/SIP_STACK/);
  });
});

describe('Settings: SIP_TLS_VERIFY and SIP_TLS_CA_FILE', () => {
  const withTls = { SIP_TRANSPORTS: 'udp,tls', SIP_TLS_CERT_FILE: '/c.pem', SIP_TLS_KEY_FILE: '/k.pem' };

  it('verification is on unless SIP_TLS_VERIFY=false, and anything else is refused naming the setting', () => {
    expect(loadWorkerConfig(env({})).sip.tlsVerify).toBe(true);
    expect(loadWorkerConfig(env({ SIP_TLS_VERIFY: 'false' })).sip.tlsVerify).toBe(false);
    expect(() => loadWorkerConfig(env({ SIP_TLS_VERIFY: 'no' }))).toThrow(/SIP_TLS_VERIFY/);
  });

  it('the CA file joins the TLS files of the in-process stack', () => {
    expect(loadWorkerConfig(env({ ...withTls, SIP_TLS_CA_FILE: '/pbx-ca.pem' })).sip.tls).toEqual({
      port: 5061,
      certFile: '/c.pem',
      keyFile: '/k.pem',
      caFile: '/pbx-ca.pem',
    });
    expect(loadWorkerConfig(env(withTls)).sip.tls).not.toHaveProperty('caFile');
  });
});
