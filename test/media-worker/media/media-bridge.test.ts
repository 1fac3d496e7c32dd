/**
 * The media bridge's rules, driven through fake legs on a manual clock: every assertion is exact
 * ("the frame leaves at 260 ms with delta 960"). The real-socket wiring (DTLS, SRTP, UDP,
 * latching) is media-bridge.wiring.test.ts; latencies and hold percentiles are in bench/.
 */
import { Decoder, Encoder } from '@evan/opus';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '#core/clock.ts';
import { measureTone, ToneGenerator } from '#simulator/media/audio.ts';
import { MediaError } from '#worker/media/errors.ts';
import { g711Decode, g711Encode } from '#worker/media/g711.ts';
import { MediaBridge, type MediaBridgeOptions } from '#worker/media/media-bridge.ts';
import { parseTelephoneEvent, TelephoneEventReceiver } from '#worker/media/rtp.ts';
import type { SipCodecName, SipMediaDescription } from '#worker/media/sip-sdp.ts';
import { FakeSip, FakeWhatsApp } from './fake-legs.ts';

const OPUS_PT_PBX = 107;
const DTMF_PT = 101;

function sdp(codec: SipCodecName, extra: Partial<SipMediaDescription> = {}): SipMediaDescription {
  return {
    address: '192.0.2.10',
    port: 40000,
    codec:
      codec === 'opus'
        ? { name: 'opus', payloadType: OPUS_PT_PBX, clockRate: 48_000 }
        : { name: codec, payloadType: codec === 'PCMU' ? 0 : 8, clockRate: 8000 },
    dtmfPayloadType: DTMF_PT,
    direction: 'sendrecv',
    onHold: false,
    ...extra,
  };
}

/** A bridge between fake legs on a manual clock at 0 ms. */
function bridged(codec: SipCodecName, options: Partial<MediaBridgeOptions> = {}) {
  const clock = new ManualClock();
  const wa = new FakeWhatsApp(clock);
  const sip = new FakeSip(clock);
  const bridge = new MediaBridge({ whatsapp: wa, rtp: sip, sip: sdp(codec), clock, callId: 'unit', ...options });
  bridge.start();
  return { clock, wa, sip, bridge };
}

/** The PBX's Opus packet number `n` (payload = [n], so a test can tell which frame went out). */
const opusFromPbx = (n: number) => Buffer.from([n]);

/** `ms` of a 1 kHz tone at -12 dBFS as G.711 at 8 kHz. */
function g711Tone(tone: ToneGenerator, law: 'PCMU' | 'PCMA', ms: number): Buffer {
  const pcm = tone.nextFrame((8000 * ms) / 1000);
  const out = Buffer.alloc(pcm.length);
  g711Encode(law, pcm, out);
  return out;
}

/** 20 ms of an 800 Hz tone as Meta's Opus (48 kHz). */
function opusFromMeta(encoder: Encoder, tone: ToneGenerator): Buffer {
  return Buffer.from(encoder.encode(tone.nextFrame(960)));
}

describe('Class: MediaBridge (fake legs, manual clock)', () => {
  describe('SIP→WhatsApp passthrough (PBX on Opus)', () => {
    it('forwards each packet the moment it arrives with the PBX’s timestamp step, when the PBX keeps real time', () => {
      const { clock, wa, sip, bridge } = bridged('opus');
      for (let n = 0; n < 5; n++) {
        // packets 20 ms apart, timestamps 960 apart
        clock.advance(n === 0 ? 0 : 20);
        sip.deliver(OPUS_PT_PBX, 100 + n, 5000 + n * 960, opusFromPbx(n));
      }
      expect(wa.audio.map((a) => [a.at, a.payload[0], a.delta, a.marker])).toEqual([
        [0, 0, undefined, true],
        [20, 1, 960, false],
        [40, 2, 960, false],
        [60, 3, 960, false],
        [80, 4, 960, false],
      ]);
      const s = bridge.stats().sipToWhatsapp;
      expect(s).toMatchObject({ packetsIn: 5, packetsOut: 5, paced: 0, overflowDropped: 0, lost: 0, late: 0 });
      // Nothing waited in the bridge: five samples in the 0 ms bucket.
      expect(bridge.sipToWhatsappHold.count).toBe(5);
      expect(bridge.sipToWhatsappHold.counts[0]).toBe(5);
    });

    it('forwards a backlog flushed after a 200 ms stall at once with the PBX’s timing: no silence in its slots, nothing dropped', () => {
      const { clock, wa, sip, bridge } = bridged('opus');
      const send = (n: number) => sip.deliver(OPUS_PT_PBX, 100 + n, 5000 + n * 960, opusFromPbx(n));
      for (let n = 0; n < 3; n++) {
        send(n); // at 0, 20, 40
        clock.advance(20);
      }
      // The PBX stalls for 200 ms: a hole for Meta's loss concealment, not silence.
      clock.advance(180); // 240 ms
      for (let n = 3; n <= 12; n++) send(n); // packets due at 60…240 arrive back to back at 240 ms
      expect(wa.silenceResumed).toEqual([]);
      expect(wa.audio.map((a) => [a.at, a.payload[0], a.delta])).toEqual([
        [0, 0, undefined],
        [20, 1, 960],
        [40, 2, 960],
        ...[3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map((n) => [240, n, 960]),
      ]);
      expect(bridge.stats().sipToWhatsapp).toMatchObject({
        packetsIn: 13,
        packetsOut: 13,
        paced: 0,
        overflowDropped: 0,
      });
      // The last frame stands for 240 ms: the timeline is back in real time at once.
      expect(wa.audioLeadMs(0, clock.now())).toBe(0);
      clock.advance(20);
      send(13);
      expect(wa.audio.at(-1)).toMatchObject({ at: 260, delta: 960 });
      expect(wa.audioLeadMs(0, clock.now())).toBe(0);
    });

    it('absorbs a 1 s PBX timestamp step that took no time: the frame goes out at once, one frame later on the timeline', () => {
      const { clock, wa, sip, bridge } = bridged('opus');
      for (let n = 0; n < 5; n++) {
        sip.deliver(OPUS_PT_PBX, 100 + n, 5000 + n * 960, opusFromPbx(n));
        clock.advance(20);
      }
      sip.deliver(OPUS_PT_PBX, 105, 5000 + 5 * 960 + 48_000, opusFromPbx(5)); // at 100 ms, ts + 1 s
      expect(wa.audio.at(-1)).toMatchObject({ at: 100, delta: 960 });
      expect(bridge.stats().sipToWhatsapp).toMatchObject({ paced: 0, overflowDropped: 0 });
    });

    it('counts a missing packet as lost (RFC 3550: a late one arrived; timestamp gaps kept) and drops late and duplicate packets', () => {
      const { wa, sip, bridge } = bridged('opus');
      for (const n of [0, 1, 1, 3, 2, 4, 6]) sip.deliver(OPUS_PT_PBX, 100 + n, 5000 + n * 960, opusFromPbx(n));
      expect(wa.audio.map((a) => [a.payload[0], a.delta])).toEqual([
        [0, undefined],
        [1, 960],
        [3, 1920],
        [4, 960],
        [6, 1920],
      ]);
      // Expected 7 (100…106), received 7 counting the duplicate (RFC 3550 A.3): only packet 5 is missing
      // once the duplicate is set against it, as a receiver report would say.
      expect(bridge.stats().sipToWhatsapp).toMatchObject({ packetsIn: 7, packetsOut: 5, lost: 0, late: 2 });
      sip.deliver(OPUS_PT_PBX, 108, 5000 + 8 * 960, opusFromPbx(8));
      expect(bridge.stats().sipToWhatsapp.lost).toBe(1); // packet 7
    });

    it('hands the stream to the leg’s silence 250 ms after the last packet (a stall-sized hole is not silence), not in a lost packet’s slot', () => {
      const { clock, wa, sip } = bridged('opus');
      for (const n of [0, 1, 3]) {
        // packet 2 is lost: a 40 ms gap stays a timestamp gap for Meta to conceal
        clock.advance(n === 0 ? 0 : n === 3 ? 40 : 20);
        sip.deliver(OPUS_PT_PBX, 100 + n, 5000 + n * 960, opusFromPbx(n));
      }
      expect(clock.now()).toBe(60);
      clock.advance(249);
      expect(wa.silenceResumed).toEqual([]);
      clock.advance(1);
      expect(wa.silenceResumed).toEqual([310]);
    });

    it('waits longer before the hand-over after late packets (a late packet is not the end of audio)', () => {
      const { clock, wa, sip } = bridged('opus');
      sip.deliver(OPUS_PT_PBX, 100, 5000, opusFromPbx(0));
      clock.advance(20);
      sip.deliver(OPUS_PT_PBX, 101, 5960, opusFromPbx(1));
      clock.advance(40); // packet 2 is 20 ms late: the hand-over now waits 250 + 20 ms
      sip.deliver(OPUS_PT_PBX, 102, 6920, opusFromPbx(2));
      clock.advance(269);
      expect(wa.silenceResumed).toEqual([]);
      clock.advance(1);
      expect(wa.silenceResumed).toEqual([330]);
    });
  });

  describe('SIP→WhatsApp transcoding on arrival (PBX on G.711)', () => {
    it.each(['PCMU', 'PCMA'] as const)(
      '%s: encodes each 20 ms the moment it arrives, timestamps step 960, and the tone survives',
      (law) => {
        const { clock, wa, sip, bridge } = bridged(law);
        const tone = new ToneGenerator(1000, -12, 8000);
        for (let n = 0; n < 25; n++) {
          sip.deliver(law === 'PCMU' ? 0 : 8, 100 + n, 8000 + n * 160, g711Tone(tone, law, 20));
          clock.advance(20);
        }
        expect(wa.audio.map((a) => a.at)).toEqual(Array.from({ length: 25 }, (_, n) => n * 20));
        expect(wa.audio.map((a) => a.delta)).toEqual([undefined, ...new Array(24).fill(960)]);
        expect(wa.audio.slice(1).map((a, i) => a.ts - (wa.audio[i]?.ts ?? 0))).toEqual(new Array(24).fill(960));
        expect(wa.audio[0]?.marker).toBe(true);
        expect(bridge.sipToWhatsappHold.counts[0]).toBe(25);
        // What Meta gets is the PBX's tone (the first frames are the encoder's start-up).
        const decoder = new Decoder({ channels: 1, sample_rate: 8000 });
        const pcm = wa.audio.slice(5).flatMap((a) => {
          const u8 = decoder.decode(a.payload);
          return [...new Int16Array(u8.buffer, u8.byteOffset, u8.byteLength >> 1)];
        });
        const m = measureTone(Int16Array.from(pcm), 8000);
        expect(Math.abs(m.hz - 1000)).toBeLessThan(10);
        expect(Math.abs(m.dbfs - -12)).toBeLessThan(3);
      },
    );

    it('passes a lost PBX packet on as a timestamp gap WhatsApp conceals, and counts it', () => {
      const { clock, wa, sip, bridge } = bridged('PCMU');
      const tone = new ToneGenerator(1000, -12, 8000);
      for (let n = 0; n < 6; n++) {
        const payload = g711Tone(tone, 'PCMU', 20);
        if (n !== 3) sip.deliver(0, 100 + n, 8000 + n * 160, payload);
        clock.advance(20);
      }
      expect(wa.audio.map((a) => [a.at, a.delta])).toEqual([
        [0, undefined],
        [20, 960],
        [40, 960],
        [80, 1920],
        [100, 960],
      ]);
      expect(wa.silenceResumed).toEqual([]); // no silence frame in the lost slot
      expect(bridge.stats().sipToWhatsapp.lost).toBe(1);
    });

    it.each([
      [30, [0, 30, 30, 60, 90, 90]],
      [10, [10, 30, 50, 70, 90, 110]],
    ])('re-frames a %i ms PBX into 20 ms Opus frames without a seam (frames at %j ms)', (ptimeMs, at) => {
      const { clock, wa, sip } = bridged('PCMU');
      const tone = new ToneGenerator(1000, -12, 8000);
      const samples = ptimeMs * 8;
      for (let n = 0; n * ptimeMs < 120; n++) {
        sip.deliver(0, 100 + n, 8000 + n * samples, g711Tone(tone, 'PCMU', ptimeMs));
        clock.advance(ptimeMs);
      }
      expect(wa.audio.map((a) => a.at)).toEqual(at);
      expect(wa.audio.slice(1).map((a) => a.delta)).toEqual(new Array(at.length - 1).fill(960));
    });
  });

  describe('WhatsApp→SIP', () => {
    it('passthrough: Meta’s Opus goes out on the PBX’s PT with Meta’s timestamp steps; a gap stays a gap, a late packet is dropped', () => {
      const { sip, wa, bridge } = bridged('opus');
      for (const n of [0, 1, 3, 2, 4]) wa.deliverAudio(500 + n, 96_000 + n * 960, Buffer.from([n]));
      expect(sip.sent.map((p) => [p.pt, p.payload[0], p.marker])).toEqual([
        [OPUS_PT_PBX, 0, true],
        [OPUS_PT_PBX, 1, false],
        [OPUS_PT_PBX, 3, false],
        [OPUS_PT_PBX, 4, false],
      ]);
      const steps = sip.sent.slice(1).map((p, i) => (p.ts - (sip.sent[i]?.ts ?? 0)) >>> 0);
      expect(steps).toEqual([960, 1920, 960]);
      // RFC 3550 A.3: packet 2 came late (dropped) but came: nothing is lost.
      expect(bridge.stats().whatsappToSip).toMatchObject({ packetsIn: 5, packetsOut: 4, lost: 0 });
      expect(sip.clockRate).toBe(48_000);
    });

    it('transcoding: each Opus frame becomes 160 bytes of G.711, timestamps step 160 (÷6), and the tone survives', () => {
      const { sip, wa } = bridged('PCMA');
      const encoder = new Encoder({ channels: 1, sample_rate: 48_000, application: 'voip' });
      const tone = new ToneGenerator(800, -12, 48_000);
      for (let n = 0; n < 25; n++) wa.deliverAudio(500 + n, 96_000 + n * 960, opusFromMeta(encoder, tone));
      expect(sip.sent).toHaveLength(25);
      expect(sip.sent.every((p) => p.pt === 8 && p.payload.length === 160)).toBe(true);
      expect(sip.sent.slice(1).map((p, i) => (p.ts - (sip.sent[i]?.ts ?? 0)) >>> 0)).toEqual(new Array(24).fill(160));
      const pcm = new Int16Array(20 * 160);
      for (const [i, p] of sip.sent.slice(5).entries()) g711Decode('PCMA', p.payload, pcm, i * 160);
      const m = measureTone(pcm, 8000);
      expect(Math.abs(m.hz - 800)).toBeLessThan(10);
      expect(Math.abs(m.dbfs - -12)).toBeLessThan(3);
    });
  });

  describe('DTMF relay (RFC 4733)', () => {
    it('WhatsApp→SIP: a digit goes out on the PBX’s PT at "now" on the SIP stream, marker on the start, the end three times', () => {
      const { clock, sip, wa, bridge } = bridged('PCMU');
      const digits: string[] = [];
      bridge.onDtmf((d) => digits.push(`${d.direction}:${d.digit}`));
      const encoder = new Encoder({ channels: 1, sample_rate: 48_000, application: 'voip' });
      const tone = new ToneGenerator(800, -12, 48_000);
      wa.deliverAudio(500, 96_000, opusFromMeta(encoder, tone));
      const audioTs = sip.sent[0]?.ts ?? 0;
      clock.advance(40); // two frames after the last audio packet
      const ev = { event: 5, volume: 10, timestamp: 97_920 };
      wa.deliverEvent({ ...ev, end: false, duration: 160, phase: 'start' });
      wa.deliverEvent({ ...ev, end: false, duration: 320, phase: 'update' });
      wa.deliverEvent({ ...ev, end: true, duration: 800, phase: 'end' });
      const events = sip.sent.slice(1);
      expect(events.map((p) => [p.pt, p.marker, (p.ts - audioTs) >>> 0, p.payload.readUInt16BE(2)])).toEqual([
        [DTMF_PT, true, 320, 160],
        [DTMF_PT, false, 320, 320],
        [DTMF_PT, false, 320, 800],
        [DTMF_PT, false, 320, 800],
        [DTMF_PT, false, 320, 800],
      ]);
      expect(events.slice(2).every((p) => (p.payload[1] ?? 0) & 0x80)).toBe(true); // E bit
      expect(digits).toEqual(['whatsapp-to-sip:5']);
      expect(bridge.stats().whatsappToSip.dtmfDigits).toBe(1);
    });

    it('WhatsApp→SIP: two digits that reach the bridge in one instant (a stalled loop) keep distinct timestamps, so the PBX hears both', () => {
      const { clock, sip, wa, bridge } = bridged('PCMU');
      const digits: string[] = [];
      bridge.onDtmf((d) => digits.push(d.digit));
      const encoder = new Encoder({ channels: 1, sample_rate: 48_000, application: 'voip' });
      wa.deliverAudio(500, 96_000, opusFromMeta(encoder, new ToneGenerator(800, -12, 48_000)));
      clock.advance(20);
      // Meta's packets of digit 1 (ended, 100 ms) and the start of digit 5 arrive back to back: the
      // clock has not moved, so "now" on the SIP stream is the same for both.
      const one = { event: 1, volume: 10, timestamp: 97_000 };
      wa.deliverEvent({ ...one, end: false, duration: 160, phase: 'start' });
      wa.deliverEvent({ ...one, end: true, duration: 800, phase: 'end' });
      const five = { event: 5, volume: 10, timestamp: 98_000 };
      wa.deliverEvent({ ...five, end: false, duration: 160, phase: 'start' });
      wa.deliverEvent({ ...five, end: true, duration: 800, phase: 'end' });
      const events = sip.sent.filter((p) => p.pt === DTMF_PT);
      const tsOne = events[0]?.ts ?? 0;
      const tsFive = events.find((p) => p.payload[0] === 5)?.ts ?? 0;
      // RFC 4733 §2.5.1.2: a new event gets a new timestamp; it starts after the previous one ended
      // (duration 800 at 8 kHz = 100 ms = 800 ticks of PCMU's clock).
      expect(((tsFive - tsOne) | 0) >= 800).toBe(true);
      // The PBX side's receiver (the same RFC 4733 logic) sees two digits.
      const receiver = new TelephoneEventReceiver();
      const heard = events
        .map((p) => [receiver.push(p.ts, parseTelephoneEvent(p.payload)!), p.payload[0]] as const)
        .filter(([phase]) => phase === 'end')
        .map(([, event]) => event);
      expect(heard).toEqual([1, 5]);
      expect(digits).toEqual(['1', '5']);
    });

    it('SIP→WhatsApp: each new event state reaches the leg once (retransmitted ends dropped), and the digit is reported', () => {
      const { sip, wa, bridge } = bridged('PCMU');
      const digits: string[] = [];
      bridge.onDtmf((d) => digits.push(`${d.direction}:${d.digit}`));
      const ev = { event: 11, volume: 10 }; // '#'
      sip.deliverEvent(DTMF_PT, 1, 8000, { ...ev, end: false, duration: 160 }, true);
      sip.deliverEvent(DTMF_PT, 2, 8000, { ...ev, end: false, duration: 320 });
      for (let i = 0; i < 3; i++) sip.deliverEvent(DTMF_PT, 3 + i, 8000, { ...ev, end: true, duration: 800 });
      expect(wa.events.map((e) => [e.ev.event, e.ev.end, e.ev.duration, e.isStart])).toEqual([
        [11, false, 160, true],
        [11, false, 320, false],
        [11, true, 800, false],
      ]);
      expect(digits).toEqual(['sip-to-whatsapp:#']);
      expect(bridge.stats().sipToWhatsapp).toMatchObject({ dtmfDigits: 1, packetsIn: 0 });
    });

    it('reports a digit from WhatsApp but relays nothing when the PBX negotiated no telephone-event, or holds', () => {
      const clock = new ManualClock();
      const wa = new FakeWhatsApp(clock);
      const sip = new FakeSip(clock);
      const { dtmfPayloadType: _, ...noDtmf } = sdp('PCMU');
      const bridge = new MediaBridge({ whatsapp: wa, rtp: sip, sip: noDtmf, clock });
      bridge.start();
      const digits: string[] = [];
      bridge.onDtmf((d) => digits.push(d.digit));
      wa.deliverEvent({ event: 1, volume: 10, end: true, duration: 800, phase: 'end', timestamp: 0 });
      bridge.updateSip(sdp('PCMU', { direction: 'sendonly', onHold: true }));
      wa.deliverEvent({ event: 2, volume: 10, end: true, duration: 800, phase: 'end', timestamp: 960 });
      expect(sip.sent).toEqual([]);
      expect(digits).toEqual(['1', '2']);
    });
  });

  describe('hold, updates, lifecycle', () => {
    it('on hold stops sending to the PBX but keeps WhatsApp fed; resume marks the first packet and timestamps continue', () => {
      const { clock, sip, wa, bridge } = bridged('opus');
      wa.deliverAudio(1, 960, Buffer.from([1]));
      bridge.updateSip(sdp('opus', { direction: 'sendonly', onHold: true }));
      expect(bridge.onHold).toBe(true);
      expect(wa.silenceStarted).toBe(2); // at start, and again for the hold
      wa.deliverAudio(2, 1920, Buffer.from([2]));
      sip.deliver(OPUS_PT_PBX, 100, 5000, opusFromPbx(0)); // music on hold still reaches WhatsApp
      expect(sip.sent).toHaveLength(1);
      expect(wa.audio).toHaveLength(1);
      clock.advance(20);
      bridge.updateSip(sdp('opus'));
      expect(bridge.onHold).toBe(false);
      wa.deliverAudio(3, 2880, Buffer.from([3]));
      expect(sip.sent.map((p) => [p.payload[0], p.marker])).toEqual([
        [1, true],
        [3, true],
      ]);
      expect(((sip.sent[1]?.ts ?? 0) - (sip.sent[0]?.ts ?? 0)) >>> 0).toBe(1920); // the held frame's time passed
    });

    it('keeps the SIP stream continuous from early media (183) into the answer (200 OK): one marker', () => {
      const { sip, wa, bridge } = bridged('PCMU');
      const encoder = new Encoder({ channels: 1, sample_rate: 48_000, application: 'voip' });
      const tone = new ToneGenerator(800, -12, 48_000);
      for (let n = 0; n < 3; n++) wa.deliverAudio(10 + n, n * 960, opusFromMeta(encoder, tone));
      bridge.updateSip(sdp('PCMU', { address: '192.0.2.20', port: 40002 }));
      for (let n = 3; n < 6; n++) wa.deliverAudio(10 + n, n * 960, opusFromMeta(encoder, tone));
      expect(sip.remote).toEqual({ address: '192.0.2.20', port: 40002 });
      expect(sip.sent.filter((p) => p.marker)).toHaveLength(1);
      expect(sip.sent.slice(1).map((p, i) => (p.ts - (sip.sent[i]?.ts ?? 0)) >>> 0)).toEqual([160, 160, 160, 160, 160]);
    });

    it('switches strategy when the answer changes the codec (Opus early media, PCMU answer)', () => {
      const { clock, sip, wa, bridge } = bridged('opus');
      sip.deliver(OPUS_PT_PBX, 100, 5000, opusFromPbx(0));
      bridge.updateSip(sdp('PCMU'));
      expect(bridge.mode).toBe('transcode');
      expect(sip.clockRate).toBe(8000);
      clock.advance(20);
      sip.deliver(OPUS_PT_PBX, 101, 5960, opusFromPbx(1)); // the old format: not bridged any more
      sip.deliver(0, 7, 800, g711Tone(new ToneGenerator(1000, -12, 8000), 'PCMU', 20));
      expect(wa.audio.map((a) => [a.at, a.marker])).toEqual([
        [0, true],
        [20, true],
      ]);
      expect(wa.audio[1]?.payload.length).toBeGreaterThan(1); // an encoded frame
    });

    it('counts frames sent before the WhatsApp leg is connected as dropped (clipping) and reads SIP jitter from the RTP session', () => {
      const { sip, wa, bridge } = bridged('opus');
      wa.connectionState = 'connecting';
      sip.deliver(OPUS_PT_PBX, 100, 5000, opusFromPbx(0));
      wa.connectionState = 'connected';
      sip.deliver(OPUS_PT_PBX, 101, 5960, opusFromPbx(1));
      sip.jitterMs = 12.5;
      expect(bridge.stats().sipToWhatsapp).toMatchObject({ packetsOut: 1, droppedBeforeConnect: 1, jitterMs: 12.5 });
    });

    it('close() clears every timer and unsubscribes; it is idempotent', async () => {
      const { clock, sip, wa, bridge } = bridged('opus');
      for (let n = 0; n < 4; n++) sip.deliver(OPUS_PT_PBX, 100 + n, 5000 + n * 960, opusFromPbx(n));
      expect(clock.pendingTimers).toBe(1); // the silence hand-over
      await Promise.all([bridge.close(), bridge.close()]);
      expect(clock.pendingTimers).toBe(0);
      expect(wa.listeners + sip.listeners).toBe(0);
      const sent = wa.audio.length;
      clock.advance(1000);
      expect(wa.audio).toHaveLength(sent);
      expect(wa.silenceResumed).toEqual([]);
      expect(() => bridge.start()).toThrow(MediaError);
    });

    it('refuses the removed de-jitter playout (jitterMs ≥ 20) with a named error', () => {
      const clock = new ManualClock();
      const make = (jitterMs: number) =>
        new MediaBridge({ whatsapp: new FakeWhatsApp(clock), rtp: new FakeSip(clock), sip: sdp('PCMU'), jitterMs });
      expect(() => make(20)).toThrow(expect.objectContaining({ code: 'invalid-argument' }));
      expect(() => make(0)).not.toThrow();
    });
  });
});
