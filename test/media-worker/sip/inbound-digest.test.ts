/**
 * Digest authentication of inbound INVITEs (the PBX starting calls): without credentials or with
 * wrong ones the INVITE gets 401 and never reaches the handler; with the right ones it does.
 */
import { createHash } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DigestVerifier } from '#worker/sip/digest-server.ts';
import { createSipPort } from '#worker/sip/sip-adapter.ts';
import type { InboundSipCall, SipCallEvent, SipPort } from '#worker/sip/sip-port.ts';
import { freePort } from '../../helpers/free-port.ts';

const silent = pino({ level: 'silent' });
const credentials = { realm: 'wa-sip-bridge', username: 'pbx-1', password: 'correct horse battery' };
let bridge: SipPort;
let pbx: SipPort;
let bridgeUri: string;
const reached: InboundSipCall[] = [];

beforeAll(async () => {
  const port = await freePort('127.0.0.1');
  bridge = await createSipPort({ address: '127.0.0.1', port, inboundAuth: credentials, logger: silent });
  bridge.onInvite((call) => {
    reached.push(call);
    call.reject(486, 'Busy Here');
  });
  bridgeUri = `sip:+5511987654321@127.0.0.1:${port}`;
  pbx = await createSipPort({ address: '127.0.0.2', port: await freePort('127.0.0.2'), logger: silent });
});
afterAll(async () => {
  await pbx?.close();
  await bridge?.close();
});

function dial(auth?: { username: string; password: string }): Promise<Extract<SipCallEvent, { type: 'failed' }>> {
  return new Promise((resolve) => {
    const call = pbx.placeCall({
      targets: [{ uri: bridgeUri, ...(auth ? { auth } : {}) }],
      from: { user: '100' },
      sdpOffer: 'v=0\r\n',
      answerTimeoutMs: 5000,
    });
    call.on((e) => {
      if (e.type === 'failed') resolve(e);
    });
  });
}

describe('inbound digest authentication', () => {
  it('answers 401 to an INVITE without credentials and keeps it from the handler', async () => {
    expect((await dial()).status).toBe(401);
    expect(reached).toHaveLength(0);
  });

  it('answers 401 to wrong credentials and keeps the INVITE from the handler', async () => {
    expect((await dial({ username: 'pbx-1', password: 'wrong password' })).status).toBe(401);
    expect((await dial({ username: 'someone-else', password: credentials.password })).status).toBe(401);
    expect(reached).toHaveLength(0);
  });

  it('lets the INVITE with the right credentials through to the handler', async () => {
    expect((await dial({ username: 'pbx-1', password: credentials.password })).status).toBe(486);
    expect(reached).toHaveLength(1);
    expect(reached[0]!.headers.authorization).toBeUndefined(); // credentials never reach call logic
  });
});

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

describe('DigestVerifier', () => {
  it('refuses nonces it did not issue and asks again (stale) after the nonce lifetime', () => {
    let now = 1_000_000;
    const v = new DigestVerifier(credentials, { nonceTtlMs: 1000, now: () => now });
    const nonce = v.challenge().nonce!.replace(/"/g, '');
    const answer = (n: string) => {
      // RFC 2617 qop=auth response, computed independently of the verifier.
      const ha1 = md5(`pbx-1:wa-sip-bridge:${credentials.password}`);
      const ha2 = md5('INVITE:sip:+1@127.0.0.1');
      return [
        {
          scheme: 'Digest',
          username: '"pbx-1"',
          realm: '"wa-sip-bridge"',
          nonce: `"${n}"`,
          uri: '"sip:+1@127.0.0.1"',
          qop: 'auth',
          nc: '00000001',
          cnonce: '"c"',
          response: `"${md5(`${ha1}:${n}:00000001:c:auth:${ha2}`)}"`,
        },
      ];
    };
    expect(v.verify('INVITE', answer(nonce))).toBe('ok');
    expect(v.verify('INVITE', answer(`${nonce.split('.')[0]}.forged0000000000000000`))).toBe('bad');
    now += 2000;
    expect(v.verify('INVITE', answer(nonce))).toBe('stale');
    expect(v.verify('INVITE', undefined)).toBe('missing');
  });
});
