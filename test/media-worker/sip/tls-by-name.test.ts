/**
 * SIP over TLS to a PBX named by host name (issue 14 item 4), in-process adapter: the TLS client
 * sends the target's host name as SNI (RFC 6066 §3; none for an IP literal) and verifies the
 * server certificate against that name (RFC 5922 §7.2) with the system CAs plus the optional CA
 * file. The PBX is a TLS stand-in on loopback; `localhost` is the name that resolves everywhere.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSipPort, type SipTlsOptions } from '#worker/sip/sip-adapter.ts';
import type { SipCallEvent, SipPort } from '#worker/sip/sip-port.ts';
import { resolveTlsNextHop } from '#worker/sip/sip-tls.ts';
import { record } from './helpers/events.ts';
import { freePort, sdp } from './helpers/far-end.ts';
import { makePki, startTlsPbx, type TestPki, type TlsPbx } from './helpers/tls-pbx.ts';

let pki: TestPki;
let rogue: TestPki;
let ours: { key: Buffer; cert: Buffer };
/** Answers 200; certificate for `localhost` (and 127.0.0.1) from the test CA. */
let pbx: TlsPbx;
/** Would refuse with 486; certificate for `other.test` from the test CA. */
let otherName: TlsPbx;
/** Would refuse with 486; certificate for `localhost` from a CA nobody trusts. */
let untrusted: TlsPbx;
const ports: SipPort[] = [];

beforeAll(async () => {
  pki = makePki('wa-sip-bridge test CA');
  rogue = makePki('rogue CA');
  ours = pki.leaf('bridge', 'DNS:bridge.test');
  pbx = await startTlsPbx({ ...pki.leaf('localhost', 'DNS:localhost,IP:127.0.0.1'), inviteStatus: 200 });
  otherName = await startTlsPbx({ ...pki.leaf('other', 'DNS:other.test'), inviteStatus: 486 });
  untrusted = await startTlsPbx({ ...rogue.leaf('localhost', 'DNS:localhost'), inviteStatus: 486 });
});

afterAll(async () => {
  await Promise.all(ports.map((p) => p.close()));
  await Promise.all([pbx?.close(), otherName?.close(), untrusted?.close()]);
  pki?.remove();
  rogue?.remove();
});

async function bridge(tls: Partial<SipTlsOptions> = {}): Promise<SipPort> {
  const port = await createSipPort({
    address: '127.0.0.3',
    port: await freePort(['127.0.0.3']),
    transports: ['udp', 'tls'],
    tls: { ...ours, port: await freePort(['127.0.0.3']), ...tls },
  });
  ports.push(port);
  return port;
}

const call = (port: SipPort, ...uris: string[]) =>
  port.placeCall({
    targets: uris.map((uri) => ({ uri })),
    from: { user: '+447700900123' },
    sdpOffer: sdp('127.0.0.3', 33000),
    answerTimeoutMs: 10_000,
  });

describe('SIP over TLS to a host name (in-process adapter)', () => {
  it('sends the host name as SNI, verifies the certificate for it, and the call is answered', async () => {
    const port = await bridge({ ca: pki.caCert });
    const c = call(port, `sip:agent@localhost:${pbx.port};transport=tls`);
    const log = record<SipCallEvent>(c);
    await log.next('answered', 10_000);
    expect(pbx.servernames).toContain('localhost');
    expect(pbx.requests[0]).toMatch(/^INVITE sip:agent@localhost:/);
    await c.hangUp();
    expect(pbx.requests.some((r) => r.startsWith('BYE '))).toBe(true);
  });

  it('a sips: URI means TLS too', async () => {
    const port = await bridge({ ca: pki.caCert });
    const before = pbx.requests.length;
    const c = call(port, `sips:agent@localhost:${pbx.port}`);
    await record<SipCallEvent>(c).next('answered', 10_000);
    expect(pbx.requests[before]).toMatch(/^INVITE sips:agent@localhost:/);
    await c.hangUp();
  });

  it('an IP-literal target gets no SNI (RFC 6066 §3) and is verified against the IP in the certificate', async () => {
    const port = await bridge({ ca: pki.caCert });
    const before = pbx.servernames.length;
    const c = call(port, `sip:agent@127.0.0.1:${pbx.port};transport=tls`);
    await record<SipCallEvent>(c).next('answered', 10_000);
    expect(pbx.servernames.slice(before)).toEqual([false]);
    await c.hangUp();
  });

  it('a certificate for another name fails that target as 503 "TLS failed" and failover moves on', async () => {
    const port = await bridge({ ca: pki.caCert });
    const c = call(
      port,
      `sip:agent@localhost:${otherName.port};transport=tls`,
      `sip:agent@localhost:${pbx.port};transport=tls`,
    );
    const log = record<SipCallEvent>(c);
    await log.next('answered', 10_000);
    expect(c.answeredTarget).toBe(`sip:agent@localhost:${pbx.port};transport=tls`);
    expect(otherName.requests).toEqual([]);
    await c.hangUp();

    const alone = call(port, `sip:agent@localhost:${otherName.port};transport=tls`);
    const failed = await record<SipCallEvent>(alone).next('failed', 10_000);
    expect(failed.status).toBe(503);
    expect(failed.reason).toMatch(/^TLS failed: .*localhost.*ERR_TLS_CERT_ALTNAME_INVALID/);
  });

  it('a certificate from a CA we do not trust is refused', async () => {
    const port = await bridge({ ca: pki.caCert });
    const failed = await record<SipCallEvent>(call(port, `sip:agent@localhost:${untrusted.port};transport=tls`)).next(
      'failed',
      10_000,
    );
    expect(failed.status).toBe(503);
    expect(failed.reason).toMatch(/^TLS failed: .*localhost.*(UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED)/);
    expect(untrusted.requests).toEqual([]);
  });

  it('without the CA file the test CA is not trusted; the system CAs alone do not vouch for it', async () => {
    const port = await bridge();
    const failed = await record<SipCallEvent>(call(port, `sip:agent@localhost:${pbx.port};transport=tls`)).next(
      'failed',
      10_000,
    );
    expect(failed.status).toBe(503);
    expect(failed.reason).toMatch(/^TLS failed: /);
  });

  it('with verification turned off (a lab) the untrusted PBX is reached', async () => {
    const port = await bridge({ rejectUnauthorized: false });
    const failed = await record<SipCallEvent>(call(port, `sip:agent@localhost:${untrusted.port};transport=tls`)).next(
      'failed',
      10_000,
    );
    expect(failed.status).toBe(486);
    expect(untrusted.requests[0]).toMatch(/^INVITE /);
  });
});

describe('Function: resolveTlsNextHop (RFC 3263 §4.2, RFC 5922 §4.1)', () => {
  const dns = (srv: Record<string, { name: string; port: number; priority: number; weight: number }[]>) => {
    const asked: string[] = [];
    return {
      asked,
      lookup: async (host: string) => {
        asked.push(`A ${host}`);
        if (host === 'nowhere.test') throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
        return host === 'sbc2.example.com' ? '192.0.2.2' : '192.0.2.1';
      },
      resolveSrv: async (name: string) => {
        asked.push(`SRV ${name}`);
        const found = srv[name];
        if (!found) throw Object.assign(new Error('no SRV'), { code: 'ENODATA' });
        return found;
      },
    };
  };

  it('an explicit port: the address of the name, no SRV query, verified as that name', async () => {
    const d = dns({});
    expect(await resolveTlsNextHop({ host: 'pbx.example.com', port: 5062 }, d)).toEqual({
      address: '192.0.2.1',
      port: 5062,
      name: 'pbx.example.com',
    });
    expect(d.asked).toEqual(['A pbx.example.com']);
  });

  it('no port: the best _sips._tcp SRV record, still verified as the domain of the URI', async () => {
    const d = dns({
      '_sips._tcp.example.com': [
        { name: 'sbc1.example.com', port: 5071, priority: 20, weight: 0 },
        { name: 'sbc2.example.com', port: 5072, priority: 10, weight: 5 },
      ],
    });
    expect(await resolveTlsNextHop({ host: 'example.com' }, d)).toEqual({
      address: '192.0.2.2',
      port: 5072,
      name: 'example.com',
    });
  });

  it('no port and no SRV record: the name itself on 5061', async () => {
    const d = dns({});
    expect(await resolveTlsNextHop({ host: 'example.com' }, d)).toEqual({
      address: '192.0.2.1',
      port: 5061,
      name: 'example.com',
    });
    expect(d.asked).toEqual(['SRV _sips._tcp.example.com', 'SRV _sip._tls.example.com', 'A example.com']);
  });

  it('a name that does not resolve is an error naming it', async () => {
    await expect(resolveTlsNextHop({ host: 'nowhere.test', port: 5061 }, dns({}))).rejects.toThrow(
      /nowhere\.test.*ENOTFOUND/,
    );
  });
});

describe('SIP over TLS to a domain with an SRV record', () => {
  it('sips:agent@pbx.example.com follows _sips._tcp SRV to the PBX and sends and verifies the domain name', async () => {
    const srvPki = makePki('SRV test CA');
    const domainPbx = await startTlsPbx({ ...srvPki.leaf('pbx', 'DNS:pbx.example.com'), inviteStatus: 486 });
    try {
      const port = await createSipPort({
        address: '127.0.0.3',
        port: await freePort(['127.0.0.3']),
        transports: ['udp', 'tls'],
        tls: { ...ours, port: await freePort(['127.0.0.3']), ca: srvPki.caCert },
        dns: {
          lookup: async (host) => (host === 'sbc.example.net' ? '127.0.0.1' : Promise.reject(new Error(host))),
          resolveSrv: async (name) =>
            name === '_sips._tcp.pbx.example.com'
              ? [{ name: 'sbc.example.net', port: domainPbx.port, priority: 0, weight: 0 }]
              : Promise.reject(new Error(name)),
        },
      });
      ports.push(port);
      const failed = await record<SipCallEvent>(call(port, 'sips:agent@pbx.example.com')).next('failed', 10_000);
      expect(failed.status).toBe(486);
      expect(domainPbx.servernames).toEqual(['pbx.example.com']);
      expect(domainPbx.requests[0]).toMatch(/^INVITE sips:agent@pbx\.example\.com SIP\/2\.0/);
    } finally {
      await domainPbx.close();
      srvPki.remove();
    }
  });
});
