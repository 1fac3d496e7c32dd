/**
 * SIP_ADVERTISED_ADDRESS: the SIP leg advertises its own address, apart from the WhatsApp leg's —
 * a PBX over VPN or Direct Connect reaches the worker's private address, while ICE towards Meta
 * always needs the public one (issue 15 item 2).
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '#core/errors.ts';
import { loadWorkerConfig } from '#worker/config.ts';

const env = (extra: Record<string, string>) => ({
  SIP_TARGET_URI: 'sip:agent@10.20.0.5:5060',
  META_GRAPH_URL: 'http://127.0.0.1:1/v23.0',
  META_ACCESS_TOKEN: 'token',
  CALLS_TABLE: 'calls',
  WORKERS_TABLE: 'workers',
  CALL_JOBS_QUEUE_URL: 'http://127.0.0.1:1/queue/jobs',
  SIP_BIND_ADDRESS: '10.0.1.23',
  RTP_BIND_ADDRESS: '10.0.1.23',
  PUBLIC_ADDRESS: '203.0.113.7',
  ...extra,
});

describe('Setting: SIP_ADVERTISED_ADDRESS', () => {
  it('public (default): both legs advertise the public address', () => {
    const c = loadWorkerConfig(env({}));
    expect(c.sip).toMatchObject({ advertisedAddress: '203.0.113.7', fromDomain: '203.0.113.7' });
    expect(c.media).toMatchObject({ publicAddress: '203.0.113.7', sipAddress: '203.0.113.7' });
  });

  it('private: the SIP leg advertises its bind addresses, the WhatsApp leg still the public one', () => {
    const c = loadWorkerConfig(env({ SIP_ADVERTISED_ADDRESS: 'private' }));
    expect(c.sip.advertisedAddress).toBeUndefined(); // Via/Contact: the bind address
    expect(c.sip.fromDomain).toBe('10.0.1.23');
    expect(c.media.sipAddress).toBeUndefined(); // SIP SDP c=: the RTP socket's bind address
    expect(c.media.publicAddress).toBe('203.0.113.7'); // ICE candidates towards Meta
  });

  it('an explicit IPv4 (your own NAT in front), and nothing else', () => {
    const c = loadWorkerConfig(env({ SIP_ADVERTISED_ADDRESS: '198.51.100.9' }));
    expect(c.sip.advertisedAddress).toBe('198.51.100.9');
    expect(c.media.sipAddress).toBe('198.51.100.9');
    expect(() => loadWorkerConfig(env({ SIP_ADVERTISED_ADDRESS: 'pbx.example' }))).toThrow(ConfigError);
  });
});
