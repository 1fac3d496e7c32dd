/**
 * Contract stories of calls the worker places (UAC) against an independent raw `sip`-package far
 * end on 127.0.0.2 (and 127.0.0.3 for a second target / a record-routing proxy), run on each
 * {@link SipPort} adapter (`inprocess` in `npm test`, `drachtio` in `npm run test:interop`). Real
 * UDP and TCP on loopback; nothing mocked.
 */

import pino from 'pino';
import type { SipMessage } from 'sip';
import sip from 'sip';
import digest from 'sip/digest.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '#core/clock.ts';
import { sleep, until } from '#test/helpers/async.ts';
import { expiryDelayMs, refreshDelayMs } from '#worker/sip/session-timer.ts';
import type { SipCallEvent, SipPort } from '#worker/sip/sip-port.ts';
import { SipError, waitForAnswer } from '#worker/sip/sip-port.ts';
import { type AdapterName, type StartedAdapter, startAdapter } from '../helpers/adapters.ts';
import { record } from '../helpers/events.ts';
import { FarEnd, freePort, sdp } from '../helpers/far-end.ts';

/**
 * How long a "nothing else arrived" check waits: a loopback datagram takes well under 5 ms and our
 * side sends the request in question at once, so 300 ms is clearly enough even on a loaded machine.
 */
const QUIET_MS = 300;

const OFFER = sdp('127.0.0.1', 30000);
const ANSWER = sdp('127.0.0.2', 40000);

/** Register the UAC contract stories for adapter `name`. */
export function outboundCallContract(name: AdapterName): void {
  let adapter: StartedAdapter;
  let port: SipPort;
  let fe: FarEnd;
  let fe3: FarEnd;
  /**
   * The adapter's time source, moved by hand: 503 Retry-After cooldowns on both adapters, session
   * timers in-process (drachtio-server runs the timers of the calls we place on its own clock).
   */
  const clock = new ManualClock(1_000_000);

  beforeAll(async () => {
    adapter = await startAdapter(name, { requestTimeoutMs: 2000, clock });
    port = adapter.port;
    fe = await FarEnd.start('127.0.0.2');
    fe3 = await FarEnd.start('127.0.0.3');
  });

  afterEach(() => {
    fe.handler = undefined;
    fe3.handler = undefined;
  });

  afterAll(async () => {
    await adapter?.close();
    fe?.close();
    fe3?.close();
  });

  /** Far-end script: answer every INVITE with 100 then 200 + SDP. */
  function answerAll(extra: Record<string, unknown> = {}) {
    return (rq: SipMessage, _r: unknown, f: FarEnd): boolean | undefined => {
      if (rq.method !== 'INVITE') return undefined;
      f.reply(rq, 100, 'Trying');
      f.reply(rq, 200, 'OK', { content: ANSWER, headers: extra });
      return true;
    };
  }

  /** Far-end script: answer every INVITE with a final `status`. */
  function rejectInvites(status: number, reason: string) {
    return (rq: SipMessage, _r: unknown, f: FarEnd): boolean | undefined => {
      if (rq.method !== 'INVITE') return undefined;
      f.reply(rq, status, reason);
      return true;
    };
  }

  function place(overrides: Partial<Parameters<SipPort['placeCall']>[0]> = {}) {
    const call = port.placeCall({
      targets: [{ uri: fe.uri('agent') }],
      from: { user: '+447700900123' },
      sdpOffer: OFFER,
      answerTimeoutMs: 5000,
      ...overrides,
    });
    return { call, log: record<SipCallEvent>(call) };
  }

  const byCall = (callId: string, method: string) => (r: { rq: SipMessage }) =>
    r.rq.method === method && r.rq.headers['call-id'] === callId;

  /** A session refresh (RFC 4028 §7.4): an UPDATE, or a re-INVITE (a To tag: inside the dialog). */
  const refreshOf = (callId: string) => (r: { rq: SipMessage }) =>
    r.rq.headers['call-id'] === callId &&
    (r.rq.method === 'UPDATE' || (r.rq.method === 'INVITE' && !!r.rq.headers.to?.params.tag));

  describe('Class: OutboundCall (UAC) — answer paths', () => {
    it('200 + SDP over UDP: answered, ACK is end-to-end with the INVITE CSeq and its own branch, X-headers and caller identity arrive', async () => {
      // Prepare
      fe.handler = answerAll();
      // Act
      const { call, log } = place({
        from: { user: '+447700900123', displayName: 'Ana "A" Ü' },
        headers: { 'X-WA-Call-Id': 'wacid.abc\r\nInjected: yes' },
      });
      const answered = await log.next('answered');
      const { rq: invite, remote } = await fe.next(byCall(call.callId, 'INVITE'));
      const { rq: ack } = await fe.next(byCall(call.callId, 'ACK'));
      // Assess
      expect(answered.sdp).toContain('m=audio 40000');
      // drachtio-server keeps 100 Trying to itself.
      expect(log.types()).toEqual(name === 'inprocess' ? ['trying', 'answered'] : ['answered']);
      expect(call.state).toBe('confirmed');
      expect(call.answeredTarget).toBe(fe.uri('agent'));
      expect(remote.protocol).toBe('UDP');
      expect(invite.content).toBe(OFFER);
      expect(invite.headers['content-type']).toBe('application/sdp');
      expect(invite.headers['x-wa-call-id']).toBe('wacid.abc  Injected: yes');
      expect(invite.headers.injected).toBeUndefined();
      expect(Buffer.from(invite.headers.from?.name ?? '', 'latin1').toString('utf8')).toBe('"Ana \\"A\\" Ü"');
      expect(sip.stringifyUri(invite.headers.from?.uri ?? '')).toBe('sip:+447700900123@127.0.0.1');
      expect(ack.headers.cseq).toEqual({ seq: invite.headers.cseq?.seq, method: 'ACK' });
      expect(ack.headers.via?.[0]?.params.branch).not.toBe(invite.headers.via?.[0]?.params.branch);
      expect(ack.headers.to?.params.tag).toBe(fe.tagFor(call.callId));
      expect(ack.uri).toBe(`sip:agent@127.0.0.2:${fe.port}`);
      await call.hangUp();
    });

    it('180 then 200 over TCP: ringing then answered, INVITE and ACK both on TCP', async () => {
      fe.handler = (rq, _r, f) => {
        if (rq.method !== 'INVITE') return undefined;
        f.reply(rq, 180, 'Ringing');
        setTimeout(() => f.reply(rq, 200, 'OK', { content: ANSWER }), 100);
        return true;
      };
      const { call, log } = place({ targets: [{ uri: fe.uri('agent', 'tcp') }] });
      await log.next('answered');
      const { remote: invRemote } = await fe.next(byCall(call.callId, 'INVITE'));
      const { rq: ack, remote: ackRemote } = await fe.next(byCall(call.callId, 'ACK'));
      expect(log.types()).toEqual(['ringing', 'answered']);
      expect(log.events[0]).toEqual({ type: 'ringing', status: 180 });
      expect(invRemote.protocol).toBe('TCP');
      expect(ackRemote.protocol).toBe('TCP');
      // The in-process stack marks the transport in the URI; drachtio-server keeps it on the connection.
      if (name === 'inprocess') expect(String(ack.uri)).toContain('transport=tcp');
      await call.hangUp();
      const { remote: byeRemote } = await fe.next(byCall(call.callId, 'BYE'));
      expect(byeRemote.protocol).toBe('TCP');
    });

    it('183 with SDP then 200: early media is reported with its SDP before the answer', async () => {
      const early = sdp('127.0.0.2', 40002);
      fe.handler = (rq, _r, f) => {
        if (rq.method !== 'INVITE') return undefined;
        f.reply(rq, 183, 'Session Progress', { content: early });
        setTimeout(() => f.reply(rq, 200, 'OK', { content: early }), 100);
        return true;
      };
      const { call, log } = place();
      const ringing = await log.next('ringing');
      expect(ringing).toEqual({ type: 'ringing', status: 183, sdp: early });
      expect(call.state).toBe('early');
      expect((await log.next('answered')).sdp).toBe(early);
      await call.hangUp();
    });

    it('401 challenge: the INVITE is re-sent once with a valid digest and a new CSeq, then answered', async () => {
      const server = { realm: 'pbx.test' } as Record<string, unknown>;
      const creds = { user: '1001', password: 's3cret' };
      fe.handler = (rq, _r, f) => {
        if (rq.method !== 'INVITE') return undefined;
        if (!rq.headers.authorization) {
          const challenge = digest.challenge(server, { status: 401, headers: {} });
          f.reply(rq, 401, 'Unauthorized', { headers: { 'www-authenticate': challenge.headers['www-authenticate'] } });
        } else if (digest.authenticateRequest(server, rq, creds)) {
          f.reply(rq, 200, 'OK', { content: ANSWER });
        } else {
          f.reply(rq, 403, 'Forbidden');
        }
        return true;
      };
      const { call, log } = place({
        targets: [{ uri: fe.uri('agent'), auth: { username: '1001', password: 's3cret' } }],
      });
      await log.next('answered');
      const first = await fe.next(byCall(call.callId, 'INVITE'));
      const second = await fe.next(byCall(call.callId, 'INVITE'));
      const { rq: ack } = await fe.next(byCall(call.callId, 'ACK'));
      expect(second.rq.headers.cseq?.seq).toBe((first.rq.headers.cseq?.seq ?? 0) + 1);
      expect(second.rq.headers.from?.params.tag).toBe(first.rq.headers.from?.params.tag);
      expect(ack.headers.cseq?.seq).toBe(second.rq.headers.cseq?.seq);
      // RFC 3261 §22.1: ACK carries the INVITE's credentials (in-process; drachtio-server sends none).
      if (name === 'inprocess') expect(ack.headers.authorization).toBeDefined();
      await call.hangUp();
    });

    it('401 with wrong credentials: exactly one retry, then failed 401 (no challenge loop)', async () => {
      const server = { realm: 'pbx.test' } as Record<string, unknown>;
      fe.handler = (rq, _r, f) => {
        if (rq.method !== 'INVITE') return undefined;
        const ok =
          rq.headers.authorization && digest.authenticateRequest(server, rq, { user: '1001', password: 'right' });
        if (ok) f.reply(rq, 200, 'OK', { content: ANSWER });
        else
          f.reply(rq, 401, 'Unauthorized', {
            headers: {
              'www-authenticate': digest.challenge(server, { status: 401, headers: {} }).headers['www-authenticate'],
            },
          });
        return true;
      };
      const { call, log } = place({
        targets: [{ uri: fe.uri('agent'), auth: { username: '1001', password: 'wrong' } }],
      });
      const failed = await log.next('failed');
      expect(failed).toMatchObject({ status: 401, target: fe.uri('agent') });
      expect(
        fe.received.filter((r) => r.rq.headers['call-id'] === call.callId && r.rq.method === 'INVITE'),
      ).toHaveLength(2);
    });
  });

  describe('Class: OutboundCall (UAC) — failures, cancel, failover', () => {
    it('486 Busy: failed 486 with the target, no failover to the next target', async () => {
      fe.handler = rejectInvites(486, 'Busy Here');
      const { call, log } = place({ targets: [{ uri: fe.uri('agent') }, { uri: fe3.uri('backup') }] });
      const failed = await log.next('failed');
      expect(failed).toEqual({ type: 'failed', status: 486, reason: 'Busy Here', target: fe.uri('agent') });
      expect(call.state).toBe('terminated');
      await sleep(QUIET_MS);
      expect(fe3.received.some((r) => r.rq.headers['call-id'] === call.callId)).toBe(false);
    });

    it('no answer: CANCEL after answerTimeoutMs (same branch and CSeq number as the INVITE), failed 408, far end 487', async () => {
      fe.handler = (rq, _r, f) => {
        if (rq.method === 'INVITE') {
          f.reply(rq, 180, 'Ringing');
          return true;
        }
        if (rq.method === 'CANCEL') {
          f.reply(rq, 200, 'OK');
          const inv = f.received.find(
            (r) => r.rq.method === 'INVITE' && r.rq.headers['call-id'] === rq.headers['call-id'],
          );
          if (inv) f.reply(inv.rq, 487, 'Request Terminated');
          return true;
        }
        return undefined;
      };
      const started = Date.now();
      const { call, log } = place({ answerTimeoutMs: 400 });
      const failed = await log.next('failed');
      const elapsed = Date.now() - started;
      const { rq: invite } = await fe.next(byCall(call.callId, 'INVITE'));
      const { rq: cancel } = await fe.next(byCall(call.callId, 'CANCEL'));
      expect(failed.status).toBe(408);
      // The ring timer (400 ms) ended it, not a later timer (the package's Timer B is 32 s): a timer
      // never fires early, and 4 s leaves room for any scheduling delay.
      expect(elapsed).toBeGreaterThanOrEqual(380);
      expect(elapsed).toBeLessThan(4000);
      expect(cancel.headers.via?.[0]?.params.branch).toBe(invite.headers.via?.[0]?.params.branch);
      expect(cancel.headers.cseq).toEqual({ seq: invite.headers.cseq?.seq, method: 'CANCEL' });
      expect(cancel.headers.to?.params.tag).toBeUndefined();
      await sleep(QUIET_MS);
      expect(log.types()).toEqual(['ringing', 'failed']);
      expect(port.activeCalls).toBe(0);
    });

    it('hangUp() while ringing, and AbortSignal: CANCEL and failed 487', async () => {
      fe.handler = (rq, _r, f) => {
        if (rq.method !== 'INVITE') return undefined;
        f.reply(rq, 180, 'Ringing');
        return true;
      };
      const a = place();
      await a.log.next('ringing');
      await a.call.hangUp();
      expect((await a.log.next('failed')).status).toBe(487);
      await fe.next(byCall(a.call.callId, 'CANCEL'));

      const ac = new AbortController();
      const b = place({ signal: ac.signal });
      await b.log.next('ringing');
      ac.abort();
      expect((await b.log.next('failed')).status).toBe(487);
      await fe.next(byCall(b.call.callId, 'CANCEL'));
      await expect(
        waitForAnswer(
          port.placeCall({
            targets: [{ uri: fe.uri() }],
            from: { user: 'x' },
            sdpOffer: OFFER,
            answerTimeoutMs: 1000,
            signal: ac.signal,
          }),
        ),
      ).rejects.toBeInstanceOf(SipError);
    });

    it('hangUp() before the INVITE left: failed 487, nothing sent; bad options throw TypeError', async () => {
      const { call, log } = place();
      await call.hangUp();
      expect(log.events).toEqual([{ type: 'failed', status: 487, reason: 'Request Terminated (cancelled by caller)' }]);
      await sleep(QUIET_MS);
      expect(fe.received.some((r) => r.rq.headers['call-id'] === call.callId)).toBe(false);
      expect(() => place({ targets: [] })).toThrow(TypeError);
      expect(() => place({ targets: [{ uri: 'not a uri' }] })).toThrow(TypeError);
      expect(() => place({ answerTimeoutMs: 0 })).toThrow(TypeError);
      expect(() => place({ headers: { 'Call-ID': 'spoof' } })).toThrow(TypeError);
    });

    if (name === 'inprocess')
      it('a target that is this very stack (our address and port) fails at once with 482 (a loop)', async () => {
        const { log } = place({ targets: [{ uri: `sip:me@127.0.0.1:${adapter.sipPort}` }] });
        expect(await log.next('failed')).toMatchObject({ status: 482 });
      });

    it('a PBX on the worker’s own IP at another port (issue 14): the INVITE reaches it, ACK and BYE too', async () => {
      // Held-out check: PBX at 127.0.0.1:5098, worker at 127.0.0.1:5060 — no INVITE ever left.
      const sameHost = await FarEnd.start('127.0.0.1');
      sameHost.handler = answerAll();
      try {
        const { call, log } = place({ targets: [{ uri: sameHost.uri('agent') }] });
        expect((await log.next('answered')).target).toBe(sameHost.uri('agent'));
        const { rq: invite } = await sameHost.next(byCall(call.callId, 'INVITE'));
        expect(invite.headers.route ?? []).toEqual([]); // nothing of the local routing reaches the wire
        await sameHost.next(byCall(call.callId, 'ACK'));
        await call.hangUp();
        await sameHost.next(byCall(call.callId, 'BYE'));
      } finally {
        sameHost.close();
      }
    });

    it('CANCEL racing a 200 (RFC 3261 §9.1): the 2xx is ACKed then BYEd, the call reports 487 only', async () => {
      fe.handler = (rq, _r, f) => {
        if (rq.method === 'INVITE') {
          f.reply(rq, 180, 'Ringing');
          return true;
        }
        if (rq.method === 'CANCEL') {
          f.reply(rq, 200, 'OK');
          const inv = f.received.find(
            (r) => r.rq.method === 'INVITE' && r.rq.headers['call-id'] === rq.headers['call-id'],
          );
          if (inv) f.reply(inv.rq, 200, 'OK', { content: ANSWER }); // the callee answered anyway
          return true;
        }
        return undefined;
      };
      const { call, log } = place();
      await log.next('ringing');
      await call.hangUp();
      await fe.next(byCall(call.callId, 'ACK'));
      const { rq: bye } = await fe.next(byCall(call.callId, 'BYE'));
      expect(bye.headers.to?.params.tag).toBe(fe.tagFor(call.callId));
      expect(log.types()).toEqual(['ringing', 'failed']);
      expect(log.events[1]).toMatchObject({ status: 487 });
    });

    it('failover in order: TCP refused → silent UDP → 503 → answer; answeredTarget is the last', async () => {
      const deadPort = await freePort(['127.0.0.3']);
      const busy = await FarEnd.start('127.0.0.3');
      busy.handler = rejectInvites(503, 'Service Unavailable');
      fe.handler = answerAll();
      try {
        const targets = [
          { uri: `sip:a@127.0.0.3:${deadPort};transport=tcp` },
          { uri: `sip:b@127.0.0.3:${deadPort}` },
          { uri: busy.uri('c') },
          { uri: fe.uri('d') },
        ];
        const started = Date.now();
        const { call, log } = place({ targets, failoverTimeoutMs: 300 });
        const answered = await log.next('answered');
        expect(answered.target).toBe(fe.uri('d'));
        expect(call.answeredTarget).toBe(fe.uri('d'));
        // Each silent or refused target cost one 300 ms failover timer, not a transaction timeout (32 s).
        expect(Date.now() - started).toBeLessThan(4000);
        expect(busy.received.filter((r) => r.rq.method === 'INVITE')).toHaveLength(1);
        await call.hangUp();
      } finally {
        busy.close();
      }
    });

    it('all targets fail: failed carries the last target and its status', async () => {
      fe.handler = rejectInvites(500, 'Server Internal Error');
      fe3.handler = rejectInvites(503, 'Service Unavailable');
      const { log } = place({ targets: [{ uri: fe.uri('a') }, { uri: fe3.uri('b') }] });
      expect(await log.next('failed')).toEqual({
        type: 'failed',
        status: 503,
        reason: 'Service Unavailable',
        target: fe3.uri('b'),
      });
    });
  });

  describe('Class: OutboundCall (UAC) — redirects and Retry-After', () => {
    /** User part of a request's Request-URI. */
    const userOf = (rq: SipMessage): string | undefined => sip.parseUri(String(rq.uri))?.user;
    const invitesTo = (f: FarEnd, callId: string) =>
      f.received.filter((r) => r.rq.method === 'INVITE' && r.rq.headers['call-id'] === callId).map((r) => userOf(r.rq));

    it('302 (RFC 3261 §8.1.3.4): its Contacts are tried highest q first, before the remaining targets; a Contact naming the redirecting target is not tried again; answeredTarget is the redirected target', async () => {
      // Prepare: "moved" redirects to two agents on the other far end and to itself (a loop).
      fe.handler = (rq, _r, f) => {
        if (rq.method !== 'INVITE') return undefined;
        f.reply(rq, 302, 'Moved Temporarily', {
          headers: {
            contact: [
              { uri: fe3.uri('low'), params: { q: '0.2' } },
              { uri: fe.uri('moved'), params: {} },
              { uri: fe3.uri('high'), params: { q: '0.9' } },
            ],
          },
        });
        return true;
      };
      fe3.handler = (rq, _r, f) => {
        if (rq.method !== 'INVITE') return undefined;
        if (userOf(rq) === 'low') f.reply(rq, 200, 'OK', { content: ANSWER });
        else f.reply(rq, 500, 'Server Internal Error');
        return true;
      };
      // Act
      const { call, log } = place({ targets: [{ uri: fe.uri('moved') }, { uri: fe3.uri('backup') }] });
      const answered = await log.next('answered');
      // Assess
      expect(answered.target).toBe(fe3.uri('low'));
      expect(call.answeredTarget).toBe(fe3.uri('low'));
      expect(invitesTo(fe, call.callId)).toEqual(['moved']);
      expect(invitesTo(fe3, call.callId)).toEqual(['high', 'low']);
      await call.hangUp();
    });

    it('a chain of redirects is followed 5 times at most, then the next configured target is tried', async () => {
      // Prepare: hop0 → hop1 → hop2 → … without end.
      fe.handler = (rq, _r, f) => {
        if (rq.method !== 'INVITE') return undefined;
        const hop = Number(userOf(rq)?.replace('hop', ''));
        f.reply(rq, 301, 'Moved Permanently', { headers: { contact: [{ uri: fe.uri(`hop${hop + 1}`), params: {} }] } });
        return true;
      };
      fe3.handler = answerAll();
      // Act
      const { call, log } = place({ targets: [{ uri: fe.uri('hop0') }, { uri: fe3.uri('backup') }] });
      const answered = await log.next('answered');
      // Assess: the INVITE to hop0 and one per followed redirect.
      expect(invitesTo(fe, call.callId)).toEqual(['hop0', 'hop1', 'hop2', 'hop3', 'hop4', 'hop5']);
      expect(answered.target).toBe(fe3.uri('backup'));
      await call.hangUp();
    });

    it('305 Use Proxy and 380 Alternative Service are not followed: the next configured target is tried', async () => {
      fe.handler = (rq, _r, f) => {
        if (rq.method !== 'INVITE') return undefined;
        const status = userOf(rq) === 'proxy' ? 305 : 380;
        f.reply(rq, status, status === 305 ? 'Use Proxy' : 'Alternative Service', {
          headers: { contact: [{ uri: fe3.uri('elsewhere'), params: {} }] },
        });
        return true;
      };
      fe3.handler = answerAll();
      const { call, log } = place({
        targets: [{ uri: fe.uri('proxy') }, { uri: fe.uri('alternative') }, { uri: fe3.uri('backup') }],
      });
      expect((await log.next('answered')).target).toBe(fe3.uri('backup'));
      expect(invitesTo(fe3, call.callId)).toEqual(['backup']);
      await call.hangUp();
    });

    it('a 302 whose only Contact is the last target: failed 302 with that target', async () => {
      fe.handler = (rq, _r, f) => {
        if (rq.method !== 'INVITE') return undefined;
        f.reply(rq, 302, 'Moved Temporarily', { headers: { contact: [{ uri: fe.uri('self'), params: {} }] } });
        return true;
      };
      const { log } = place({ targets: [{ uri: fe.uri('self') }] });
      expect(await log.next('failed')).toMatchObject({ status: 302, target: fe.uri('self') });
    });

    it('503 with Retry-After (RFC 3261 §21.5.4): next target now, and no call of this worker tries that target again until the time has passed; when every target cools down the call fails 503 at once, sending nothing', async () => {
      // Prepare: "resting" is overloaded for 30 s; the agent answers.
      fe3.handler = (rq, _r, f) => {
        if (rq.method !== 'INVITE') return undefined;
        f.reply(rq, 503, 'Service Unavailable', { headers: { 'retry-after': '30 (overloaded)' } });
        return true;
      };
      fe.handler = answerAll();
      const targets = [{ uri: fe3.uri('resting') }, { uri: fe.uri('agent') }];
      // Act + Assess: the first call fails over.
      const first = place({ targets });
      expect((await first.log.next('answered')).target).toBe(fe.uri('agent'));
      expect(invitesTo(fe3, first.call.callId)).toEqual(['resting']);
      await first.call.hangUp();
      // 29.999 s later a second call goes straight to the agent.
      clock.advance(29_999);
      const second = place({ targets });
      expect((await second.log.next('answered')).target).toBe(fe.uri('agent'));
      expect(invitesTo(fe3, second.call.callId)).toEqual([]);
      await second.call.hangUp();
      // A call with only the resting target fails fast, naming why.
      const third = place({ targets: [{ uri: fe3.uri('resting') }] });
      expect(await third.log.next('failed')).toEqual({
        type: 'failed',
        status: 503,
        reason: 'Service Unavailable (every target is cooling down after 503 Retry-After)',
      });
      // Once the 30 s are over, the target is tried again.
      clock.advance(1);
      const fourth = place({ targets });
      expect((await fourth.log.next('answered')).target).toBe(fe.uri('agent'));
      expect(invitesTo(fe3, fourth.call.callId)).toEqual(['resting']);
      await sleep(QUIET_MS);
      expect(invitesTo(fe3, third.call.callId)).toEqual([]);
      await fourth.call.hangUp();
    });

    it('a 503 without Retry-After and other 5xx only move on; a 6xx ends the call without trying the next target', async () => {
      fe3.handler = rejectInvites(503, 'Service Unavailable');
      fe.handler = rejectInvites(603, 'Decline');
      const targets = [{ uri: fe3.uri('plain') }, { uri: fe.uri('declines') }, { uri: fe3.uri('never') }];
      const { call, log } = place({ targets });
      expect(await log.next('failed')).toEqual({
        type: 'failed',
        status: 603,
        reason: 'Decline',
        target: fe.uri('declines'),
      });
      const again = place({ targets });
      await again.log.next('failed');
      await sleep(QUIET_MS);
      expect(invitesTo(fe3, call.callId)).toEqual(['plain']);
      expect(invitesTo(fe3, again.call.callId)).toEqual(['plain']); // no cooldown without Retry-After
    });

    it('422 from a redirected target (RFC 4028 §7.4): the one retry with the Min-SE goes to that same Contact, not to the next target, and the call is answered there', async () => {
      // Prepare: "front" redirects to the agent, who wants at least 3600 s; "backup" would answer anything.
      fe.handler = (rq, _r, f) => {
        if (rq.method !== 'INVITE') return undefined;
        if (userOf(rq) === 'front')
          f.reply(rq, 302, 'Moved Temporarily', { headers: { contact: [{ uri: fe3.uri('agent'), params: {} }] } });
        else f.reply(rq, 200, 'OK', { content: ANSWER });
        return true;
      };
      fe3.handler = (rq, _r, f) => {
        if (rq.method !== 'INVITE') return undefined;
        if (rq.headers['session-expires'] === '1800')
          f.reply(rq, 422, 'Session Interval Too Small', { headers: { 'min-se': '3600' } });
        // RFC 4028 §9: the UAS keeps the interval at or above the Min-SE it demanded.
        else f.reply(rq, 200, 'OK', { content: ANSWER, headers: { 'session-expires': '3600;refresher=uac' } });
        return true;
      };
      // Act
      const { call, log } = place({ targets: [{ uri: fe.uri('front') }, { uri: fe.uri('backup') }] });
      const answered = await log.next('answered');
      // Assess: two INVITEs to the agent (1800, then 3600 with Min-SE), none to the backup.
      expect(answered.target).toBe(fe3.uri('agent'));
      const toAgent = fe3.received.filter(byCall(call.callId, 'INVITE')).map((r) => r.rq);
      expect(toAgent.map((rq) => [userOf(rq), rq.headers['session-expires'], rq.headers['min-se']])).toEqual([
        ['agent', '1800', undefined],
        ['agent', '3600', '3600'],
      ]);
      expect(invitesTo(fe, call.callId)).toEqual(['front']);
      await call.hangUp();
    });
  });

  describe('Class: OutboundCall (UAC) — in dialog', () => {
    async function answeredCall(extra: Record<string, unknown> = {}, ackAt: FarEnd | null = fe) {
      fe.handler = answerAll(extra);
      const placed = place();
      await placed.log.next('answered');
      const { rq: invite } = await fe.next(byCall(placed.call.callId, 'INVITE'));
      if (ackAt) await ackAt.next(byCall(placed.call.callId, 'ACK'));
      fe.handler = undefined;
      return { ...placed, invite };
    }

    it('BYE from the far end: remote-hangup with its Reason, 200 sent, call released', async () => {
      const { call, log, invite } = await answeredCall();
      const rs = await fe.request(fe.inDialog(invite, 'BYE', 2, { headers: { reason: 'Q.850;cause=16' } }));
      expect(rs.status).toBe(200);
      expect(await log.next('remote-hangup')).toEqual({ type: 'remote-hangup', reason: 'Q.850;cause=16' });
      expect(call.state).toBe('terminated');
      expect(port.activeCalls).toBe(0);
      await call.hangUp(); // no-op once terminated
      await sleep(QUIET_MS);
      expect(
        fe.received.some(
          (r) =>
            r.rq.method === 'BYE' &&
            r.rq.headers['call-id'] === call.callId &&
            r.rq.headers.from?.params.tag === invite.headers.from?.params.tag,
        ),
      ).toBe(false);
    });

    it('our hangUp(): one BYE with the dialog tags, a higher CSeq and the remote Contact as Request-URI; idempotent', async () => {
      const { call, invite } = await answeredCall();
      await Promise.all([call.hangUp(), call.hangUp()]);
      const { rq: bye } = await fe.next(byCall(call.callId, 'BYE'));
      expect(bye.uri).toBe(`sip:agent@127.0.0.2:${fe.port}`);
      expect(bye.headers.from?.params.tag).toBe(invite.headers.from?.params.tag);
      expect(bye.headers.to?.params.tag).toBe(fe.tagFor(call.callId));
      expect(bye.headers.cseq?.seq).toBeGreaterThan(invite.headers.cseq?.seq ?? 0);
      await sleep(QUIET_MS);
      expect(fe.received.filter((r) => r.rq.method === 'BYE' && r.rq.headers['call-id'] === call.callId)).toHaveLength(
        1,
      );
      expect(call.state).toBe('terminated');
    });

    it('re-INVITE hold then resume: hold/resume events, 200 with our SDP mirrored (recvonly, then sendrecv) and a bumped o= version', async () => {
      const { call, log, invite } = await answeredCall();
      const reinvite = async (direction: string, seq: number): Promise<SipMessage> => {
        const rq = fe.inDialog(invite, 'INVITE', seq, { content: sdp('127.0.0.2', 40000, direction, seq) });
        const rs = await new Promise<SipMessage>((resolve) => fe.send(rq, (r) => (r.status ?? 0) >= 200 && resolve(r)));
        fe.sendAck({
          method: 'ACK',
          uri: String(Array.isArray(rs.headers.contact) ? rs.headers.contact[0]?.uri : ''),
          headers: {
            via: [],
            to: rs.headers.to,
            from: rq.headers.from,
            'call-id': call.callId,
            cseq: { seq, method: 'ACK' },
          },
        });
        return rs;
      };
      const held = await reinvite('sendonly', 2);
      expect(held.status).toBe(200);
      expect(held.content).toContain('a=recvonly');
      expect(held.content).toMatch(/^o=- 4242 2 IN IP4 127\.0\.0\.1$/m);
      expect((await log.next('hold')).sdp).toContain('a=sendonly');
      const resumed = await reinvite('sendrecv', 3);
      expect(resumed.content).toContain('a=sendrecv');
      expect(resumed.content).toMatch(/^o=- 4242 3 /m);
      await log.next('resume');
      expect(call.state).toBe('confirmed');
      await call.hangUp();
    });

    it('Record-Route: ACK and BYE go through the recorded proxy with a Route header (RFC 3261 §12.2.1.1)', async () => {
      const proxyUri = `sip:127.0.0.3:${fe3.port};lr`;
      const { call } = await answeredCall({ 'record-route': [{ uri: proxyUri, params: {} }] }, null);
      // The ACK went to the proxy on 127.0.0.3, with the far end's Contact as Request-URI.
      const { rq: ack } = await fe3.next(byCall(call.callId, 'ACK'));
      expect(ack.uri).toBe(`sip:agent@127.0.0.2:${fe.port}`);
      expect(sip.stringifyUri(ack.headers.route?.[0]?.uri ?? '')).toBe(proxyUri);
      await call.hangUp();
      const { rq: bye } = await fe3.next(byCall(call.callId, 'BYE'));
      expect(sip.stringifyUri(bye.headers.route?.[0]?.uri ?? '')).toBe(proxyUri);
    }, 15_000);

    it('an unknown in-dialog method gets 501, OPTIONS 200', async () => {
      const { call, invite } = await answeredCall();
      if (name === 'inprocess') {
        // Unknown methods and CSeq order are drachtio-server's business (it times the FROB out).
        expect((await fe.request(fe.inDialog(invite, 'FROB', 6))).status).toBe(501);
      }
      expect((await fe.request(fe.inDialog(invite, 'OPTIONS', 7))).status).toBe(200);
      if (name === 'inprocess') expect((await fe.request(fe.inDialog(invite, 'OPTIONS', 4))).status).toBe(500); // CSeq went backwards (§12.2.2)
      await call.hangUp();
    });

    it('UPDATE without SDP (RFC 3311) is answered 200 and the call goes on; an UPDATE offer is answered like a re-INVITE', async () => {
      const { call, log, invite } = await answeredCall();
      const bare = await fe.request(fe.inDialog(invite, 'UPDATE', 2));
      expect(bare.status).toBe(200);
      expect(bare.content ?? '').toBe('');
      // An offer in an UPDATE (§5.1) gets our SDP, direction mirrored, in the 200: no ACK follows.
      const held = await fe.request(
        fe.inDialog(invite, 'UPDATE', 3, { content: sdp('127.0.0.2', 40000, 'sendonly', 2) }),
      );
      expect(held.status).toBe(200);
      expect(held.content).toContain('a=recvonly');
      expect((await log.next('hold')).sdp).toContain('a=sendonly');
      expect(call.state).toBe('confirmed');
      await call.hangUp();
      await fe.next(byCall(call.callId, 'BYE'));
    });

    it('INFO with DTMF (application/dtmf-relay, application/dtmf) is answered 200 and each digit reaches the call; another body gets 415 with Accept', async () => {
      const { call, log, invite } = await answeredCall();
      const relay = await fe.request({
        ...fe.inDialog(invite, 'INFO', 2, { headers: { 'content-type': 'application/dtmf-relay' } }),
        content: 'Signal=5\r\nDuration=160\r\n',
      });
      expect(relay.status).toBe(200);
      expect(await log.next('dtmf')).toEqual({ type: 'dtmf', digit: '5', durationMs: 160 });
      const plain = await fe.request({
        ...fe.inDialog(invite, 'INFO', 3, { headers: { 'content-type': 'application/dtmf' } }),
        content: '#',
      });
      expect(plain.status).toBe(200);
      await until(() => log.events.filter((e) => e.type === 'dtmf').length === 2);
      expect(log.events.filter((e) => e.type === 'dtmf')).toEqual([
        { type: 'dtmf', digit: '5', durationMs: 160 },
        { type: 'dtmf', digit: '#', durationMs: 100 },
      ]);
      const other = await fe.request({
        ...fe.inDialog(invite, 'INFO', 4, { headers: { 'content-type': 'application/media_control+xml' } }),
        content: '<media_control/>',
      });
      expect(other.status).toBe(415);
      expect(other.headers.accept).toBe('application/dtmf-relay, application/dtmf');
      expect(call.state).toBe('confirmed');
      await call.hangUp();
    });
  });

  describe('Session timers (RFC 4028) — we are the UAC', () => {
    /**
     * drachtio-server runs the timers itself on its own clock, so its stories run in real time; the
     * in-process adapter's timers run on the suite's ManualClock. Both use 90 s, our Min-SE: an
     * interval below it is a protocol error (RFC 4028 §5), and drachtio-server 0.9.4 aborts on one
     * (sofia-sip's `su_timer_create: Assertion 'msec >= 0'`, seen with 8 s), taking every call of
     * the task with it. On drachtio a story therefore waits up to 60 s of real time.
     */
    const SE = 90;
    const PEER_ALLOW = 'INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE';

    /**
     * Let `ms` of session time pass: the ManualClock in-process, real time (the wait) on drachtio,
     * where moving the suite's clock only moves target cooldowns.
     */
    const pass = (ms: number): void => {
      clock.advance(ms);
    };

    it('our INVITE says Supported: timer and asks for Session-Expires; the PBX names us refresher and our refresh comes at half the interval', async () => {
      fe.handler = (rq, _r, f) => {
        if (rq.method === 'INVITE' && !rq.headers.to?.params.tag) {
          f.reply(rq, 200, 'OK', {
            content: ANSWER,
            headers: { 'session-expires': `${SE};refresher=uac`, require: 'timer', allow: PEER_ALLOW },
          });
          return true;
        }
        if (rq.method === 'INVITE' || rq.method === 'UPDATE') {
          // The refresh: answered with the interval it asked for.
          f.reply(rq, 200, 'OK', {
            ...(rq.method === 'INVITE' ? { content: ANSWER } : {}),
            headers: { 'session-expires': `${SE};refresher=uac`, require: 'timer' },
          });
          return true;
        }
        return undefined;
      };
      const { call, log } = place();
      await log.next('answered');
      const { rq: invite } = await fe.next(byCall(call.callId, 'INVITE'));
      expect(String(invite.headers.supported)).toMatch(/\btimer\b/);
      expect(invite.headers['session-expires']).toBe('1800');
      await fe.next(byCall(call.callId, 'ACK'));
      pass(refreshDelayMs(SE) - 1);
      await sleep(QUIET_MS);
      if (name === 'inprocess') expect(fe.received.filter(refreshOf(call.callId))).toHaveLength(0);
      pass(1);
      const { rq: refresh } = await fe.next(refreshOf(call.callId), name === 'inprocess' ? 5000 : SE * 1000 + 25_000);
      expect(String(refresh.headers['session-expires'])).toMatch(new RegExp(`^${SE}\\s*;\\s*refresher=uac$`));
      expect(call.state).toBe('confirmed');
      // The refresh was answered: the next one comes a whole half-interval later, not before.
      pass(refreshDelayMs(SE) - 1);
      await sleep(QUIET_MS);
      if (name === 'inprocess') expect(fe.received.filter(refreshOf(call.callId))).toHaveLength(1);
      expect(log.types()).toEqual(['answered']);
      await call.hangUp();
    }, 150_000);

    it('a PBX that does not allow UPDATE is refreshed by re-INVITE with our SDP unchanged, and the refresh is ACKed', async () => {
      fe.handler = (rq, _r, f) => {
        if (rq.method !== 'INVITE') return undefined;
        f.reply(rq, 200, 'OK', {
          content: ANSWER,
          headers: {
            'session-expires': `${SE};refresher=uac`,
            require: 'timer',
            allow: 'INVITE, ACK, CANCEL, BYE, OPTIONS',
          },
        });
        return true;
      };
      const { call, log } = place();
      await log.next('answered');
      await fe.next(byCall(call.callId, 'ACK'));
      pass(refreshDelayMs(SE));
      const { rq: refresh } = await fe.next(refreshOf(call.callId), name === 'inprocess' ? 5000 : SE * 1000 + 25_000);
      expect(refresh.method).toBe('INVITE');
      expect(refresh.content).toMatch(/^o=- 4242 1 IN IP4 127\.0\.0\.1$/m); // the same version: nothing changed
      const { rq: ack } = await fe.next(byCall(call.callId, 'ACK'));
      expect(ack.headers.cseq?.seq).toBe(refresh.headers.cseq?.seq);
      expect(call.state).toBe('confirmed');
      expect(log.types()).toEqual(['answered']);
      await call.hangUp();
    }, 150_000);

    it('the PBX is the refresher and never refreshes: we send BYE before the session expires and the call ends session-expired', async () => {
      fe.handler = (rq, _r, f) => {
        if (rq.method !== 'INVITE') return undefined;
        f.reply(rq, 200, 'OK', {
          content: ANSWER,
          headers: { 'session-expires': `${SE};refresher=uas`, require: 'timer', allow: PEER_ALLOW },
        });
        return true;
      };
      const { call, log } = place();
      await log.next('answered');
      await fe.next(byCall(call.callId, 'ACK'));
      pass(expiryDelayMs(SE) - 1);
      await sleep(QUIET_MS);
      if (name === 'inprocess') expect(log.types()).not.toContain('session-expired');
      pass(1);
      const ended = await log.next('session-expired', name === 'inprocess' ? 5000 : SE * 1000 + 25_000);
      expect(ended.reason).toMatch(/session timer/i);
      await fe.next(byCall(call.callId, 'BYE'));
      expect(call.state).toBe('terminated');
      expect(port.activeCalls).toBe(0);
    }, 150_000);

    it('422 Session Interval Too Small: the INVITE goes again with the Min-SE as its Session-Expires, and the call is answered', async () => {
      fe.handler = (rq, _r, f) => {
        if (rq.method !== 'INVITE') return undefined;
        if (rq.headers['session-expires'] === '1800')
          f.reply(rq, 422, 'Session Interval Too Small', { headers: { 'min-se': '3600' } });
        // RFC 4028 §9: the UAS keeps the interval at or above the Min-SE it demanded.
        else f.reply(rq, 200, 'OK', { content: ANSWER, headers: { 'session-expires': '3600;refresher=uac' } });
        return true;
      };
      const { call, log } = place();
      await log.next('answered');
      const invites = fe.received.filter(byCall(call.callId, 'INVITE')).map((r) => r.rq);
      expect(invites.map((rq) => rq.headers['session-expires'])).toEqual(['1800', '3600']);
      expect(invites[1]?.headers['min-se']).toBe('3600');
      await call.hangUp();
    });
  });

  describe('Function: createSipPort — out of dialog', () => {
    const outOfDialog = (method: string, toTag?: string): SipMessage => ({
      method,
      uri: port.localContact,
      headers: {
        via: [],
        to: { uri: port.localContact, params: toTag ? { tag: toTag } : {} },
        from: { uri: 'sip:probe@127.0.0.2', params: { tag: 'p1' } },
        'call-id': `probe-${method}-${Math.random()}`,
        cseq: { seq: 1, method },
        'max-forwards': 70,
      },
    });

    it('OPTIONS is answered 200 with Allow and Accept', async () => {
      const rs = await fe.request(outOfDialog('OPTIONS'));
      expect(rs.status).toBe(200);
      expect(rs.headers.allow).toBe('INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO');
      expect(rs.headers.accept).toBe('application/sdp');
      expect(rs.headers.to?.params.tag).toBeTruthy();
    });

    const cases: [string, string | undefined, number][] = [
      ['REGISTER', undefined, 405],
      // drachtio-server routes methods by name and leaves an unknown one unanswered.
      ...(name === 'inprocess' ? [['FROB', undefined, 501] as [string, undefined, number]] : []),
      ['BYE', 'nope', 481],
      ['INVITE', 'nope', 481],
    ];
    it.each(cases)('%s (to-tag %s) is answered %i', async (method, tag, status) => {
      expect((await fe.request(outOfDialog(method, tag))).status).toBe(status);
    });
  });

  describe('Logging', () => {
    it('trace-level logs carry the call id but never digest credentials or SDES keys', async () => {
      const lines: string[] = [];
      const logger = pino({ level: 'trace' }, { write: (l: string) => lines.push(l) });
      const loggedAdapter = await startAdapter(name, { logger });
      const logged = loggedAdapter.port;
      const server = { realm: 'pbx.test' } as Record<string, unknown>;
      fe.handler = (rq, _r, f) => {
        if (rq.method !== 'INVITE') return undefined;
        if (!rq.headers.authorization) {
          f.reply(rq, 401, 'Unauthorized', {
            headers: {
              'www-authenticate': digest.challenge(server, { status: 401, headers: {} }).headers['www-authenticate'],
            },
          });
        } else {
          f.reply(rq, 200, 'OK', { content: ANSWER });
        }
        return true;
      };
      try {
        const offer = `${OFFER}a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:S3CR3TK3YS3CR3TK3YS3CR3TK3YS3CR3TK3YS3CR\r\n`;
        const call = logged.placeCall({
          targets: [{ uri: fe.uri(), auth: { username: 'user1001', password: 'pa55word' } }],
          from: { user: '1' },
          sdpOffer: offer,
          answerTimeoutMs: 3000,
        });
        await record<SipCallEvent>(call).next('answered', 10_000); // two INVITEs on a loaded machine
        const { rq: signed } = await fe.next(
          (r) => r.rq.method === 'INVITE' && r.rq.headers['call-id'] === call.callId && !!r.rq.headers.authorization,
        );
        await call.hangUp();
        const text = lines.join('');
        expect(text).toContain(`"sipCallId":"${call.callId}"`);
        if (name === 'inprocess') expect(text).toContain('SIP out'); // drachtio-server traces the wire itself
        expect(text).not.toContain('pa55word');
        expect(text).not.toContain('user1001');
        expect(text).not.toContain(String(signed.headers.authorization?.[0]?.response).replace(/"/g, ''));
        expect(text).not.toContain('S3CR3TK3Y');
      } finally {
        await loggedAdapter.close();
      }
    });
  });
}
