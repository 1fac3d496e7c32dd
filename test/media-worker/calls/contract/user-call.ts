/**
 * Contract stories, run on each SipPort adapter (`inprocess` in `npm test`, `drachtio` in
 * `npm run test:interop`). User-initiated calls end to end on loopback. The Meta simulator's relay (real WebRTC, ICE-lite,
 * DTLS-SRTP, Opus) calls; the webhook function queues the job; the media worker answers Meta,
 * rings the SIP agent (a separate SIP stack on 127.0.0.2), bridges audio and DTMF; each way of
 * ending a call ends it everywhere. Tones are measured on the far side of the bridge.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AgentCall, SipAgent } from '#local/sip-agent.ts';
import { measureTone } from '#simulator/media/audio.ts';
import type { SimCall } from '#simulator/simulator.ts';
import { sleep, until } from '../../../helpers/async.ts';
import { callMetrics, oneAnsweredCall, RecordingMetrics } from '../../../helpers/recording-metrics.ts';
import { eventually, startTestStack, type TestStack } from '../../../helpers/test-stack.ts';

/** Register the user-initiated call stories for SIP adapter `name`. */
export function userCallContract(name: 'inprocess' | 'drachtio'): void {
  let stack: TestStack;
  const metrics = new RecordingMetrics();
  let agent: SipAgent;

  async function record(callId: string): Promise<Record<string, unknown>> {
    return (await (await stack.api(`/v1/calls/${encodeURIComponent(callId)}`)).json()) as Record<string, unknown>;
  }

  async function ended(callId: string): Promise<Record<string, unknown>> {
    return eventually(
      async () => {
        const r = await record(callId);
        return r.state === 'ended' && r;
      },
      8000,
      `call ${callId} to end`,
    );
  }

  /** The record once the worker has written the call's media statistics (just after the end). */
  async function withMediaStats(callId: string): Promise<Record<string, unknown>> {
    return eventually(
      async () => {
        const r = await record(callId);
        return r.media !== undefined && r;
      },
      5000,
      `media statistics of ${callId}`,
    );
  }

  /** Places a call and waits until the agent has it and Meta has accepted it. */
  async function connectedCall(
    user = { waId: '5511987654321', name: 'Ana' },
  ): Promise<{ call: SimCall; agentCall: AgentCall }> {
    const next = agent.nextCall(10_000);
    const call = await stack.simulator!.placeUserCall({ user });
    const agentCall = await next;
    await call.waitFor('accepted', 5000);
    return { call, agentCall };
  }

  /** Plays a tone on the WhatsApp side for a while, measures what each far side heard. */
  async function exchangeTones(
    call: SimCall,
    agentCall: AgentCall,
  ): Promise<{ atWhatsApp: { hz: number; dbfs: number }; atSip: { hz: number; dbfs: number } }> {
    call.relay.startRecording();
    call.relay.playTone(1000, -12);
    await sleep(1500); // the measurement window
    const atWhatsApp = measureTone(call.relay.stopRecording().slice(-48000), 48000);
    const pcm = agentCall.recording();
    const atSip = measureTone(pcm.slice(-agentCall.sampleRate), agentCall.sampleRate);
    return { atWhatsApp, atSip };
  }

  beforeAll(async () => {
    stack = await startTestStack(
      { SIP_RING_TIMEOUT_SECONDS: '3' },
      { bridge: true, sipStack: name, workerMetrics: metrics },
    );
    agent = stack.agent!;
  });
  afterAll(() => stack?.stop());
  beforeEach(() =>
    agent.configure({ behaviour: 'answer', codecs: ['PCMU'], audio: 'tone', earlyMedia: false, answerDelayMs: 0 }),
  );

  describe('a user-initiated call answered with G.711 (transcoding)', () => {
    it('carries a 1 kHz tone both ways within 10 Hz and 3 dB, DTMF both ways, and records the call', async () => {
      const { call, agentCall } = await connectedCall();
      expect(agentCall.media.codec.name).toBe('PCMU');
      const { atWhatsApp, atSip } = await exchangeTones(call, agentCall);
      expect(Math.abs(atWhatsApp.hz - 1000)).toBeLessThan(10);
      expect(Math.abs(atSip.hz - 1000)).toBeLessThan(10);
      expect(Math.abs(atWhatsApp.dbfs - -12)).toBeLessThan(3);
      expect(Math.abs(atSip.dbfs - -12)).toBeLessThan(3);

      await call.relay.sendDtmf('159#');
      // Wiring bound, wide for a loaded machine: four digits take about 1.5 s.
      await eventually(
        () => agentCall.receivedDigits === '159#',
        15_000,
        () => `DTMF at the SIP agent (received "${agentCall.receivedDigits}")`,
      );
      await agent.sendDtmf(agentCall, '42*');
      await eventually(
        () => call.relay.receivedDigits === '42*',
        15_000,
        () => `DTMF at WhatsApp (received "${call.relay.receivedDigits}")`,
      );

      const live = await record(call.id);
      expect(live).toMatchObject({
        state: 'answered',
        sip: { answeredTarget: agent.uri },
        timings: { setupMs: expect.any(Number), answerMs: expect.any(Number) },
      });

      const hungUpAt = Date.now();
      call.hangUp();
      await agentCall.ended;
      expect(Date.now() - hungUpAt, 'WhatsApp hang-up reaches SIP as BYE within 1 s').toBeLessThan(1000);
      expect(await ended(call.id)).toMatchObject({ endReason: 'caller-hung-up', endedBy: 'whatsapp' });
      const stats = await withMediaStats(call.id);
      expect(stats).toMatchObject({
        media: { mode: 'transcode', codec: 'g711', whatsapp: { srtpRejected: 0, packetsLost: 0 } },
        timings: { talkMs: expect.any(Number) },
      });
      expect((stats.media as { whatsappToSip: { packets: number } }).whatsappToSip.packets).toBeGreaterThan(50);
    });

    it('sends Meta terminate when the agent hangs up, and reports the call', async () => {
      const mark = metrics.mark();
      const { call, agentCall } = await connectedCall({ waId: '5511900000002', name: 'Bea' });
      await agentCall.hangUp();
      await eventually(() => call.state === 'ended', 5000, 'the WhatsApp leg to end');
      expect(call.record.endReason).toBe('business_terminate');
      expect(await ended(call.id)).toMatchObject({ endReason: 'agent-hung-up', endedBy: 'sip' });
      await until(() => metrics.since(mark, 'HandleTime').length > 0, 5000);
      expect(callMetrics(metrics, mark)).toEqual(oneAnsweredCall('agent-hung-up'));
      expect(metrics.since(mark, 'SetupLatency')).toHaveLength(1);
    });
  });

  describe('a user-initiated call answered with Opus (passthrough)', () => {
    it('relays Opus without transcoding and carries the tone both ways', async () => {
      agent.configure({ codecs: ['opus'] });
      const { call, agentCall } = await connectedCall({ waId: '5511900000003', name: 'Caio' });
      expect(agentCall.media.codec.name).toBe('opus');
      const { atWhatsApp, atSip } = await exchangeTones(call, agentCall);
      expect(Math.abs(atWhatsApp.hz - 1000)).toBeLessThan(10);
      expect(Math.abs(atSip.hz - 1000)).toBeLessThan(10);
      expect(Math.abs(atWhatsApp.dbfs - -12)).toBeLessThan(3);
      expect(Math.abs(atSip.dbfs - -12)).toBeLessThan(3);
      call.hangUp();
      await ended(call.id);
      expect(await withMediaStats(call.id)).toMatchObject({ media: { mode: 'passthrough', codec: 'opus' } });
    });
  });

  describe('calls the agent does not take', () => {
    it('ends the pre-accepted WhatsApp call with terminate when the agent is busy (486 stays sip-rejected)', async () => {
      // Once pre-accepted the call is in progress: Meta's troubleshooting page says terminate, not reject (M-TRB).
      agent.configure({ behaviour: 'busy' });
      const call = await stack.simulator!.placeUserCall({ user: { waId: '5511900000004' } });
      await eventually(() => call.state === 'ended', 8000, 'the WhatsApp call to end');
      expect(call.record.endReason).toBe('business_terminate');
      expect(call.log.filter((e) => e.kind === 'error')).toEqual([]);
      expect(await ended(call.id)).toMatchObject({ endReason: 'sip-rejected', endedBy: 'sip', sip: { status: 486 } });
    });

    it('cancels the INVITE when the WhatsApp user hangs up while the agent rings', async () => {
      agent.configure({ behaviour: 'no-answer' });
      const before = agent.calls.length;
      const call = await stack.simulator!.placeUserCall({ user: { waId: '5511900000005' } });
      await eventually(() => agent.calls.length > before, 5000, 'the agent to ring');
      const ringing = agent.calls.at(-1)!;
      const hungUpAt = Date.now();
      call.hangUp();
      await ringing.ended;
      expect(Date.now() - hungUpAt, 'CANCEL within 1 s').toBeLessThan(1000);
      expect(await ended(call.id)).toMatchObject({ endReason: 'caller-hung-up' });
    });

    it('gives up after the ring timeout: the call is unanswered, and Meta gets terminate', async () => {
      agent.configure({ behaviour: 'no-answer' });
      const call = await stack.simulator!.placeUserCall({ user: { waId: '5511900000006' } });
      await eventually(() => call.state === 'ended', 10_000, 'the WhatsApp call to end');
      expect(call.record.endReason).toBe('business_terminate');
      expect(call.record.startedAt, 'never connected at Meta').toBeUndefined();
      expect(await ended(call.id)).toMatchObject({ endReason: 'unanswered', endedBy: 'sip', sip: { status: 408 } });
    });
  });

  describe('resources', () => {
    it('releases every UDP socket a call used (ICE, RTP, RTCP on both sides) once it ends', async () => {
      // Timers are not counted here: SIP transaction timers legitimately outlive a call by up to
      // 32 s (RFC 3261 Timer D/K); the leg and bridge tests check their own timers.
      const udp = () => process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap').length;
      // Sockets of the calls before close asynchronously: wait until the count holds still.
      let last = -1;
      await until(async () => {
        const now = udp();
        const still = now === last;
        last = now;
        if (!still) await sleep(100);
        return still;
      }, 5000);
      const before = udp();
      const calls = [];
      for (let i = 0; i < 3; i++) calls.push(await connectedCall({ waId: `55119000001${i}`, name: `Leak ${i}` }));
      expect(udp()).toBeGreaterThanOrEqual(before + 3 * 4);
      for (const { call, agentCall } of calls) {
        call.hangUp();
        await agentCall.ended;
        await withMediaStats(call.id);
      }
      await eventually(() => udp() <= before, 5000, 'UDP sockets back to baseline');
    });
  });
}
