/**
 * Interop of our SIP port with SIPp (Debian `sip-tester`). Each story starts SIPp with one
 * scenario from `test/fixtures/sipp/` as the far end on 127.0.0.2 (`-m 1`: one call, then exit),
 * drives our UAC from 127.0.0.1 against it and asserts both on our events and on SIPp's exit code
 * (0 = its one call succeeded, i.e. every message it expected arrived and passed its checks).
 * Every story runs on both SipPort adapters: in-process and drachtio (drachtio-srf over the
 * prebuilt drachtio-server, `DRACHTIO_SERVER_BIN`). The suite fails, not skips, when `sipp` or
 * drachtio-server is missing.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '#test/helpers/async.ts';
import { createSipOffer, parseSipAnswer } from '#worker/media/sip-sdp.ts';
import { newSdesKeySalt } from '#worker/sdp/sdes.ts';
import type { PlaceCallOptions, SipCallEvent, SipPort } from '#worker/sip/sip-port.ts';
import { type AdapterName, type StartedAdapter, startAdapter } from '../../media-worker/sip/helpers/adapters.ts';
import { record } from '../../media-worker/sip/helpers/events.ts';
import { freePort, sdp } from '../../media-worker/sip/helpers/far-end.ts';

const SCENARIOS = join(import.meta.dirname, '../../fixtures/sipp');
const OFFER = sdp('127.0.0.1', 32000);

let adapter: StartedAdapter | undefined;
let port: SipPort;
let portNumber: number;
let workDir: string;

/** A running SIPp with its exit. */
interface Sipp {
  readonly port: number;
  readonly exit: Promise<{ code: number | null; log: string }>;
  kill(): void;
}

async function udpBound(address: string, p: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.once('error', () => resolve(true));
    s.bind(p, address, () => s.close(() => resolve(false)));
  });
}

/** Start SIPp as UAS with `scenario` on 127.0.0.2; resolves once its socket is bound. */
async function startSipp(scenario: string, opts: { transport?: 'u1' | 't1'; extra?: string[] } = {}): Promise<Sipp> {
  const p = await freePort(['127.0.0.2']);
  const errFile = join(workDir, `${scenario}-${p}.err`);
  const mediaPort = await freePort(['127.0.0.2']);
  const args = [
    ...(scenario.startsWith('builtin:') ? ['-sn', scenario.slice(8)] : ['-sf', join(SCENARIOS, scenario)]),
    '-i',
    '127.0.0.2',
    '-p',
    String(p),
    '-mi',
    '127.0.0.2',
    '-mp',
    String(mediaPort),
    '-t',
    opts.transport ?? 'u1',
    '-m',
    '1',
    '-timeout',
    '15s',
    '-timeout_error',
    '-nostdin',
    '-trace_err',
    '-error_file',
    errFile,
    ...(opts.extra ?? []),
  ];
  const child = spawn('sipp', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString('latin1');
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString('latin1');
  });
  const exit = new Promise<{ code: number | null; log: string }>((resolve) => {
    child.on('exit', (code) => {
      let errors = '';
      try {
        errors = readFileSync(errFile, 'latin1');
      } catch {
        // no error file: no errors
      }
      resolve({ code, log: `${errors}\n${out.slice(-2000)}` });
    });
  });
  for (let i = 0; i < 100 && !(await udpBound('127.0.0.2', p)); i++) await sleep(30);
  await sleep(50);
  return { port: p, exit, kill: () => child.kill('SIGKILL') };
}

function place(sipp: Sipp, overrides: Partial<PlaceCallOptions> = {}) {
  const call = port.placeCall({
    targets: [{ uri: `sip:agent@127.0.0.2:${sipp.port}` }],
    from: { user: '+447700900123', displayName: 'WhatsApp caller' },
    headers: { 'X-WA-Call-Id': `wacid.interop${Date.now()}` },
    sdpOffer: OFFER,
    answerTimeoutMs: 5000,
    ...overrides,
  });
  return { call, log: record<SipCallEvent>(call) };
}

/** Wait for SIPp to end, with its log on failure. */
async function sippExit(sipp: Sipp): Promise<number | null> {
  const { code, log } = await sipp.exit;
  if (code !== 0) console.error(`SIPp exited ${code}:\n${log}`);
  return code;
}

/** The SIPp stories on adapter `name`. */
function sippSuite(name: AdapterName): void {
  describe(`SIP adapter: ${name}`, () => {
    beforeAll(async () => {
      const which = spawnSync('sipp', ['-v']);
      if (which.error)
        throw new Error('sipp is not installed (Debian: apt-get install sip-tester); the interop suite needs it');
      workDir = mkdtempSync(join(tmpdir(), 'sipp-'));
      portNumber = await freePort(['127.0.0.1']);
      adapter = await startAdapter(name, { port: portNumber, requestTimeoutMs: 2000 });
      port = adapter.port;
      portNumber = adapter.sipPort;
    });

    afterAll(async () => {
      await adapter?.close();
      adapter = undefined;
      if (workDir) rmSync(workDir, { recursive: true, force: true });
    });

    describe('Interop: our UAC against SIPp UAS scenarios', () => {
      it.each([
        ['uas-answer-pcmu.xml', 'u1', 'PCMU/8000'],
        ['uas-answer-opus.xml', 'u1', 'opus/48000/2'],
        ['uas-answer-pcmu.xml', 't1', 'PCMU/8000'],
      ] as const)(
        '%s over %s: ringing, answered with the SDP, our BYE completes the SIPp call',
        async (scenario, transport, codec) => {
          const sipp = await startSipp(scenario, { transport });
          const { call, log } = place(
            sipp,
            transport === 't1' ? { targets: [{ uri: `sip:agent@127.0.0.2:${sipp.port};transport=tcp` }] } : {},
          );
          const answered = await log.next('answered');
          expect(answered.sdp).toContain(codec);
          // drachtio-server keeps 100 Trying to itself.
          expect(log.types()).toEqual(
            name === 'inprocess' ? ['trying', 'ringing', 'answered'] : ['ringing', 'answered'],
          );
          await sleep(100);
          await call.hangUp();
          expect(await sippExit(sipp)).toBe(0);
        },
      );

      it('uas-answer-sdes.xml: SDES-SRTP (RFC 4568), SIPp checks our RTP/SAVP key, its own key reaches us', async () => {
        const sipp = await startSipp('uas-answer-sdes.xml');
        const { call, log } = place(sipp, {
          sdpOffer: createSipOffer({
            address: '127.0.0.1',
            port: 32000,
            codecs: ['PCMU'],
            srtp: { policy: 'required', keySalt: newSdesKeySalt() },
          }),
        });
        const answered = await log.next('answered');
        expect(parseSipAnswer(answered.sdp, ['PCMU'], 'required').srtp).toEqual({
          tag: 1,
          keySalt: 'c2lwcC1zZGVzLWtleS0wMTIzNDU2Nzg5YWJjZGVm',
        });
        await call.hangUp();
        expect(await sippExit(sipp)).toBe(0);
      });

      it('uas-busy-486.xml: failed 486, SIPp sees the ACK', async () => {
        const sipp = await startSipp('uas-busy-486.xml');
        const { log } = place(sipp);
        expect(await log.next('failed')).toMatchObject({ status: 486 });
        expect(await sippExit(sipp)).toBe(0);
      });

      it('uas-early-media-183-then-200.xml: ringing 183 with SDP, then answered', async () => {
        const sipp = await startSipp('uas-early-media-183-then-200.xml');
        const { call, log } = place(sipp);
        const ringing = await log.next('ringing');
        expect(ringing.status).toBe(183);
        expect(ringing.sdp).toContain('PCMU/8000');
        await log.next('answered');
        await call.hangUp();
        expect(await sippExit(sipp)).toBe(0);
      });

      it('uas-digest-401-then-200.xml: SIPp verifies our MD5 digest, then answers', async () => {
        const sipp = await startSipp('uas-digest-401-then-200.xml');
        const { call, log } = place(sipp, {
          targets: [{ uri: `sip:agent@127.0.0.2:${sipp.port}`, auth: { username: '1001', password: 's3cret' } }],
        });
        await log.next('answered');
        await call.hangUp();
        expect(await sippExit(sipp)).toBe(0);
      });

      it('uas-no-answer.xml: CANCEL after answerTimeoutMs, failed 408, SIPp sees CANCEL and the 487 ACK', async () => {
        const sipp = await startSipp('uas-no-answer.xml');
        const { log } = place(sipp, { answerTimeoutMs: 700 });
        expect(await log.next('failed', 3000)).toMatchObject({ status: 408 });
        expect(await sippExit(sipp)).toBe(0);
      });

      it('uas-bye-from-agent.xml: remote-hangup with the Reason header', async () => {
        const sipp = await startSipp('uas-bye-from-agent.xml');
        const { call, log } = place(sipp);
        expect(await log.next('remote-hangup')).toEqual({
          type: 'remote-hangup',
          reason: 'Q.850;cause=16;text="Normal call clearing"',
        });
        expect(call.state).toBe('terminated');
        expect(await sippExit(sipp)).toBe(0);
      });

      it('uas-reinvite-hold.xml: hold event, SIPp checks our 200 says a=recvonly', async () => {
        const sipp = await startSipp('uas-reinvite-hold.xml');
        const { call, log } = place(sipp);
        expect((await log.next('hold')).sdp).toContain('a=sendonly');
        await sleep(100);
        await call.hangUp();
        expect(await sippExit(sipp)).toBe(0);
      });

      it('uas-update-info.xml: SIPp’s UPDATE without SDP gets 200, its INFO dtmf-relay digit reaches the call, another INFO body gets 415', async () => {
        const sipp = await startSipp('uas-update-info.xml');
        const { call, log } = place(sipp);
        expect(await log.next('dtmf', 10_000)).toEqual({ type: 'dtmf', digit: '5', durationMs: 160 });
        await sleep(300); // SIPp's third request (the 415) goes out right after the digit's 200
        await call.hangUp();
        expect(await sippExit(sipp)).toBe(0);
        expect(call.state).toBe('terminated');
      });

      it('failover: a silent target, then SIPp answers', async () => {
        const sipp = await startSipp('uas-answer-pcmu.xml');
        const silent = await freePort(['127.0.0.3']);
        const { call, log } = place(sipp, {
          targets: [{ uri: `sip:agent@127.0.0.3:${silent}` }, { uri: `sip:agent@127.0.0.2:${sipp.port}` }],
          failoverTimeoutMs: 500,
        });
        expect((await log.next('answered')).target).toBe(`sip:agent@127.0.0.2:${sipp.port}`);
        await call.hangUp();
        expect(await sippExit(sipp)).toBe(0);
      });
    });

    describe('Interop: SIPp UAC (built-in uac scenario) against our UAS', () => {
      it('SIPp calls us; we ring and answer; SIPp ACKs and sends BYE; its call succeeds', async () => {
        const events: string[] = [];
        port.onInvite(async (call) => {
          call.on((e) => events.push(e.type));
          call.ringing();
          await call.answer(sdp('127.0.0.1', 32002));
        });
        const sipp = await startSipp('builtin:uac', {
          extra: ['-d', '200', '-s', '+15550001111', `127.0.0.1:${portNumber}`],
        });
        expect(await sippExit(sipp)).toBe(0);
        expect(events).toEqual(['remote-hangup']);
      });
    });
  });
}

sippSuite('inprocess');
sippSuite('drachtio');
