/** Which of drachtio-server's contacts the worker's own Contact names (the sidecar lists TLS first). */
import { describe, expect, it } from 'vitest';
import { firstHostPort } from '#worker/sip/drachtio/drachtio-adapter.ts';

describe('the drachtio adapter’s local contact', () => {
  it('is the plain UDP/TCP contact even when drachtio lists TLS first (the AWS sidecar with a certificate)', () => {
    expect(firstHostPort('tls/203.0.113.9:5061,tcp/203.0.113.9:5060,udp/203.0.113.9:5060')).toEqual({
      host: '203.0.113.9',
      port: 5060,
    });
  });

  it('is the only contact there is, and IPv6 keeps its brackets', () => {
    expect(firstHostPort('udp/127.0.0.1:25060')).toEqual({ host: '127.0.0.1', port: 25060 });
    expect(firstHostPort('tls/[2001:db8::1]:5061')).toEqual({ host: '[2001:db8::1]', port: 5061 });
  });
});
