/**
 * Contract stories of digest authentication of inbound INVITEs (the PBX starting calls), run on
 * each SipPort adapter: without credentials or with wrong ones the INVITE gets 401 and never
 * reaches the handler; with the right ones it does.
 */
import { createHash } from 'node:crypto';
import pino from 'pino';
import type { SipMessage } from 'sip';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '#core/clock.ts';
import { createSipPort } from '#worker/sip/sip-adapter.ts';
import type { InboundSipCall, SipCallEvent, SipPort } from '#worker/sip/sip-port.ts';
import { freePort } from '../../../helpers/free-port.ts';
import { type AdapterName, type StartedAdapter, startAdapter } from '../helpers/adapters.ts';
import { FarEnd } from '../helpers/far-end.ts';

const md5 = (s: string) => createHash('md5').update(s).digest('hex');
const unquote = (s: unknown) => String(s ?? '').replace(/^"(.*)"$/, '$1');

/** Register the inbound digest contract stories for adapter `name`. */
export function inboundDigestContract(name: AdapterName): void {
  const silent = pino({ level: 'silent' });
  const credentials = { realm: 'wa-sip-bridge', username: 'pbx-1', password: 'correct horse battery' };
  let bridgeAdapter: StartedAdapter;
  let bridge: SipPort;
  let pbx: SipPort;
  let bridgeUri: string;
  let reached: InboundSipCall[] = [];
  /** The bridge's time source for nonce lifetimes. */
  const clock = new ManualClock(5_000_000);
  /** A raw SIP client (the `sip` package on 127.0.0.2) that writes its own Authorization headers. */
  let raw: FarEnd;

  beforeAll(async () => {
    reached = [];
    bridgeAdapter = await startAdapter(name, { inboundAuth: credentials, logger: silent, clock });
    raw = await FarEnd.start('127.0.0.2');
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
    raw?.close();
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

  let seq = 0;
  /** An INVITE from the raw client to `uri`, with `authorization` when given. */
  function invite(uri: string, authorization?: Record<string, string>): SipMessage {
    seq += 1;
    return {
      method: 'INVITE',
      uri,
      headers: {
        via: [],
        to: { uri, params: {} },
        from: { uri: 'sip:100@127.0.0.2', params: { tag: `raw${seq}` } },
        'call-id': `digest-${seq}-${Math.random()}`,
        cseq: { seq: 1, method: 'INVITE' },
        contact: [{ uri: `sip:100@127.0.0.2:${raw.port}`, params: {} }],
        'max-forwards': 70,
        'content-type': 'application/sdp',
        ...(authorization ? { authorization: [authorization] } : {}),
      },
      content: 'v=0\r\n',
    };
  }

  /** The challenge of a 401 to an unauthenticated INVITE. */
  async function challenge(): Promise<Record<string, string>> {
    const rs = await raw.request(invite(bridgeUri));
    expect(rs.status).toBe(401);
    return (rs.headers['www-authenticate'] as Record<string, string>[])[0] ?? {};
  }

  /** A correct RFC 2617 qop=auth answer to `ch` for the digest-uri `uri`, computed independently. */
  function answer(ch: Record<string, string>, uri: string, nc: string): Record<string, string> {
    const nonce = unquote(ch.nonce);
    const ha1 = md5(`${credentials.username}:${credentials.realm}:${credentials.password}`);
    const ha2 = md5(`INVITE:${uri}`);
    return {
      scheme: 'Digest',
      username: `"${credentials.username}"`,
      realm: `"${credentials.realm}"`,
      nonce: `"${nonce}"`,
      uri: `"${uri}"`,
      qop: 'auth',
      nc,
      cnonce: '"0a4f113b"',
      algorithm: 'MD5',
      response: `"${md5(`${ha1}:${nonce}:${nc}:0a4f113b:auth:${ha2}`)}"`,
    };
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

  describe('inbound digest authentication — server checks (RFC 7616, RFC 2617 §3.2.2)', () => {
    it('an answer whose digest-uri is not the Request-URI is refused 400 (RFC 2617 §3.2.2.5) and never reaches the handler', async () => {
      const before = reached.length;
      const ch = await challenge();
      const other = bridgeUri.replace('+5511987654321', '+5511000000000');
      const rs = await raw.request(invite(bridgeUri, answer(ch, other, '00000001')));
      expect(rs.status).toBe(400);
      expect(reached).toHaveLength(before);
    });

    it('a replayed nonce count is refused with a new challenge; a higher count on the same nonce is let through', async () => {
      const before = reached.length;
      const ch = await challenge();
      const first = answer(ch, bridgeUri, '00000001');
      expect((await raw.request(invite(bridgeUri, first))).status).toBe(486);
      // The same Authorization again (a captured INVITE replayed as a new call).
      const replayed = await raw.request(invite(bridgeUri, first));
      expect(replayed.status).toBe(401);
      const fresh = (replayed.headers['www-authenticate'] as Record<string, string>[])[0];
      expect(unquote(fresh?.nonce)).not.toBe(unquote(ch.nonce));
      expect(reached).toHaveLength(before + 1);
      expect((await raw.request(invite(bridgeUri, answer(ch, bridgeUri, '00000002')))).status).toBe(486);
      expect(reached).toHaveLength(before + 2);
    });

    it('a right answer to a nonce past its lifetime (300 s) gets a new challenge with stale=true', async () => {
      const before = reached.length;
      const ch = await challenge();
      clock.advance(300_001);
      const rs = await raw.request(invite(bridgeUri, answer(ch, bridgeUri, '00000001')));
      expect(rs.status).toBe(401);
      const fresh = (rs.headers['www-authenticate'] as Record<string, string>[])[0];
      expect(unquote(fresh?.stale)).toBe('true');
      expect(unquote(fresh?.nonce)).not.toBe(unquote(ch.nonce));
      expect(reached).toHaveLength(before);
    });
  });
}
