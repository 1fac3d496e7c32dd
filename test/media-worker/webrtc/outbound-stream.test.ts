import { describe, expect, it } from 'vitest';
import type { RtpHeader, RtpPacket } from 'werift';
import { type Clock, type ClockTimer, ManualClock } from '#core/clock.ts';
import { MediaError } from '#worker/media/errors.ts';
import { createRtpView, parseRtp, parseTelephoneEvent, type TelephoneEvent } from '#worker/media/rtp.ts';
import {
  OPUS_TICKS_PER_FRAME,
  OutboundStream,
  type OutboundStreamOptions,
  opusSilenceFrame,
  WHATSAPP_OPUS_PT,
  WHATSAPP_TELEPHONE_EVENT_PT,
} from '#worker/webrtc/outbound-stream.ts';

const SSRC = 0x1122_3344;
const SEQ0 = 65_534; // wraps after two packets
const TS0 = 4_294_966_000; // wraps after two frames

/** One packet as the fake SRTP fast path (or werift) received it. */
interface Sent {
  at: number;
  path: 'fast' | 'werift-sender' | 'werift-dtls';
  pt: number;
  marker: boolean;
  seq: number;
  ts: number;
  ssrc: number;
  silence: boolean;
  event: TelephoneEvent | undefined;
  payloadBytes: number;
}

/**
 * An outbound stream on a ManualClock whose link records every packet: the
 * fast path parses the plain RTP it is given; werift's two paths record
 * their headers.
 */
function stream(options: Omit<OutboundStreamOptions, 'clock'> & { clock?: Clock; fastPath?: boolean } = {}) {
  const clock = new ManualClock(1000);
  const now = () => (options.clock ?? clock).now();
  const sent: Sent[] = [];
  const silence = opusSilenceFrame();
  const record = (path: Sent['path'], h: Omit<Sent, 'at' | 'path' | 'silence' | 'event'>, payload: Uint8Array) =>
    sent.push({
      at: now(),
      path,
      ...h,
      silence: Buffer.from(payload).equals(silence),
      event: h.pt === WHATSAPP_TELEPHONE_EVENT_PT ? parseTelephoneEvent(payload) : undefined,
    });
  const view = createRtpView();
  const link = {
    connected: true,
    fastPath:
      options.fastPath === false
        ? undefined
        : {
            send(rtp: Uint8Array, payloadBytes: number) {
              expect(parseRtp(rtp, view)).toBe(true);
              record(
                'fast',
                {
                  pt: view.payloadType,
                  marker: view.marker,
                  seq: view.sequenceNumber,
                  ts: view.timestamp,
                  ssrc: view.ssrc,
                  payloadBytes,
                },
                view.payload,
              );
            },
          },
    transceiver: {
      sender: {
        ssrc: SSRC,
        sendRtp: async (p: RtpPacket) => {
          record('werift-sender', fromHeader(p.header, p.payload.length), p.payload);
        },
      },
      dtlsTransport: {
        sendRtp: async (payload: Buffer, h: RtpHeader) => {
          record('werift-dtls', fromHeader(h, payload.length), payload);
          return payload.length;
        },
      },
    },
  };
  const out = new OutboundStream(link, {
    initialSequenceNumber: SEQ0,
    initialTimestamp: TS0,
    ...options,
    clock: options.clock ?? clock,
  });
  return { clock, sent, link, out };
}

function fromHeader(h: RtpHeader, payloadBytes: number) {
  return { pt: h.payloadType, marker: h.marker, seq: h.sequenceNumber, ts: h.timestamp, ssrc: h.ssrc, payloadBytes };
}

const plus = (ts: number, ticks: number) => (ts + ticks) >>> 0;
/** The sequence number of the stream's i-th packet. */
const seq = (i: number) => (SEQ0 + i) & 0xffff;
const tone = Buffer.from([0x78, 1, 2, 3, 4, 5]);

/** Lets promise callbacks run (a DTMF call resolving on a clock timer). */
const settle = () => new Promise<void>((r) => setImmediate(r));

describe('OutboundStream', () => {
  describe('silence (the maiden packet and Meta’s 20 s watchdog, §5.1/§5.2)', () => {
    it('waits for the link, then sends its first frame at once and one every 20 ms, each seq + 1 and timestamp + 960', () => {
      const { clock, sent, link, out } = stream();
      link.connected = false;
      out.startSilence();
      clock.advance(100);
      expect(sent).toEqual([]);

      link.connected = true;
      out.linkUp();
      clock.advance(0);
      expect(sent).toEqual([
        expect.objectContaining({ at: 1100, path: 'fast', pt: WHATSAPP_OPUS_PT, marker: true, seq: seq(0), ts: TS0 }),
      ]);
      expect(sent[0]).toMatchObject({ ssrc: SSRC, silence: true, payloadBytes: opusSilenceFrame().length });

      clock.advance(19);
      expect(sent).toHaveLength(1);
      clock.advance(1);
      expect(sent[1]).toMatchObject({ at: 1120, marker: false, seq: seq(1), ts: plus(TS0, 960), silence: true });
      clock.advance(20);
      // Both counters wrap (RFC 3550: modulo 2^16 and 2^32).
      expect(sent[2]).toMatchObject({ at: 1140, seq: 0, ts: plus(TS0, 1920) });
      expect(sent[2]?.ts).toBe(TS0 + 1920 - 2 ** 32);
      expect(out.counters).toEqual({ packetsSent: 3, silenceFramesSent: 3, dtmfSent: 0, heldDropped: 0 });
      expect(out.firstPacketSentAt).toBe(1100);
    });

    it('after a stalled event loop sends one frame, not a burst, keeps its 20 ms grid and stamps it at real time', () => {
      // A clock whose next timer fires 200 ms late, as on a stalled event loop.
      const manual = new ManualClock(1000);
      let lateBy = 0;
      const stalling: Clock = {
        now: () => manual.now(),
        setTimeout: (fn, ms) => {
          const t = manual.setTimeout(fn, ms + lateBy);
          lateBy = 0;
          return t;
        },
        clearTimeout: (t: ClockTimer | undefined) => manual.clearTimeout(t),
      };
      const { sent, out } = stream({ clock: stalling });
      out.startSilence();
      manual.advance(0);
      lateBy = 200; // the timer set by the next frame
      manual.advance(20);
      expect(sent.map((p) => p.at)).toEqual([1000, 1020]);
      manual.advance(220);
      // Frames due at 1040…1240 (11): the first 10 are skipped, the due one goes out, its
      // timestamp covering the skipped time (a gap for Meta's jitter buffer, not a time warp).
      expect(sent.map((p) => p.at)).toEqual([1000, 1020, 1240]);
      expect(sent[2]).toMatchObject({ seq: seq(2), ts: plus(TS0, 12 * 960) });
      manual.advance(20);
      expect(sent.map((p) => p.at)).toEqual([1000, 1020, 1240, 1260]);
    });

    it('gives way to audio, and resumes silenceResumeMs after the last frame with a timestamp that covers the gap', () => {
      const { clock, sent, out } = stream({ silenceResumeMs: 100 });
      out.startSilence();
      clock.advance(0);
      clock.advance(5);
      out.sendAudio(tone);
      // The first audio frame continues the silence's timeline and starts a talkspurt.
      expect(sent[1]).toMatchObject({ at: 1005, marker: true, seq: seq(1), ts: plus(TS0, 960), silence: false });
      clock.advance(20);
      out.sendAudio(tone, { timestampDelta: 1920 });
      expect(sent[2]).toMatchObject({ at: 1025, marker: false, ts: plus(TS0, 960 + 1920) });
      // Silence ticks at 1040, 1060, …: held back until 100 ms after the last audio (1125).
      clock.advance(99);
      expect(sent).toHaveLength(3);
      clock.advance(16);
      // 1140: the last audio frame stood for 1060 (its 1920 step), so silence is 4 frames on: real time.
      expect(sent[3]).toMatchObject({ at: 1140, marker: true, seq: seq(3), silence: true });
      expect(sent[3]?.ts).toBe(plus(TS0, 960 + 1920 + 4 * 960));
      expect(out.counters).toEqual({ packetsSent: 4, silenceFramesSent: 2, dtmfSent: 0, heldDropped: 0 });
    });

    it('resumeSilence() hands over at once, continuing seq and timestamp, then every 20 ms from there', () => {
      const { clock, sent, out } = stream();
      out.startSilence();
      clock.advance(0);
      for (let i = 0; i < 3; i++) {
        clock.advance(i === 0 ? 7 : 20);
        out.sendAudio(tone);
      }
      const last = sent[3];
      // The first audio continues the silence's timeline one frame on: 1020, 1040, 1060.
      expect(last).toMatchObject({ at: 1047, silence: false, seq: seq(3) });
      clock.advance(33); // 1080: the last frame's slot has passed, the timeline no longer leads
      out.resumeSilence();
      clock.advance(0);
      expect(sent[4]).toMatchObject({ at: 1080, silence: true, marker: true, seq: seq(4) });
      expect(sent[4]?.ts).toBe(plus(last?.ts ?? 0, OPUS_TICKS_PER_FRAME));
      // A second call changes nothing: the next frame is still 20 ms later.
      out.resumeSilence();
      clock.advance(19);
      expect(sent).toHaveLength(5);
      clock.advance(1);
      expect(sent[5]).toMatchObject({ at: 1100, silence: true, seq: seq(5) });
    });

    it('resumeSilence() does nothing when silence is not armed', () => {
      const { clock, sent, out } = stream();
      out.sendAudio(tone);
      out.resumeSilence();
      clock.advance(500);
      expect(sent).toHaveLength(1);
    });

    it('stops for good on stopSilence(), on linkDown() and on close(), leaving no timer behind', () => {
      const { clock, sent, out } = stream();
      out.startSilence();
      clock.advance(40);
      expect(sent).toHaveLength(3);
      out.linkDown();
      clock.advance(100);
      expect(sent).toHaveLength(3);
      out.linkUp();
      clock.advance(0);
      expect(sent).toHaveLength(4);
      out.stopSilence();
      clock.advance(100);
      expect(sent).toHaveLength(4);
      out.startSilence();
      out.close();
      out.close();
      clock.advance(100);
      out.sendAudio(tone);
      expect(sent).toHaveLength(4);
      expect(clock.pendingTimers).toBe(0);
    });
  });

  describe('audioLeadMs(): how far the stream runs ahead of the clock', () => {
    it('is one frame while silence runs in real time, grows by 20 ms per frame of a burst and drains with the clock', () => {
      const { clock, out } = stream();
      expect(out.audioLeadMs()).toBe(0);
      out.startSilence();
      clock.advance(40);
      // The next frame is due one frame after the last silence frame, whatever delta is asked for.
      expect(out.audioLeadMs()).toBe(20);
      expect(out.audioLeadMs(2 * OPUS_TICKS_PER_FRAME)).toBe(20);
      clock.advance(5);
      expect(out.audioLeadMs()).toBe(15);
      // A burst of 10 frames (200 ms) at once: the 11th would be 220 ms after the last silence frame.
      for (let i = 0; i < 10; i++) out.sendAudio(tone);
      expect(out.audioLeadMs()).toBe(215);
      expect(out.audioLeadMs(2 * OPUS_TICKS_PER_FRAME)).toBe(235);
      expect(out.audioLeadMs(OPUS_TICKS_PER_FRAME, clock.now() + 100)).toBe(115);
      clock.advance(100);
      expect(out.audioLeadMs()).toBe(115);
    });

    it('keeps the source’s timing when audio comes late: the timeline lags (jitter for Meta’s buffer), a talkspurt start catches up', () => {
      const { clock, out } = stream();
      out.sendAudio(tone);
      clock.advance(50);
      // 30 ms late for a 20 ms frame.
      expect(out.audioLeadMs()).toBe(-30);
      out.sendAudio(tone);
      expect(out.audioLeadMs()).toBe(-10);
      // A talkspurt start (marker) that would be late jumps to the real-time position instead.
      clock.advance(100);
      out.sendAudio(tone, { marker: true });
      expect(out.audioLeadMs()).toBe(20);
    });

    it('hands a burst over to silence only once its lead is spent: silence never makes the timeline lead', () => {
      const { clock, sent, out } = stream();
      out.startSilence();
      clock.advance(0);
      clock.advance(10);
      for (let i = 0; i < 5; i++) out.sendAudio(tone); // 100 ms of audio at once, at 1010
      out.resumeSilence();
      clock.advance(110);
      expect(sent.filter((p) => p.silence)).toHaveLength(1); // only the maiden frame: the burst plays out
      clock.advance(10);
      const next = sent[6];
      // The burst stood for 1020…1100; the first silence frame takes the first grid slot (from
      // resumeSilence at 1010) once 1120 has come, one frame on: at 1130, never ahead of real time.
      expect(next).toMatchObject({ at: 1130, silence: true, marker: true });
      expect(next?.ts).toBe(plus(sent[5]?.ts ?? 0, OPUS_TICKS_PER_FRAME));
    });

    it('waits one turn before handing audio over to silence when its tick fires late (a blocked loop), so queued packets go first', () => {
      const { clock, sent, out } = stream({ silenceResumeMs: 100 });
      out.startSilence();
      clock.advance(0);
      out.sendAudio(tone, { marker: true });
      // The loop is blocked for 200 ms: the tick that would hand over fires late …
      clock.block(200);
      clock.advance(0);
      expect(sent).toHaveLength(2);
      // … the packets read in the same turn continue the talkspurt with their own timing …
      for (let i = 0; i < 10; i++) out.sendAudio(tone, { timestampDelta: OPUS_TICKS_PER_FRAME });
      clock.advance(1);
      expect(sent.slice(2).every((p) => !p.silence)).toBe(true);
      expect(sent.at(-1)?.ts).toBe(plus(sent[1]?.ts ?? 0, 10 * OPUS_TICKS_PER_FRAME));
      // The last frame stands for 1220, 19 ms ahead of the clock: the next would be 39 ms ahead.
      expect(out.audioLeadMs()).toBe(39);
    });
  });

  describe('withheld until accept (a user-initiated call: the first media packet is the answer, M-FAQ)', () => {
    it('sends no silence, audio or digit while withheld, then the first silence frame at once on release', () => {
      const { clock, sent, out } = stream();
      out.withhold();
      out.startSilence();
      out.linkUp();
      clock.advance(5000);
      out.sendTelephoneEvent({ event: 1, end: true, volume: 10, duration: 800 });
      out.resumeSilence();
      clock.advance(1000);
      expect(sent).toEqual([]);
      expect(out.withheld).toBe(true);

      out.release();
      clock.advance(0);
      expect(sent).toEqual([expect.objectContaining({ at: 7000, seq: seq(0), ts: TS0, marker: true, silence: true })]);
      expect(out.firstPacketSentAt).toBe(7000);
      clock.advance(20);
      expect(sent[1]).toMatchObject({ at: 7020, seq: seq(1), ts: plus(TS0, 960), silence: true });
    });

    it('holds the audio of the accept round trip and sends it at once on release, the timeline ending at "now"', () => {
      const { clock, sent, out } = stream();
      out.withhold();
      out.startSilence();
      for (let i = 0; i < 10; i++) {
        out.sendAudio(tone);
        clock.advance(20);
      }
      expect(sent).toEqual([]);
      out.release();
      // The agent's first words, in order, one stream: the maiden packet is the first of them.
      expect(sent).toHaveLength(10);
      expect(sent.map((p) => p.seq)).toEqual([...Array(10).keys()].map(seq));
      expect(sent.map((p) => p.ts)).toEqual([...Array(10).keys()].map((i) => plus(TS0, i * 960)));
      expect(sent.every((p) => !p.silence && p.at === 1200)).toBe(true);
      expect(sent[0]?.marker).toBe(true);
      // What follows is paced from real time, not pushed behind the burst.
      expect(out.audioLeadMs(960, clock.now())).toBe(20);
      out.sendAudio(tone);
      expect(sent[10]).toMatchObject({ seq: seq(10), ts: plus(TS0, 9600), silence: false });
      clock.advance(100);
      expect(sent.slice(11).every((p) => p.silence)).toBe(true);
    });

    it('holds at most a second of audio, dropping the oldest, and waits for the link when released before it', () => {
      const { clock, sent, link, out } = stream();
      link.connected = false;
      out.withhold();
      for (let i = 0; i < 60; i++) out.sendAudio(Buffer.from([0x78, i]));
      expect(out.counters.heldDropped).toBe(10);
      out.release();
      clock.advance(100);
      expect(sent).toEqual([]);
      link.connected = true;
      out.linkUp();
      expect(sent).toHaveLength(50);
      expect(sent[0]).toMatchObject({ seq: seq(0), marker: true });
    });

    it('is a no-op once something was sent: withhold() cannot take back what Meta already has', () => {
      const { sent, out } = stream();
      out.sendAudio(tone);
      out.withhold();
      out.sendAudio(tone);
      expect(out.withheld).toBe(false);
      expect(sent).toHaveLength(2);
    });
  });

  describe('while the link is down', () => {
    it('sends nothing but keeps counting time, so the first packet after DTLS sits on the same timeline', () => {
      const { clock, sent, link, out } = stream();
      link.connected = false;
      out.sendAudio(tone);
      clock.advance(20);
      out.sendAudio(tone);
      expect(sent).toEqual([]);
      link.connected = true;
      clock.advance(20);
      out.sendAudio(tone);
      expect(sent).toEqual([expect.objectContaining({ seq: seq(0), ts: plus(TS0, 1920) })]);
      expect(out.counters.packetsSent).toBe(1);
    });
  });

  describe('the RFC 4733 sender (telephone-event/8000 on PT 126, §5.1)', () => {
    it('sends a digit as a start packet with the marker, updates every 20 ms, and three end packets, on one timestamp', async () => {
      const { clock, sent, out } = stream();
      out.startSilence();
      clock.advance(40);
      const audioTs = sent[2]?.ts ?? 0;
      clock.advance(5);
      let done = false;
      const sending = out.sendDtmf('5', { durationMs: 100, gapMs: 60, volume: 12 }).then(() => {
        done = true;
      });
      const events = () => sent.filter((p) => p.pt === WHATSAPP_TELEPHONE_EVENT_PT);
      expect(events()).toHaveLength(1);
      await clock.run(80, 20);
      // RFC 4733 §2.5.1.2: the event starts on the audio timeline "now" (the next frame's timestamp);
      // durations in 8 kHz units (160 per 20 ms); the end packet is sent three times (§2.5.1.4).
      expect(events().map((p) => [p.at, p.marker, p.event?.duration, p.event?.end])).toEqual([
        [1045, true, 160, false],
        [1065, false, 320, false],
        [1085, false, 480, false],
        [1105, false, 640, false],
        [1125, false, 800, true],
        [1125, false, 800, true],
        [1125, false, 800, true],
      ]);
      for (const p of events()) {
        expect(p).toMatchObject({ ts: plus(audioTs, 960), ssrc: SSRC, event: { event: 5, volume: 12 } });
      }
      // One sequence space with the audio: the event follows the last silence frame without a hole.
      expect(sent.map((p) => p.seq)).toEqual(sent.map((_, i) => seq(i)));
      expect(out.counters.dtmfSent).toBe(1);
      // Resolves after the next frame and the pause: 1125 + 20 + 60.
      clock.advance(79);
      await settle();
      expect(done).toBe(false);
      clock.advance(1);
      await sending;
      expect(clock.now()).toBe(1205);
    });

    it('holds audio back while an event plays (RFC 4733 §2.5.1.1), its frames still counted on the timeline', async () => {
      const { clock, sent, out } = stream();
      out.sendAudio(tone);
      const done = out.sendDtmf('1', { durationMs: 60, gapMs: 0 });
      clock.advance(10);
      out.sendAudio(tone);
      clock.advance(20);
      out.sendAudio(tone);
      clock.advance(20);
      out.sendAudio(tone);
      clock.advance(10);
      await done;
      expect(sent.map((p) => [p.at, p.pt, (p.ts - TS0) >>> 0])).toEqual([
        [1000, WHATSAPP_OPUS_PT, 0],
        [1000, WHATSAPP_TELEPHONE_EVENT_PT, 960],
        [1020, WHATSAPP_TELEPHONE_EVENT_PT, 960],
        [1040, WHATSAPP_TELEPHONE_EVENT_PT, 960],
        [1040, WHATSAPP_TELEPHONE_EVENT_PT, 960],
        [1040, WHATSAPP_TELEPHONE_EVENT_PT, 960],
        // The event took the next slot (960); the frames of 1010 and 1030 went unsent, the one
        // after the event carries on after them: no audio on the event's timestamp.
        [1050, WHATSAPP_OPUS_PT, 4 * 960],
      ]);
    });

    it('queues calls behind each other and sends several digits with the pause between them', async () => {
      const { clock, sent, out } = stream();
      const first = out.sendDtmf('12', { durationMs: 20, gapMs: 40 });
      const second = out.sendDtmf('#', { durationMs: 20, gapMs: 0 });
      const starts = () => sent.filter((p) => p.marker).map((p) => [p.at, p.event?.event]);
      await clock.run(200, 20, settle);
      await Promise.all([first, second]);
      // A 20 ms digit is one end packet (×3); the next starts after one frame plus the 40 ms pause.
      expect(starts()).toEqual([
        [1000, 1],
        [1060, 2],
        [1120, 11],
      ]);
      expect(sent).toHaveLength(9);
      expect(out.counters.dtmfSent).toBe(3);
    });

    it('relays events one packet at a time with sendTelephoneEvent(), a new event stamped with the audio clock', () => {
      const { clock, sent, out } = stream();
      out.sendAudio(tone);
      clock.advance(30);
      out.sendTelephoneEvent({ event: 9, end: false, volume: 10, duration: 160 });
      out.sendTelephoneEvent({ event: 9, end: false, volume: 10, duration: 320 });
      out.sendTelephoneEvent({ event: 9, end: true, volume: 10, duration: 480 });
      // A lost end: the same digit again starts a new event when the caller says so.
      out.sendTelephoneEvent({ event: 9, end: false, volume: 10, duration: 160 }, true);
      expect(sent.slice(1).map((p) => [p.marker, (p.ts - TS0) >>> 0])).toEqual([
        // 30 ms after the last frame rounds to 2 frames (RFC 4733 §2.5.1.2: the time the event starts).
        [true, 1920],
        [false, 1920],
        [false, 1920],
        [false, 1920],
        [false, 1920],
        // The next event takes the next slot: on the ended event's timestamp a receiver would take it
        // for that event's retransmission (RFC 4733 §2.5.2.1).
        [true, 2880],
      ]);
    });

    it('rejects digits outside 0-9*#A-D with a MediaError carrying the context, and settles pending calls on close', async () => {
      const { out } = stream({ errorContext: { callId: 'wacid.Z', component: 'whatsapp-leg' } });
      await expect(out.sendDtmf('12x')).rejects.toMatchObject({
        name: 'MediaError',
        code: 'invalid-argument',
        context: { callId: 'wacid.Z' },
      });
      const pending = out.sendDtmf('123');
      out.close();
      await expect(pending).resolves.toBeUndefined();
      const err = await out.sendDtmf('1').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MediaError);
      expect(err).toMatchObject({ code: 'closed' });
    });
  });

  describe('one send(): the fast path once attached, werift’s path before', () => {
    it('sends Opus through werift’s sender (its RTCP bookkeeping) and events through its DTLS transport (their PT kept)', () => {
      const { sent, out } = stream({ fastPath: false });
      out.telephoneEventPt = 101;
      out.sendAudio(tone);
      out.sendTelephoneEvent({ event: 1, end: false, volume: 10, duration: 160 });
      expect(sent.map((p) => [p.path, p.pt, p.seq, p.ssrc, p.payloadBytes])).toEqual([
        ['werift-sender', WHATSAPP_OPUS_PT, seq(0), SSRC, tone.length],
        ['werift-dtls', 101, seq(1), SSRC, 4],
      ]);
    });

    it('puts nothing anywhere before the transceiver exists', () => {
      const { clock, sent, link, out } = stream();
      (link as { transceiver: unknown }).transceiver = undefined;
      out.startSilence();
      out.sendAudio(tone);
      out.sendTelephoneEvent({ event: 1, end: true, volume: 10, duration: 160 });
      clock.advance(100);
      expect(sent).toEqual([]);
      expect(out.audioLeadMs()).toBe(0);
    });
  });
});
