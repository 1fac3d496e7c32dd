/**
 * Contract stories, run on each SipPort adapter (`inprocess` in `npm test`, `drachtio` in
 * `npm run test:interop`). Business-initiated calls started by the PBX: an INVITE to sip:+<number>@bridge. Refused INVITEs
 * get a fast SIP error with a Reason header and never reach Meta; allowed ones ring the WhatsApp
 * user through Meta (the simulator), 180 on RINGING, 200 with SDP on ACCEPTED, audio both ways;
 * a re-INVITE moving the PBX's media moves the bridge's SIP side with it.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { measureTone } from '#simulator/media/audio.ts';
import { createSipPort } from '#worker/sip/sip-adapter.ts';
import { sleep, until } from '../../../helpers/async.ts';
import { freePort } from '../../../helpers/free-port.ts';
import { grantPermission } from '../../../helpers/permissions.ts';
import { callMetrics, oneAnsweredCall, RecordingMetrics } from '../../../helpers/recording-metrics.ts';
import { eventually, startTestStack, type TestStack } from '../../../helpers/test-stack.ts';
import { FarEnd, sdp } from '../../sip/helpers/far-end.ts';
import {
  ack2xx,
  expectMediaFollowsMove,
  finalResponse,
  mediaAddress,
  PbxRtp,
  pbxInvite,
  uacRequest,
} from '../helpers/pbx.ts';

/** Register the PBX-started call stories for SIP adapter `name`. */
export function pbxCallContract(name: 'inprocess' | 'drachtio'): void {
  let stack: TestStack;
  const metrics = new RecordingMetrics();
  let bridgeUri: (number: string) => string;

  function bicCalls() {
    return stack.simulator!.calls.filter((c) => c.direction === 'BUSINESS_INITIATED');
  }

  beforeAll(async () => {
    stack = await startTestStack({}, { bridge: true, workerMetrics: metrics, sipStack: name });
    const contact = stack.worker!.sipContact; // sip:wa-sip-bridge@127.0.0.1:<port>
    const hostPort = contact.slice(contact.indexOf('@') + 1);
    bridgeUri = (number) => `sip:+${number}@${hostPort}`;
  });
  afterAll(() => stack?.stop());

  describe('INVITEs the bridge refuses before Meta hears of them', () => {
    it('refuses a source that is not allow-listed (403)', async () => {
      const stranger = await createSipPort({
        address: '127.0.0.3',
        port: await freePort('127.0.0.3'),
        logger: pino({ level: 'silent' }),
      });
      try {
        const failed = await new Promise<{ status: number }>((resolve) => {
          const call = stranger.placeCall({
            targets: [{ uri: bridgeUri('5511987654321') }],
            from: { user: 'pbx' },
            sdpOffer: 'v=0\r\n',
            answerTimeoutMs: 5000,
          });
          call.on((e) => e.type === 'failed' && resolve(e));
        });
        expect(failed.status).toBe(403);
      } finally {
        await stranger.close();
      }
      expect(bicCalls()).toHaveLength(0);
    });

    it('refuses a scanner user agent even from an allowed address (403)', async () => {
      const scanner = await createSipPort({
        address: '127.0.0.2',
        port: await freePort('127.0.0.2'),
        userAgent: 'friendly-scanner',
        logger: pino({ level: 'silent' }),
      });
      try {
        const failed = await new Promise<{ status: number }>((resolve) => {
          const call = scanner.placeCall({
            targets: [{ uri: bridgeUri('5511987654321') }],
            from: { user: '100' },
            sdpOffer: 'v=0\r\n',
            answerTimeoutMs: 5000,
          });
          call.on((e) => e.type === 'failed' && resolve(e));
        });
        expect(failed.status).toBe(403);
      } finally {
        await scanner.close();
      }
      expect(bicCalls()).toHaveLength(0);
    });

    it('refuses a user without permission (403, Reason no-permission) without calling Meta', async () => {
      await expect(stack.agent!.dial(bridgeUri('5511900000020'))).rejects.toMatchObject({ status: 403 });
      expect(bicCalls()).toHaveLength(0);
    });

    it('passes Meta’s own refusal on as a SIP error (Meta 138006 → 403) and corrects the ledger', async () => {
      await grantPermission(stack, '5511900000021');
      stack.simulator!.permissions.revoke('5511900000021'); // Meta no longer agrees with our ledger
      await expect(stack.agent!.dial(bridgeUri('5511900000021'))).rejects.toMatchObject({ status: 403 });
      expect(bicCalls()).toHaveLength(0);
      // M-TRB 138006: the ledger now says what Meta says, so the next INVITE is refused before Meta.
      const pnid = stack.runtime.config.line!.phoneNumberId;
      await eventually(
        async () => (await stack.runtime.permissions.get(pnid, '5511900000021'))?.state === 'revoked',
        5000,
        'the ledger entry revoked after Meta 138006',
      );
    });
  });

  describe('a PBX-started call the WhatsApp user answers', () => {
    it('bridges audio both ways and ends at Meta when the PBX hangs up', async () => {
      const number = '5511900000022';
      await grantPermission(stack, number);
      stack.agent!.configure({ codecs: ['PCMU'], audio: 'tone' });
      const mark = metrics.mark();
      const agentCall = await stack.agent!.dial(bridgeUri(number));
      const call = await eventually(
        () => bicCalls().find((c) => c.user.waId === number && c.state === 'accepted'),
        5000,
        'the WhatsApp call accepted',
      );
      call.relay.startRecording();
      call.relay.playTone(1000, -12);
      await sleep(1500); // the measurement window
      const atWhatsApp = measureTone(call.relay.stopRecording().slice(-48000), 48000);
      const atPbx = measureTone(agentCall.recording().slice(-8000), 8000);
      expect(Math.abs(atWhatsApp.hz - 1000)).toBeLessThan(10);
      expect(Math.abs(atPbx.hz - 1000)).toBeLessThan(10);
      expect(Math.abs(atWhatsApp.dbfs + 12)).toBeLessThan(3);
      expect(Math.abs(atPbx.dbfs + 12)).toBeLessThan(3);

      await agentCall.hangUp();
      await eventually(() => call.state === 'ended', 5000, 'the WhatsApp leg to end');
      const record = await eventually(async () => {
        const r = await stack.runtime.calls.get(call.id);
        return r?.state === 'ended' && r;
      });
      expect(record).toMatchObject({ direction: 'business-initiated', endReason: 'agent-hung-up', endedBy: 'sip' });
      const ledger = (await (await stack.api(`/v1/permissions/${number}`)).json()) as {
        connectedCalls: { last24h: number };
      };
      expect(ledger.connectedCalls.last24h, 'the connected call counts toward the daily limit').toBe(1);
      await until(() => metrics.since(mark, 'HandleTime').length > 0, 5000);
      expect(callMetrics(metrics, mark)).toEqual(oneAnsweredCall('agent-hung-up'));
    });

    it('answers the PBX 486 when the WhatsApp user rejects', async () => {
      const number = '5511900000023';
      await grantPermission(stack, number);
      stack.simulator!.users.setScript(number, { bicAnswer: 'reject' });
      await expect(stack.agent!.dial(bridgeUri(number))).rejects.toMatchObject({ status: 486 });
      await eventually(
        async () => {
          const ledger = (await (await stack.api(`/v1/permissions/${number}`)).json()) as {
            consecutiveUnanswered: number;
          };
          return ledger.consecutiveUnanswered === 1;
        },
        3000,
        'the rejection counted as unanswered',
      );
      const call = bicCalls().find((c) => c.user.waId === number)!;
      // The ended record carries the SIP status the PBX got, whichever process ended the record.
      const record = await eventually(async () => {
        const r = await stack.runtime.calls.get(call.id);
        return r?.state === 'ended' && r.sip?.status !== undefined && r;
      });
      expect(record.sip).toMatchObject({ status: 486, reason: 'Busy Here' });
    });
  });

  /**
   * Meta: the ACCEPTED status "will typically always arrive after the call has been established… primarily sent for
   * call event auditing" (M-BIC); delivery is neither ordered nor guaranteed. The user's pickup is the first audio
   * from Meta's relay (the relay sends none while the phone rings).
   */
  describe('a PBX-started call whose ACCEPTED status is late, duplicated or lost', () => {
    /** Rejects if the PBX's call is not answered within `ms`: today's bridge waits for ACCEPTED forever. */
    const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
      Promise.race([
        p,
        sleep(ms).then((): never => {
          throw new Error(`${what} not within ${ms} ms`);
        }),
      ]);

    async function ledger(number: string) {
      return (await (await stack.api(`/v1/permissions/${number}`)).json()) as {
        connectedCalls: { last24h: number };
        consecutiveUnanswered: number;
      };
    }

    it('ACCEPTED 3 s late and twice: the PBX gets its 200 right after the user’s first audio, long before ACCEPTED', async () => {
      const number = '5511900000025';
      await grantPermission(stack, number);
      stack.simulator!.users.setScript(number, { acceptedStatus: { delayMs: 3000, duplicates: 1 } });
      const agentCall = await within(stack.agent!.dial(bridgeUri(number)), 2500, 'the PBX’s 200');
      const call = bicCalls().find((c) => c.user.waId === number)!;
      const firstAudio = call.relay.firstUserMediaSentAt;
      expect(firstAudio, 'the user’s first audio reached the bridge').toBeDefined();
      // Real sockets: a wide bound (the bridge typically needs ~20 ms), and the ordering against ACCEPTED.
      expect(agentCall.answeredAt - (firstAudio ?? 0)).toBeLessThan(300);
      expect(
        call.log.some((l) => l.name === 'status:ACCEPTED'),
        'ACCEPTED not even sent yet',
      ).toBe(false);

      // Both copies of ACCEPTED arrive during the call and change nothing.
      const accepted = () =>
        stack.simulator!.emitter.deliveries.find((d) => {
          const text = JSON.stringify(d.changes);
          return text.includes('"ACCEPTED"') && text.includes(call.id);
        });
      await eventually(
        () =>
          new Set(
            accepted()
              ?.attempts.filter((a) => a.status === 200)
              .map((a) => a.copy),
          ).size === 2,
        6000,
        'both ACCEPTED copies delivered',
      );
      expect(call.state).toBe('accepted');
      expect(agentCall.isEnded).toBe(false);
      await agentCall.hangUp();
      const record = await eventually(async () => {
        const r = await stack.runtime.calls.get(call.id);
        return r?.state === 'ended' && r;
      });
      expect(record).toMatchObject({ endReason: 'agent-hung-up', endedBy: 'sip' });
      expect((await ledger(number)).connectedCalls.last24h).toBe(1);
    });

    it('ACCEPTED lost: the call still bridges on the user’s first audio, audio both ways, counted as connected', async () => {
      const number = '5511900000026';
      await grantPermission(stack, number);
      stack.simulator!.users.setScript(number, { acceptedStatus: { lost: true } });
      stack.agent!.configure({ codecs: ['PCMU'], audio: 'tone' });
      const agentCall = await within(stack.agent!.dial(bridgeUri(number)), 5000, 'the PBX’s 200');
      const call = bicCalls().find((c) => c.user.waId === number)!;
      call.relay.startRecording();
      call.relay.playTone(1000, -12);
      await sleep(1500); // the measurement window
      const atWhatsApp = measureTone(call.relay.stopRecording().slice(-48000), 48000);
      const atPbx = measureTone(agentCall.recording().slice(-8000), 8000);
      expect(Math.abs(atWhatsApp.hz - 1000)).toBeLessThan(10);
      expect(Math.abs(atPbx.hz - 1000)).toBeLessThan(10);
      call.hangUp();
      await agentCall.ended;
      const record = await eventually(async () => {
        const r = await stack.runtime.calls.get(call.id);
        return r?.state === 'ended' && r;
      });
      expect(record).toMatchObject({ direction: 'business-initiated', endedBy: 'whatsapp' });
      expect(record.answeredAt).toBeDefined();
      expect(await ledger(number)).toMatchObject({ connectedCalls: { last24h: 1 }, consecutiveUnanswered: 0 });
    });

    it('the user picks up and hangs up before any audio, ACCEPTED lost: the terminate’s start_time counts it answered', async () => {
      const number = '5511900000027';
      await grantPermission(stack, number);
      const sim = stack.simulator!;
      sim.users.setScript(number, { acceptedStatus: { lost: true } });
      // The user hangs up in the same instant as the pickup: the relay sends no audio at all.
      const onState = (c: { id: string; user: { waId?: string } }, _from: string, to: string) => {
        if (to === 'accepted' && c.user.waId === number) setImmediate(() => sim.engine.hangUp(c.id));
      };
      sim.engine.on('state', onState);
      try {
        await expect(stack.agent!.dial(bridgeUri(number))).rejects.toMatchObject({ status: 480 });
      } finally {
        sim.engine.off('state', onState);
      }
      const call = bicCalls().find((c) => c.user.waId === number)!;
      expect(call.relay.firstUserMediaSentAt).toBeUndefined();
      expect(call.record.startedAt).toBeDefined();
      await eventually(async () => (await ledger(number)).connectedCalls.last24h === 1, 5000, 'counted as connected');
      expect((await ledger(number)).consecutiveUnanswered).toBe(0);
    });
  });

  describe('a PBX-started call whose PBX moves its media (re-INVITE, RFC 3264 §8)', () => {
    it('sends to the new port, takes the PBX audio from it, and reports the call', async () => {
      const number = '5511900000024';
      await grantPermission(stack, number);
      const mark = metrics.mark();
      const pbx = await FarEnd.start('127.0.0.2');
      const first = await PbxRtp.open();
      const moved = await PbxRtp.open();
      try {
        const invite = pbxInvite(pbx, bridgeUri(number), sdp('127.0.0.2', first.port));
        const ok = await finalResponse(pbx, invite);
        expect(ok.status).toBe(200);
        ack2xx(pbx, invite, ok);
        const bridgeRtp = mediaAddress(String(ok.content));
        const call = bicCalls().find((c) => c.user.waId === number)!;
        await expectMediaFollowsMove({
          call,
          first,
          moved,
          bridgeRtp,
          reinvite: async () => {
            const reinvite = uacRequest(invite, ok, 'INVITE', 2, sdp('127.0.0.2', moved.port, 'sendrecv', 2));
            const answered = await finalResponse(pbx, reinvite);
            expect(answered.status).toBe(200);
            ack2xx(pbx, reinvite, answered);
          },
        });

        expect((await finalResponse(pbx, uacRequest(invite, ok, 'BYE', 3))).status).toBe(200);
        const record = await eventually(async () => {
          const r = await stack.runtime.calls.get(call.id);
          return r?.state === 'ended' && r;
        });
        expect(record).toMatchObject({ endReason: 'agent-hung-up', endedBy: 'sip' });
        await until(() => metrics.since(mark, 'HandleTime').length > 0, 5000);
        expect(callMetrics(metrics, mark)).toEqual(oneAnsweredCall('agent-hung-up'));
      } finally {
        pbx.close();
        await first.close();
        await moved.close();
      }
    });
  });

  /**
   * Meta counts a business-initiated call the user did not pick up, whoever ended it (4 in a row
   * revoke the permission, M-PERM §4.1), and says so in the `terminate` (no `start_time`). When the
   * PBX gives up while the phone rings, the bridge ends the call at once and its worker stops
   * listening; Meta's terminate comes after.
   */
  describe('a PBX that CANCELs while the WhatsApp user’s phone rings', () => {
    it('ends the call at Meta and the ledger counts one unanswered call, as Meta does', async () => {
      const number = '5511900000028';
      await grantPermission(stack, number);
      const sim = stack.simulator!;
      sim.users.setScript(number, { bicAnswer: 'no_answer' });
      const pbx = await createSipPort({
        address: '127.0.0.2',
        port: await freePort('127.0.0.2'),
        logger: pino({ level: 'silent' }),
      });
      try {
        const abort = new AbortController();
        const outcome = new Promise<{ status: number }>((resolve) => {
          const call = pbx.placeCall({
            targets: [{ uri: bridgeUri(number) }],
            from: { user: '100' },
            sdpOffer: sdp('127.0.0.2', 40_002),
            answerTimeoutMs: 20_000,
            signal: abort.signal,
          });
          call.on((e) => {
            if (e.type === 'ringing') abort.abort(); // the PBX's caller gives up: CANCEL
            if (e.type === 'failed') resolve(e);
          });
        });
        expect((await outcome).status).toBe(487);
      } finally {
        await pbx.close();
      }
      const call = bicCalls().find((c) => c.user.waId === number)!;
      await eventually(() => call.state === 'ended', 5000, 'the WhatsApp call to end');
      expect(call.record.endReason).toBe('business_terminate');
      expect(call.record.startedAt, 'never picked up').toBeUndefined();
      expect(sim.permissions.consecutiveUnanswered(number), 'Meta counted it').toBe(1);
      await eventually(
        async () =>
          ((await (await stack.api(`/v1/permissions/${number}`)).json()) as { consecutiveUnanswered: number })
            .consecutiveUnanswered === 1,
        5000,
        'the bridge’s ledger to count the unanswered call',
      );
    });
  });
}
