/**
 * Issue 13's stall policy, SIP→WhatsApp, as stories on a manual clock: the bridge in front of the
 * REAL outbound stream of the WhatsApp leg (outbound-stream.ts: its timeline, silence and
 * RFC 4733 sender), whose packets to Meta are recorded as they would go on the wire. A stall of
 * the PBX (or the network) is a gap in what the test delivers; a stall of the bridge's own event
 * loop is `clock.block()`: time moves, no timer fires, then the overdue timers run late before
 * the packets that queued in the socket are read, as Node orders them.
 *
 * "Lead" is how far the last packet's place on Meta's timeline runs ahead of the clock
 * (`audioLeadMs(0)`): what Meta's jitter buffer would have to hold back.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '#core/clock.ts';
import { ToneGenerator } from '#simulator/media/audio.ts';
import { g711Encode } from '#worker/media/g711.ts';
import { MediaBridge } from '#worker/media/media-bridge.ts';
import type { WhatsAppMedia, WhatsAppTelephoneEvent } from '#worker/media/ports.ts';
import { createRtpView, parseRtp, parseTelephoneEvent, type TelephoneEvent } from '#worker/media/rtp.ts';
import type { SipCodecName, SipMediaDescription } from '#worker/media/sip-sdp.ts';
import { OutboundStream, opusSilenceFrame, WHATSAPP_TELEPHONE_EVENT_PT } from '#worker/webrtc/outbound-stream.ts';
import { FakeSip, FakeWhatsApp } from './fake-legs.ts';

const OPUS_PT_PBX = 107;
const DTMF_PT = 101;

/** One packet as Meta receives it. */
interface ToMeta {
  at: number;
  seq: number;
  ts: number;
  marker: boolean;
  kind: 'audio' | 'silence' | 'event';
  /** Audio: the PBX packet's number (payload[0]); events: the event code. */
  n: number;
}

/** The WhatsApp leg as the bridge sees it, on a real OutboundStream whose packets are recorded. */
class StreamLeg implements WhatsAppMedia {
  readonly connectionState = 'connected' as const;
  readonly toMeta: ToMeta[] = [];
  readonly out: OutboundStream;
  readonly #events = new Set<(ev: WhatsAppTelephoneEvent) => void>();

  constructor(clock: ManualClock) {
    const silence = opusSilenceFrame();
    const view = createRtpView();
    const link = {
      connected: true,
      fastPath: {
        send: (rtp: Uint8Array) => {
          parseRtp(rtp, view);
          const event = view.payloadType === WHATSAPP_TELEPHONE_EVENT_PT;
          const isSilence = !event && Buffer.from(view.payload).equals(silence);
          this.toMeta.push({
            at: clock.now(),
            seq: view.sequenceNumber,
            ts: view.timestamp,
            marker: view.marker,
            kind: event ? 'event' : isSilence ? 'silence' : 'audio',
            n: event ? (parseTelephoneEvent(view.payload)?.event ?? -1) : (view.payload[0] ?? -1),
          });
        },
      },
      transceiver: {
        sender: { ssrc: 1, sendRtp: async () => {} },
        dtlsTransport: { sendRtp: async () => 0 },
      },
    };
    this.out = new OutboundStream(link, { clock, initialSequenceNumber: 0, initialTimestamp: 0 });
  }

  onAudio(): () => void {
    return () => {};
  }
  onTelephoneEvent(cb: (ev: WhatsAppTelephoneEvent) => void): () => void {
    this.#events.add(cb);
    return () => this.#events.delete(cb);
  }
  sendAudio(payload: Uint8Array, options?: { timestampDelta?: number; marker?: boolean }): void {
    this.out.sendAudio(payload, options);
  }
  sendTelephoneEvent(ev: TelephoneEvent, isStart?: boolean): void {
    this.out.sendTelephoneEvent(ev, isStart);
  }
  startSilence(): void {
    this.out.startSilence();
  }
  resumeSilence(): void {
    this.out.resumeSilence();
  }
  audioLeadMs(timestampDelta: number, now: number): number {
    return this.out.audioLeadMs(timestampDelta, now);
  }
  /** Where the last packet sits on Meta's timeline against the clock (ms; negative: behind). */
  lead(): number {
    return this.out.audioLeadMs(0);
  }
  audio(): ToMeta[] {
    return this.toMeta.filter((p) => p.kind === 'audio');
  }
}

function sdp(codec: SipCodecName): SipMediaDescription {
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
  };
}

/** A call whose PBX answered `codec`, its media bridged from 0 ms (Meta's maiden silence frame sent). */
function call(codec: SipCodecName = 'opus') {
  const clock = new ManualClock();
  const wa = new StreamLeg(clock);
  const sip = new FakeSip(clock);
  const bridge = new MediaBridge({ whatsapp: wa, rtp: sip, sip: sdp(codec), clock, callId: 'stall' });
  bridge.start();
  clock.advance(0);
  const tone = new ToneGenerator(1000, -12, 8000);
  /** The PBX's packet number n (due at n × 20 ms), carrying n as its first payload byte (Opus). */
  const send = (n: number) => {
    if (codec === 'opus') {
      sip.deliver(OPUS_PT_PBX, 100 + n, 5000 + n * 960, Buffer.from([n, 0xaa]));
      return;
    }
    const pcm = tone.nextFrame(160);
    const g711 = Buffer.alloc(160);
    g711Encode(codec as 'PCMU' | 'PCMA', pcm, g711);
    sip.deliver(codec === 'PCMU' ? 0 : 8, 100 + n, 8000 + n * 160, g711);
  };
  /** The PBX sends packets `from`…`to` in real time, one every 20 ms. */
  const talk = (from: number, to: number) => {
    for (let n = from; n <= to; n++) {
      if (n > from) clock.advance(20);
      send(n);
    }
  };
  return { clock, wa, sip, bridge, send, talk };
}

/** Packets numbered `from`…`to`. */
const numbers = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('SIP→WhatsApp through stalls and bursts (issue 13)', () => {
  it('a 200 ms gap of the PBX then a burst: every packet forwarded at once with the PBX’s timing, the lead back under one frame within 100 ms', () => {
    const { clock, wa, bridge, send, talk } = call();
    talk(0, 49); // one second of speech, 0…980 ms
    clock.advance(220); // the PBX (or the network) stalls: packets 50–60 (1000…1200 ms) are held back
    for (let n = 50; n <= 60; n++) send(n); // … and flushed at 1200 ms
    const burstAt = clock.now();
    // The PBX carries on in real time.
    for (let i = 0; i < 5; i++) {
      clock.advance(20);
      send(61 + i);
      if (clock.now() - burstAt <= 100) expect(wa.lead()).toBeLessThanOrEqual(20);
    }
    // Every packet reached Meta, in order, none behind silence, none dropped.
    expect(wa.audio().map((p) => p.n)).toEqual(numbers(0, 65));
    expect(wa.toMeta.filter((p) => p.kind === 'silence')).toHaveLength(1); // the maiden packet only
    expect(bridge.stats().sipToWhatsapp).toMatchObject({ packetsIn: 66, packetsOut: 66, overflowDropped: 0, lost: 0 });
    // Meta's timestamps are the PBX's, one offset throughout: the stall is jitter for its buffer.
    const offsets = new Set(wa.audio().map((p) => (p.ts - p.n * 960) >>> 0));
    expect(offsets.size).toBe(1);
    expect(wa.lead()).toBeLessThanOrEqual(20);
  });

  it('a 200 ms stall of the bridge’s own loop: 0 packets lost, no silence in the slots of the packets queued in the socket', () => {
    const { clock, wa, bridge, send, talk } = call();
    talk(0, 49);
    clock.block(200); // GC or another call's DTLS handshake: the loop is blocked at 980 → 1180 ms
    clock.advance(0); // the overdue timers run first …
    for (let n = 50; n <= 59; n++) send(n); // … then the 10 packets that queued in the socket are read
    clock.advance(20);
    talk(60, 70);
    expect(wa.audio().map((p) => p.n)).toEqual(numbers(0, 70));
    expect(wa.toMeta.filter((p) => p.kind === 'silence')).toHaveLength(1);
    expect(bridge.stats().sipToWhatsapp).toMatchObject({ packetsOut: 71, overflowDropped: 0 });
    expect(wa.lead()).toBeLessThanOrEqual(20);
  });

  it('a 400 ms stall of the bridge’s own loop: the late hand-over timers wait one turn, the queued packets go first and keep their slots', () => {
    const { clock, wa, bridge, send, talk } = call();
    talk(0, 49);
    clock.block(400);
    clock.advance(0); // the hand-over timers (the bridge's, due at 1230 ms, and the leg's) fire late, at 1380 ms
    for (let n = 50; n <= 69; n++) send(n); // the 20 packets that queued meanwhile
    clock.advance(20); // the deferred timers ran a turn later: audio had come, nothing to hand over
    talk(70, 80);
    expect(wa.audio().map((p) => p.n)).toEqual(numbers(0, 80));
    expect(wa.toMeta.filter((p) => p.kind === 'silence')).toHaveLength(1);
    const offsets = new Set(wa.audio().map((p) => (p.ts - p.n * 960) >>> 0));
    expect(offsets.size).toBe(1);
    expect(bridge.stats().sipToWhatsapp).toMatchObject({ packetsOut: 81, overflowDropped: 0 });
    expect(wa.lead()).toBeLessThanOrEqual(20);
  });

  it('a pause long enough for silence, then a burst: silence at real time, the burst at once after a marked jump, its lead drained at the next pause', () => {
    const { clock, wa, bridge, send, talk } = call();
    talk(0, 9); // 0…180 ms
    clock.advance(500); // 680 ms: the PBX was silent (DTX) or stalled for long
    const silence = wa.toMeta.filter((p) => p.kind === 'silence');
    expect(silence.length).toBeGreaterThan(1);
    // The hand-over came 250 ms after the last packet, on the leg's 20 ms grid, stamped at real time.
    const first = silence[1] as ToMeta;
    expect(first.at).toBeGreaterThanOrEqual(180 + 250);
    expect(first.marker).toBe(true);
    // The last audio frame stood for 200 ms, the silence for 420 ms: real time in whole frames.
    const lastAudio = wa.audio().at(-1) as ToMeta;
    expect(first.at).toBe(430);
    expect((first.ts - lastAudio.ts) >>> 0).toBe(11 * 960);
    // 20 packets (200 ms) arrive at once, their first a talkspurt start after the silence.
    for (let n = 35; n <= 54; n++) send(n);
    const burst = wa.audio().slice(-20);
    expect(burst.map((p) => p.n)).toEqual(numbers(35, 54));
    expect(burst.every((p) => p.at === 680)).toBe(true);
    const lastSilence = wa.toMeta.filter((p) => p.kind === 'silence').at(-1) as ToMeta;
    expect(burst[0]).toMatchObject({ marker: true, ts: (lastSilence.ts + 960) >>> 0 });
    expect(bridge.stats().sipToWhatsapp.overflowDropped).toBe(0);
    // The burst runs ahead of real time; the PBX continues in real time, then pauses (DTX) and
    // starts a new talkspurt: the pause absorbs the lead.
    expect(wa.lead()).toBeGreaterThan(100);
    talk(55, 60);
    expect(wa.toMeta.filter((p) => p.kind === 'silence')).toHaveLength(silence.length); // the lead is played first
    clock.advance(400); // a 400 ms pause (longer than the lead): the next talkspurt starts at packet 80
    send(80);
    expect(wa.toMeta.filter((p) => p.kind === 'silence')).toHaveLength(silence.length); // still no silence needed
    expect(wa.lead()).toBeLessThanOrEqual(20);
    expect(wa.audio().map((p) => p.n)).toEqual([...numbers(0, 9), ...numbers(35, 60), 80]);
    expect(bridge.stats().sipToWhatsapp).toMatchObject({ overflowDropped: 0, packetsOut: 37 });
  });

  it('transcoding (PCMU): a 200 ms gap then a burst, every frame forwarded, the lead back under one frame', () => {
    const { clock, wa, bridge, send, talk } = call('PCMU');
    talk(0, 49);
    clock.advance(220);
    for (let n = 50; n <= 60; n++) send(n);
    clock.advance(20);
    send(61);
    expect(wa.audio()).toHaveLength(62);
    expect(wa.toMeta.filter((p) => p.kind === 'silence')).toHaveLength(1);
    expect(bridge.stats().sipToWhatsapp).toMatchObject({ packetsOut: 62, overflowDropped: 0 });
    const ts = wa.audio().map((p) => p.ts);
    expect(ts.slice(1).map((t, i) => (t - (ts[i] as number)) >>> 0)).toEqual(new Array(61).fill(960));
    expect(wa.lead()).toBeLessThanOrEqual(20);
  });

  it('a digit from the PBX after a stall shares the timeline: after every packet already sent, no audio or silence on its timestamp', () => {
    const { clock, wa, sip, send, talk } = call();
    talk(0, 9);
    clock.advance(500); // silence takes over
    for (let n = 35; n <= 44; n++) send(n); // a burst: the timeline leads
    // A digit, start to end (the end three times), while the burst's lead is still unplayed.
    const ev = (end: boolean, duration: number) => ({ event: 5, end, volume: 10, duration });
    sip.deliverEvent(DTMF_PT, 145, 777_000, ev(false, 160), true);
    clock.advance(20);
    sip.deliverEvent(DTMF_PT, 146, 777_000, ev(false, 320));
    clock.advance(20);
    for (let i = 0; i < 3; i++) sip.deliverEvent(DTMF_PT, 147 + i, 777_000, ev(true, 480));
    clock.advance(20);
    talk(50, 70);
    const events = wa.toMeta.filter((p) => p.kind === 'event');
    expect(events.length).toBeGreaterThan(0);
    const eventTs = events[0]?.ts as number;
    const before = wa.toMeta.slice(0, wa.toMeta.indexOf(events[0] as ToMeta));
    expect(before.every((p) => ((eventTs - p.ts) | 0) > 0)).toBe(true);
    expect(wa.toMeta.filter((p) => p.kind !== 'event' && p.ts === eventTs)).toEqual([]);
    // Audio is never dropped for the digit's sake: every packet after it reached Meta.
    expect(wa.audio().map((p) => p.n)).toEqual([...numbers(0, 9), ...numbers(35, 44), ...numbers(50, 70)]);
  });
});

describe('Loss on the call record is RFC 3550’s: telephone-events are packets of the source', () => {
  const digit = (event: number) => [
    { event, end: false, volume: 10, duration: 160, phase: 'start' as const },
    { event, end: false, volume: 10, duration: 320, phase: 'update' as const },
    { event, end: false, volume: 10, duration: 480, phase: 'update' as const },
    { event, end: false, volume: 10, duration: 640, phase: 'update' as const },
    { event, end: true, volume: 10, duration: 800, phase: 'end' as const },
    { event, end: true, volume: 10, duration: 800, phase: 'repeat' as const },
    { event, end: true, volume: 10, duration: 800, phase: 'repeat' as const },
  ];

  it('five digits from WhatsApp (start, updates, the end three times: 7 packets each) add nothing to whatsappToSip.lost', () => {
    const clock = new ManualClock();
    const wa = new FakeWhatsApp(clock);
    const sip = new FakeSip(clock);
    const bridge = new MediaBridge({ whatsapp: wa, rtp: sip, sip: sdp('opus'), clock });
    bridge.start();
    let seq = 1000;
    let ts = 90_000;
    for (let d = 0; d < 5; d++) {
      for (let i = 0; i < 10; i++) {
        ts += 960;
        wa.deliverAudio(seq++, ts, Buffer.from([0x78, i]));
      }
      for (const ev of digit(d)) wa.deliverEvent({ ...ev, timestamp: ts, sequenceNumber: seq++ });
    }
    ts += 960 * 8;
    wa.deliverAudio(seq++, ts, Buffer.from([0x78, 0]));
    const s = bridge.stats().whatsappToSip;
    expect(s).toMatchObject({ packetsIn: 51, lost: 0, dtmfDigits: 5 });
    // A real loss still counts: one audio packet missing.
    seq++;
    ts += 1920;
    wa.deliverAudio(seq++, ts, Buffer.from([0x78, 0]));
    expect(bridge.stats().whatsappToSip.lost).toBe(1);
  });

  it('five digits from the PBX (in its sequence space) add nothing to sipToWhatsapp.lost', () => {
    const clock = new ManualClock();
    const wa = new FakeWhatsApp(clock);
    const sip = new FakeSip(clock);
    const bridge = new MediaBridge({ whatsapp: wa, rtp: sip, sip: sdp('opus'), clock });
    bridge.start();
    let seq = 100;
    let ts = 5000;
    for (let d = 0; d < 5; d++) {
      for (let i = 0; i < 10; i++) {
        ts += 960;
        sip.deliver(OPUS_PT_PBX, seq++, ts, Buffer.from([i]));
      }
      for (const ev of digit(d)) sip.deliverEvent(DTMF_PT, seq++, ts, ev, ev.phase === 'start');
    }
    ts += 960 * 8;
    sip.deliver(OPUS_PT_PBX, seq++, ts, Buffer.from([0]));
    expect(bridge.stats().sipToWhatsapp).toMatchObject({ packetsIn: 51, lost: 0, dtmfDigits: 5 });
  });
});
