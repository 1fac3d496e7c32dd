/**
 * SIP over TLS through drachtio-server 0.9.4 (issue 14 item 4). Its sofia-sip sends no SNI and can
 * verify a server certificate only together with requiring client certificates from every inbound
 * TLS peer, against its chain file alone (DRACHTIO_TLS_VERIFY_CLIENT_CERT): it cannot verify a
 * PBX by name. The adapter therefore fails closed: with SIP_TLS_VERIFY on (the default) a TLS
 * target fails as 503 "TLS failed" before anything is sent, and failover moves on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DrachtioServer, startDrachtioServer } from '#test/helpers/drachtio-server.ts';
import { createDrachtioSipPort } from '#worker/sip/drachtio/drachtio-adapter.ts';
import type { SipCallEvent, SipPort } from '#worker/sip/sip-port.ts';
import { record } from '../../media-worker/sip/helpers/events.ts';
import { FarEnd, sdp } from '../../media-worker/sip/helpers/far-end.ts';
import { makePki, startTlsPbx, type TestPki, type TlsPbx } from '../../media-worker/sip/helpers/tls-pbx.ts';

let server: DrachtioServer;
let port: SipPort;
let pki: TestPki;
let pbx: TlsPbx;
let farEnd: FarEnd;

beforeAll(async () => {
  server = await startDrachtioServer('127.0.0.1');
  port = await createDrachtioSipPort({ host: server.host, port: server.port, secret: server.secret });
  pki = makePki('wa-sip-bridge test CA');
  pbx = await startTlsPbx({ ...pki.leaf('localhost', 'DNS:localhost,IP:127.0.0.1'), inviteStatus: 200 });
  farEnd = await FarEnd.start('127.0.0.2');
  farEnd.handler = (rq, _remote, fe) => {
    if (rq.method !== 'INVITE') return false;
    fe.reply(rq, 486, 'Busy Here');
    return true;
  };
});

afterAll(async () => {
  await port?.close();
  await server?.stop();
  await pbx?.close();
  farEnd?.close();
  pki?.remove();
});

describe('drachtio adapter: SIP over TLS it cannot verify', () => {
  it('refuses a TLS target as 503 "TLS failed" with nothing sent, and fails over to the next target', async () => {
    const call = port.placeCall({
      targets: [{ uri: `sip:agent@localhost:${pbx.port};transport=tls` }, { uri: farEnd.uri() }],
      from: { user: '+447700900123' },
      sdpOffer: sdp('127.0.0.1', 33000),
      answerTimeoutMs: 10_000,
    });
    const failed = await record<SipCallEvent>(call).next('failed', 10_000);
    expect(failed).toMatchObject({ status: 486, target: farEnd.uri() });
    expect(pbx.servernames).toEqual([]);
    expect(pbx.requests).toEqual([]);

    const alone = port.placeCall({
      targets: [{ uri: `sips:agent@localhost:${pbx.port}` }],
      from: { user: '+447700900123' },
      sdpOffer: sdp('127.0.0.1', 33000),
      answerTimeoutMs: 10_000,
    });
    const refused = await record<SipCallEvent>(alone).next('failed', 10_000);
    expect(refused.status).toBe(503);
    expect(refused.reason).toMatch(/^TLS failed: drachtio-server cannot verify/);
  });
});
