/**
 * TLS transport between two instances of our port (127.0.0.1 ⇄ 127.0.0.2) with a throw-away
 * self-signed certificate made by `openssl` at test time, carrying IP SANs for both addresses.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSipPort } from '#worker/sip/sip-adapter.ts';
import type { InboundSipCall, InboundSipCallEvent, SipCallEvent, SipPort } from '#worker/sip/sip-port.ts';
import { record } from './helpers/events.ts';
import { freePort, sdp } from './helpers/far-end.ts';

let dir: string;
let key: Buffer;
let cert: Buffer;
let a: SipPort;
let b: SipPort;
let bTls: number;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sip-tls-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=wa-sip-bridge-test',
      '-addext',
      'subjectAltName=IP:127.0.0.1,IP:127.0.0.2',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
  key = readFileSync(join(dir, 'key.pem'));
  cert = readFileSync(join(dir, 'cert.pem'));
  const aTls = await freePort(['127.0.0.1']);
  bTls = await freePort(['127.0.0.2']);
  a = await createSipPort({
    address: '127.0.0.1',
    port: await freePort(['127.0.0.1']),
    transports: ['udp', 'tls'],
    tls: { key, cert, ca: cert, port: aTls },
  });
  b = await createSipPort({
    address: '127.0.0.2',
    port: await freePort(['127.0.0.2']),
    transports: ['tls'],
    tls: { key, cert, ca: cert, port: bTls },
  });
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('Transport: TLS', () => {
  it('INVITE, 200, ACK and BYE over TLS with a verified certificate', async () => {
    let inbound: InboundSipCall | undefined;
    b.onInvite(async (call) => {
      inbound = call;
      await call.answer(sdp('127.0.0.2', 43000));
    });
    const call = a.placeCall({
      targets: [{ uri: `sip:agent@127.0.0.2:${bTls};transport=tls` }],
      from: { user: '+447700900123' },
      sdpOffer: sdp('127.0.0.1', 33000),
      answerTimeoutMs: 5000,
    });
    const log = record<SipCallEvent>(call);
    await log.next('answered');
    expect(inbound?.source.transport).toBe('tls');
    const inLog = record<InboundSipCallEvent>(inbound as InboundSipCall);
    await new Promise((r) => setTimeout(r, 50));
    await call.hangUp();
    await inLog.next('remote-hangup');
  });

  it('a peer certificate we do not trust fails the target (503) instead of connecting', async () => {
    const c = await createSipPort({
      address: '127.0.0.1',
      port: await freePort(['127.0.0.1']),
      transports: ['tls'],
      tls: { key, cert, port: await freePort(['127.0.0.1']) },
    });
    try {
      const call = c.placeCall({
        targets: [{ uri: `sip:agent@127.0.0.2:${bTls};transport=tls` }],
        from: { user: 'x' },
        sdpOffer: sdp('127.0.0.1', 33002),
        answerTimeoutMs: 5000,
      });
      expect((await record<SipCallEvent>(call).next('failed')).status).toBe(503);
    } finally {
      await c.close();
    }
  });
});
