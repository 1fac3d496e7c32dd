/**
 * The strongest TLS story (issue 14 item 4): an independent SIP implementation, baresip (libre's
 * TLS on OpenSSL), answers our INVITE over TLS. The bridge names it `localhost`, sends that name
 * as SNI and accepts its certificate only because the test CA (the SIP_TLS_CA_FILE) vouches for
 * `localhost`. SIPp here is built without TLS (`sipp -v`: SCTP-PCAP-RTPSTREAM), so it has no TLS
 * scenario.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSipPort } from '#worker/sip/sip-adapter.ts';
import type { SipCallEvent, SipPort } from '#worker/sip/sip-port.ts';
import { record } from '../../media-worker/sip/helpers/events.ts';
import { freePort, sdp } from '../../media-worker/sip/helpers/far-end.ts';
import { makePki, type TestPki } from '../../media-worker/sip/helpers/tls-pbx.ts';
import { type BaresipEcho, startBaresipEcho } from './baresip-echo.ts';

let pki: TestPki;
let baresip: BaresipEcho;
let bridge: SipPort;

beforeAll(async () => {
  pki = makePki('wa-sip-bridge test CA');
  const leaf = pki.leaf('localhost', 'DNS:localhost');
  const pem = join(pki.dir, 'baresip.pem');
  writeFileSync(pem, Buffer.concat([leaf.cert, leaf.key]));
  baresip = await startBaresipEcho({ address: '127.0.0.1', codecs: ['PCMU'], tlsCertificate: pem });
  bridge = await createSipPort({
    address: '127.0.0.3',
    port: await freePort(['127.0.0.3']),
    transports: ['udp', 'tls'],
    tls: { ...pki.leaf('bridge', 'DNS:bridge.test'), port: await freePort(['127.0.0.3']), ca: pki.caCert },
  });
});

afterAll(async () => {
  await bridge?.close();
  await baresip?.stop();
  pki?.remove();
});

describe('SIP over TLS to baresip by host name', () => {
  it('INVITE over TLS to sip:echo@localhost is verified for that name, answered by baresip, and hung up', async () => {
    const target = `sip:echo@localhost:${baresip.sipPort + 1};transport=tls`;
    const call = bridge.placeCall({
      targets: [{ uri: target }],
      from: { user: '+447700900123' },
      sdpOffer: sdp('127.0.0.3', 33010),
      answerTimeoutMs: 10_000,
    });
    const log = record<SipCallEvent>(call);
    const answered = await log.next('answered', 10_000);
    expect(answered.target).toBe(target);
    expect(answered.sdp).toMatch(/m=audio \d+ RTP\/AVP 0/);
    await baresip.waitForOutput(
      /INVITE sip:echo@localhost:\d+;transport=tls SIP\/2\.0[\s\S]*?Via: SIP\/2\.0\/TLS /,
      5000,
    );
    const mark = baresip.mark();
    await call.hangUp();
    await baresip.waitForOutput(/BYE sip:/, 5000, mark);
  });
});
