/**
 * Contract stories of digest authentication of inbound INVITEs (the PBX starting calls), run on
 * each SipPort adapter: without credentials or with wrong ones the INVITE gets 401 and never
 * reaches the handler; with the right ones it does.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSipPort } from '#worker/sip/sip-adapter.ts';
import type { InboundSipCall, SipCallEvent, SipPort } from '#worker/sip/sip-port.ts';
import { freePort } from '../../../helpers/free-port.ts';
import { type AdapterName, type StartedAdapter, startAdapter } from '../helpers/adapters.ts';

/** Register the inbound digest contract stories for adapter `name`. */
export function inboundDigestContract(name: AdapterName): void {
  const silent = pino({ level: 'silent' });
  const credentials = { realm: 'wa-sip-bridge', username: 'pbx-1', password: 'correct horse battery' };
  let bridgeAdapter: StartedAdapter;
  let bridge: SipPort;
  let pbx: SipPort;
  let bridgeUri: string;
  let reached: InboundSipCall[] = [];

  beforeAll(async () => {
    reached = [];
    bridgeAdapter = await startAdapter(name, { inboundAuth: credentials, logger: silent });
    bridge = bridgeAdapter.port;
    const port = bridgeAdapter.sipPort;
    bridge.onInvite((call) => {
      reached.push(call);
      call.reject(486, 'Busy Here');
    });
    bridgeUri = `sip:+5511987654321@127.0.0.1:${port}`;
    // The PBX is the in-process UAC on both runs: an independent digest client for drachtio's UAS.
    pbx = await createSipPort({ address: '127.0.0.2', port: await freePort('127.0.0.2'), logger: silent });
  });
  afterAll(async () => {
    await pbx?.close();
    await bridgeAdapter?.close();
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
}
