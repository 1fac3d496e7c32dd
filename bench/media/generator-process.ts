/**
 * The load generator of bench/media-bridge.ts, in its own process (issue 13 item 4) so that the
 * orchestrator can pin it to a core of its own (`taskset`), apart from the process under test.
 * It holds both ends of every call and counts what arrives:
 *  - bridge calls: a Meta relay (RelayPeer: real werift ICE-lite/DTLS-SRTP, pre-encoded Opus)
 *    and a PBX RTP peer (raw dgram), the bridge (bench/media/bridge-process.ts) between them;
 *  - rtpengine calls: a plain RTP/AVP Opus peer standing for the WhatsApp side and the same PBX
 *    RTP peer, rtpengine between them (plain RTP on both legs: the anchor issue 13 uses).
 * Call setup needs the other side's SDP: the generator asks the orchestrator (`ask`), which
 * talks to the bridge process (IPC) or to rtpengine (ng protocol) and answers.
 *
 * `BENCH_BURSTY=1` (`--bursty`): every PBX peer — of bridge and rtpengine calls alike — sends in
 * 40–120 ms clumps and stalls 100–200 ms every 3–5 s.
 *
 * Requests in (each with `rid`, answered by a message with the same `rid`):
 *   {type:'add', target, mode, n}          → {failures}           (calls of `target` up to n)
 *   {type:'probe', target, mode, count}    → {}                   (onset latency on the first `count` calls)
 *   {type:'decode', target}                → {}                   (every call decodes what it gets)
 *   {type:'measure-start', target}         → {}
 *   {type:'measure-end', target}           → {counts, latency, generator CPU and lag}
 *   {type:'close', target}                 → {ids}                (ids of the closed calls)
 *   {type:'nice', value}                   → {nice}
 *   {type:'exit'}
 * Questions out: {type:'ask', qid, what:'bridge-setup', id, offer, sipSdp}
 *              | {type:'ask', qid, what:'rtpengine-setup', id, mode, waSdp, pbxSdp}
 *   answered by {type:'answer', qid, ok, error?, ...}.
 */
import { createSocket, type Socket } from 'node:dgram';
import os from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Decoder, Encoder } from '@evan/opus';
import alawmulaw from 'alawmulaw';
import type { RtpPacket } from 'werift';
import { rmsDbfs, ToneGenerator } from '#simulator/media/audio.ts';
import { RelayPeer } from '#simulator/media/relay-peer.ts';
import { round, summaryMs } from '../lib/common.ts';

/** Which kind of call: through the bridge, or through rtpengine. */
export type Target = 'bridge' | 'rtpengine';
/** passthrough = SIP side Opus, transcode = SIP side PCMU. */
export type Mode = 'passthrough' | 'transcode';

const BURSTY = process.env.BENCH_BURSTY === '1';
const CONFIG = { audibleDbfs: -40, setupParallel: 10 };

// ---------------------------------------------------------------- pre-encoded media

/**
 * One talk-spurt cycle, encoded as one continuous stream (so every decoder downstream sees a
 * consistent stream): CYCLE_SILENT frames of digital silence, then CYCLE_TONE frames of a 1 kHz
 * tone at -12 dBFS. Every sender loops over it; the first tone frame is the "onset" whose
 * one-way latency is measured.
 */
const CYCLE_SILENT = 10;
const CYCLE_TONE = 10;
function encodeCycle(rate: 8000 | 48_000, codec: 'opus' | 'PCMU'): Buffer[] {
  const gen = new ToneGenerator(1000, -12, rate);
  const enc = codec === 'opus' ? new Encoder({ channels: 1, sample_rate: rate, application: 'voip' }) : undefined;
  if (enc) enc.bitrate = 32_000;
  const frames = (cycles: number) => {
    const out: Buffer[] = [];
    for (let i = 0; i < cycles * (CYCLE_SILENT + CYCLE_TONE); i++) {
      const pcm = i % (CYCLE_SILENT + CYCLE_TONE) < CYCLE_SILENT ? new Int16Array(rate / 50) : gen.nextFrame(rate / 50);
      out.push(enc ? Buffer.from(enc.encode(pcm)) : Buffer.from(alawmulaw.mulaw.encode(pcm)));
    }
    return out;
  };
  // Warm the encoder up over a few cycles, keep the last one.
  return frames(4).slice(-(CYCLE_SILENT + CYCLE_TONE));
}
const OPUS_CYCLE = encodeCycle(48_000, 'opus');
const PCMU_CYCLE = encodeCycle(8000, 'PCMU');
const ONSET_OPUS = OPUS_CYCLE[CYCLE_SILENT] as Buffer;
/**
 * Transcoding WhatsApp → SIP: the first cycle frame that decodes (at 8 kHz, as the bridge
 * decodes) to an audible frame. Opus look-ahead of the *generator's* encoder can push the
 * onset into the next frame; starting the clock at this frame keeps that delay, which is not
 * the bridge's, out of the figure.
 */
const OPUS_AUDIBLE_IDX = (() => {
  const dec = new Decoder({ channels: 1, sample_rate: 8000 });
  for (const f of OPUS_CYCLE) dec.decode(f); // warm up on one whole cycle
  for (let i = 0; i < OPUS_CYCLE.length; i++) {
    const u8 = dec.decode(OPUS_CYCLE[i] as Buffer);
    if (i >= CYCLE_SILENT && rmsDbfs(new Int16Array(u8.buffer, u8.byteOffset, u8.byteLength >> 1)) > CONFIG.audibleDbfs)
      return i;
  }
  return CYCLE_SILENT;
})();

// ---------------------------------------------------------------- loss accounting

/** Counts received vs expected packets from RTP sequence numbers (RFC 3550 A.3). */
class SeqTracker {
  private base = -1;
  private maxExt = -1;
  private lastExt = -1;
  received = 0;
  push(seq: number): void {
    if (this.lastExt < 0) {
      this.base = this.maxExt = this.lastExt = seq;
      this.received = 1;
      return;
    }
    let d = (seq - (this.lastExt & 0xffff)) & 0xffff;
    if (d >= 0x8000) d -= 0x10000;
    const ext = this.lastExt + d;
    if (ext > this.maxExt) this.maxExt = ext;
    this.lastExt = ext;
    this.received++;
  }
  reset(): void {
    this.base = this.maxExt = this.lastExt = -1;
    this.received = 0;
  }
  get expected(): number {
    return this.base < 0 ? 0 : this.maxExt - this.base + 1;
  }
}

/** Onset bookkeeping of one direction of one call. */
class Onsets {
  enabled = false;
  sentAt: number | undefined;
  /** Cycle index whose send time is the onset (see OPUS_AUDIBLE_IDX). */
  onsetIdx = CYCLE_SILENT;
  readonly samples: number[] = [];
  /** The sender is at frame `idx` of the cycle. */
  sending(idx: number): void {
    if (!this.enabled) return;
    if (idx === this.onsetIdx) this.sentAt = performance.now();
    else if (idx === 0) this.sentAt = undefined; // an onset not heard within the tone is a miss
  }
  /** Passthrough: the onset packet is recognised by its bytes (the bridge does not touch the payload). */
  heardPayload(payload: Uint8Array): void {
    if (this.sentAt !== undefined && ONSET_OPUS.equals(payload)) {
      this.samples.push(performance.now() - this.sentAt);
      this.sentAt = undefined;
    }
  }
  heard(audible: boolean): void {
    if (this.sentAt !== undefined && audible) {
      this.samples.push(performance.now() - this.sentAt);
      this.sentAt = undefined;
    }
  }
}

// ---------------------------------------------------------------- PBX side peer

/** A raw UDP RTP peer standing for the PBX: pre-encoded frames every 20 ms, counts what it gets. */
class PbxPeer {
  readonly rx = new SeqTracker();
  readonly onsets = new Onsets();
  /** Onsets of the opposite sender (the Meta side), resolved by what this peer receives. */
  remoteOnsets: Onsets | undefined;
  decodeAudio = false;
  /** An Opus peer whose incoming audio was transcoded (rtpengine): onsets are heard by decoding, not by bytes. */
  transcodedIn = false;
  /** Sender stalls made so far (`--bursty`). */
  stalls = 0;
  private decoder: Decoder | undefined;
  private timer: NodeJS.Timeout | undefined;
  private seq = Math.floor(Math.random() * 0x10000);
  private ts = Math.floor(Math.random() * 0x1_0000_0000) >>> 0;
  private idx = 0;
  private constructor(
    private readonly socket: Socket,
    readonly codec: 'opus' | 'PCMU',
    private readonly bursty: boolean,
  ) {
    socket.on('message', (msg) => this.onMessage(msg));
  }

  /** A peer on a fresh loopback socket; `bursty`: sends in clumps with stalls (`--bursty`). */
  static async open(codec: 'opus' | 'PCMU', bursty: boolean): Promise<PbxPeer> {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    return new PbxPeer(s, codec, bursty);
  }

  get port(): number {
    return this.socket.address().port;
  }

  answerSdp(): string {
    const fmt =
      this.codec === 'opus' ? ['a=rtpmap:111 opus/48000/2', 'a=fmtp:111 useinbandfec=1'] : ['a=rtpmap:0 PCMU/8000'];
    return [
      'v=0',
      'o=- 1 1 IN IP4 127.0.0.1',
      's=bench-pbx',
      'c=IN IP4 127.0.0.1',
      't=0 0',
      `m=audio ${this.port} RTP/AVP ${this.codec === 'opus' ? 111 : 0} 101`,
      ...fmt,
      'a=rtpmap:101 telephone-event/8000',
      'a=fmtp:101 0-16',
      'a=ptime:20',
      'a=sendrecv',
      '',
    ].join('\r\n');
  }

  start(port: number): void {
    const pt = this.codec === 'opus' ? 111 : 0;
    const cycle = this.codec === 'opus' ? OPUS_CYCLE : PCMU_CYCLE;
    const tick = this.codec === 'opus' ? 960 : 160;
    // A PBX sends on a sample clock: frames due since the start, checked every 10 ms, so the
    // stream does not drift the way a bare 20 ms setInterval does.
    const startAt = performance.now();
    let sent = 0;
    const sendOne = () => {
      const i = this.idx++ % cycle.length;
      this.onsets.sending(i);
      const payload = cycle[i] as Buffer;
      // A fresh header per packet: dgram.send is asynchronous and keeps a reference.
      const h = Buffer.allocUnsafe(12);
      h[0] = 0x80;
      h[1] = pt;
      h.writeUInt16BE(this.seq, 2);
      h.writeUInt32BE(this.ts, 4);
      h.writeUInt32BE(0x1234abcd, 8);
      this.seq = (this.seq + 1) & 0xffff;
      this.ts = (this.ts + tick) >>> 0;
      this.socket.send([h, payload], port, '127.0.0.1');
    };
    sendOne();
    sent = 1;
    // --bursty: packets are held until the next release (clumps of 40–120 ms, a 100–200 ms
    // stall every 3–5 s), then all those due go at once.
    const between = (lo: number, hi: number) => lo + Math.random() * (hi - lo);
    let releaseAt = 0;
    let stallAt = startAt + between(3000, 5000);
    this.timer = setInterval(() => {
      const now = performance.now();
      if (this.bursty) {
        if (now < releaseAt) return;
        if (now >= stallAt) {
          this.stalls++;
          stallAt = now + between(3000, 5000);
          releaseAt = now + between(100, 200);
          return;
        }
        releaseAt = now + between(40, 120);
      }
      const due = Math.floor((now - startAt) / 20) + 1;
      if (due - sent > 25) sent = due - 1; // stalled > 0.5 s: skip ahead rather than burst
      while (sent < due) {
        sendOne();
        sent++;
      }
    }, 10);
  }

  close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    return new Promise((r) => this.socket.close(() => r()));
  }

  private onMessage(msg: Buffer): void {
    if (msg.length < 12 || msg[0]! >> 6 !== 2) return;
    // The bridge's RTCP goes to RTP port + 1 (RFC 3550 §11), which on this
    // machine is often another peer's RTP socket: not RTP (RFC 5761 §4).
    if (msg[1]! >= 192 && msg[1]! <= 223) return;
    const pt = msg[1]! & 0x7f;
    if (pt === 101) return;
    this.rx.push(msg.readUInt16BE(2));
    if (!this.decodeAudio) return;
    const payload = msg.subarray(12 + (msg[0]! & 0x0f) * 4);
    // The onset was sent by the Meta side; its Onsets object is linked here.
    if (this.codec === 'opus' && this.transcodedIn) {
      if (!this.remoteOnsets) return;
      this.decoder ??= new Decoder({ channels: 1, sample_rate: 48_000 });
      const u8 = this.decoder.decode(payload);
      this.remoteOnsets.heard(
        rmsDbfs(new Int16Array(u8.buffer, u8.byteOffset, u8.byteLength >> 1)) > CONFIG.audibleDbfs,
      );
    } else if (this.codec === 'opus') this.remoteOnsets?.heardPayload(payload);
    else this.remoteOnsets?.heard(rmsDbfs(alawmulaw.mulaw.decode(payload)) > CONFIG.audibleDbfs);
  }
}

// ---------------------------------------------------------------- Meta side relay

/** The Meta side of one call: a RelayPeer with a table encoder and a counting receiver. */
class MetaSide {
  readonly relay = new RelayPeer();
  readonly rx = new SeqTracker();
  readonly onsets = new Onsets();
  /** Onsets of the opposite sender (the PBX peer), resolved by what the relay receives. */
  remoteOnsets: Onsets | undefined;
  passthrough = false;
  decodeAudio = false;
  private idx = 0;
  private decoder: Decoder | undefined;

  constructor() {
    // Reaching into the simulator's relay (bench only): replace its per-frame libopus encode with
    // pre-encoded frames and its decode-everything receiver with a counter, so that hundreds of
    // relays fit on the generator's share of the CPU.
    const r = this.relay as unknown as {
      encoder: { encode(pcm: Int16Array): Uint8Array };
      onBusinessRtp(rtp: RtpPacket): void;
      firstMediaAt: number | undefined;
      startClock(): void;
    };
    r.encoder = {
      encode: () => {
        const i = this.idx++ % OPUS_CYCLE.length;
        this.onsets.sending(i);
        return OPUS_CYCLE[i] as Buffer;
      },
    };
    r.onBusinessRtp = (rtp: RtpPacket) => {
      if (r.firstMediaAt === undefined) {
        r.firstMediaAt = Date.now();
        r.startClock(); // Meta's maiden-packet rule, as the original does
      }
      if (rtp.header.payloadType !== 111) return;
      this.rx.push(rtp.header.sequenceNumber);
      if (!this.decodeAudio || !this.remoteOnsets) return;
      if (this.passthrough) {
        this.remoteOnsets.heardPayload(rtp.payload);
        return;
      }
      this.decoder ??= new Decoder({ channels: 1, sample_rate: 48_000 });
      const u8 = this.decoder.decode(rtp.payload);
      this.remoteOnsets.heard(
        rmsDbfs(new Int16Array(u8.buffer, u8.byteOffset, u8.byteLength >> 1)) > CONFIG.audibleDbfs,
      );
    };
  }

  close(): Promise<void> {
    return this.relay.close();
  }
}

// ---------------------------------------------------------------- calls

/** The WhatsApp-side end of a call, whichever kind. */
interface WaSide {
  readonly rx: SeqTracker;
  readonly onsets: Onsets;
  remoteOnsets: Onsets | undefined;
  decodeAudio: boolean;
  close(): Promise<void>;
}

interface GenCall {
  id: string;
  wa: WaSide;
  pbx: PbxPeer;
}

const calls: Record<Target, GenCall[]> = { bridge: [], rtpengine: [] };
const questions = new Map<number, (m: Record<string, unknown>) => void>();
let qidSeq = 0;
let callSeq = 0;

function send(msg: Record<string, unknown>): void {
  process.send?.(msg);
}

/** Asks the orchestrator (it holds the bridge's IPC and rtpengine's ng socket). */
function ask(msg: Record<string, unknown>, timeoutMs = 20_000): Promise<Record<string, unknown>> {
  const qid = ++qidSeq;
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      questions.delete(qid);
      reject(new Error(`no answer to ${String(msg.what)} ${String(msg.id)}`));
    }, timeoutMs);
    questions.set(qid, (m) => {
      clearTimeout(t);
      if (m.ok) resolve(m);
      else reject(new Error(String(m.error)));
    });
    send({ ...msg, type: 'ask', qid });
  });
}

async function addBridgeCall(mode: Mode): Promise<GenCall> {
  const id = `bench-${++callSeq}`;
  const meta = new MetaSide();
  meta.passthrough = mode === 'passthrough';
  const pbx = await PbxPeer.open(mode === 'passthrough' ? 'opus' : 'PCMU', BURSTY);
  try {
    const offer = await meta.relay.createOffer();
    const res = await ask({ what: 'bridge-setup', id, offer, sipSdp: pbx.answerSdp() });
    if (res.mode !== mode) throw new Error(`bridge mode ${String(res.mode)}, expected ${mode}`);
    await meta.relay.acceptAnswer(res.answer as string);
    await meta.relay.waitForConnected(10_000);
    pbx.start(res.rtpPort as number);
  } catch (err) {
    await Promise.allSettled([meta.close(), pbx.close()]);
    throw err;
  }
  return { id, wa: meta, pbx };
}

async function addRtpengineCall(mode: Mode): Promise<GenCall> {
  const id = `bench-rtpe-${++callSeq}`;
  // The WhatsApp-side stand-in: plain RTP/AVP Opus, sending from the start, never bursty.
  const wa = await PbxPeer.open('opus', false);
  wa.transcodedIn = mode === 'transcode';
  const pbx = await PbxPeer.open(mode === 'passthrough' ? 'opus' : 'PCMU', BURSTY);
  try {
    const res = await ask({ what: 'rtpengine-setup', id, mode, waSdp: wa.answerSdp(), pbxSdp: pbx.answerSdp() });
    wa.start(res.waSendsTo as number);
    pbx.start(res.pbxSendsTo as number);
  } catch (err) {
    await Promise.allSettled([wa.close(), pbx.close()]);
    throw err;
  }
  return { id, wa, pbx };
}

async function addCalls(target: Target, mode: Mode, n: number): Promise<number> {
  const list = calls[target];
  let failures = 0;
  while (list.length < n) {
    const batch = Math.min(CONFIG.setupParallel, n - list.length);
    const settled = await Promise.allSettled(
      Array.from({ length: batch }, () => (target === 'bridge' ? addBridgeCall(mode) : addRtpengineCall(mode))),
    );
    for (const s of settled) {
      if (s.status === 'fulfilled') list.push(s.value);
      else {
        failures++;
        process.stderr.write(`[generator] ${target} call setup failed: ${String(s.reason)}\n`);
        if (failures > 10) throw new Error(`too many ${target} call setup failures`);
      }
    }
  }
  return failures;
}

/** Turns on onset measurement for a call (both directions). */
function probe(c: GenCall, mode: Mode): void {
  c.wa.remoteOnsets = c.pbx.onsets;
  c.pbx.remoteOnsets = c.wa.onsets;
  if (mode === 'transcode') c.wa.onsets.onsetIdx = OPUS_AUDIBLE_IDX;
  c.wa.decodeAudio = true;
  c.pbx.decodeAudio = true;
  c.wa.onsets.enabled = true;
  c.pbx.onsets.enabled = true;
}

const lag = monitorEventLoopDelay({ resolution: 10 });
lag.enable();
let window: { cpu: NodeJS.CpuUsage; at: number; stalls: number } | undefined;

async function handle(m: Record<string, unknown>): Promise<Record<string, unknown>> {
  const target = m.target as Target;
  const mode = m.mode as Mode;
  switch (m.type) {
    case 'add':
      return { failures: await addCalls(target, mode, m.n as number) };
    case 'decode':
      for (const c of calls[target]) {
        c.wa.decodeAudio = true;
        c.pbx.decodeAudio = true;
      }
      return {};
    case 'probe':
      for (const c of calls[target].slice(0, m.count as number)) probe(c, mode);
      return {};
    case 'measure-start':
      for (const c of calls[target]) {
        c.wa.rx.reset();
        c.pbx.rx.reset();
        c.wa.onsets.samples.length = 0;
        c.pbx.onsets.samples.length = 0;
      }
      lag.reset();
      window = {
        cpu: process.cpuUsage(),
        at: performance.now(),
        stalls: calls[target].reduce((a, c) => a + c.pbx.stalls, 0),
      };
      return {};
    case 'measure-end': {
      const w = window!;
      const cpu = process.cpuUsage(w.cpu);
      const list = calls[target];
      const t = { waExp: 0, waRx: 0, sipExp: 0, sipRx: 0 };
      for (const c of list) {
        t.waExp += c.pbx.rx.expected; // WhatsApp → SIP arrives at the PBX peer
        t.waRx += c.pbx.rx.received;
        t.sipExp += c.wa.rx.expected; // SIP → WhatsApp arrives at the WhatsApp side
        t.sipRx += c.wa.rx.received;
      }
      const probed = list.filter((c) => c.wa.onsets.enabled);
      return {
        ...t,
        latency: {
          probeCalls: probed.length,
          whatsappToSip: summaryMs(probed.flatMap((c) => c.wa.onsets.samples)),
          sipToWhatsapp: summaryMs(probed.flatMap((c) => c.pbx.onsets.samples)),
        },
        senderStalls: list.reduce((a, c) => a + c.pbx.stalls, 0) - w.stalls,
        cpuCoreFraction: (cpu.user + cpu.system) / 1000 / (performance.now() - w.at),
        lagP99Ms: round(Math.max(0, lag.percentile(99) / 1e6 - 10)),
      };
    }
    case 'close': {
      const list = calls[target].splice(0);
      for (const c of list) await Promise.allSettled([c.wa.close(), c.pbx.close()]);
      return { ids: list.map((c) => c.id) };
    }
    case 'nice':
      try {
        os.setPriority(m.value as number);
        return { nice: os.getPriority() };
      } catch (err) {
        return { nice: `unchanged: ${(err as Error).message}` };
      }
    default:
      throw new Error(`unknown request ${String(m.type)}`);
  }
}

process.on('message', (raw: unknown) => {
  const m = raw as Record<string, unknown>;
  if (m.type === 'answer') {
    const w = questions.get(m.qid as number);
    questions.delete(m.qid as number);
    w?.(m);
    return;
  }
  if (m.type === 'exit') process.exit(0);
  handle(m).then(
    (res) => send({ ...res, rid: m.rid, ok: true }),
    (err: unknown) => send({ rid: m.rid, ok: false, error: err instanceof Error ? err.message : String(err) }),
  );
});

// The orchestrator is gone (crash, Ctrl-C): do not outlive it.
process.on('disconnect', () => process.exit(0));

send({
  type: 'ready',
  opusPayloadBytesMean: round(OPUS_CYCLE.reduce((a, b) => a + b.length, 0) / OPUS_CYCLE.length, 1),
  /** Transcoding: frames between the tone's first frame and its first audible one (see OPUS_AUDIBLE_IDX). */
  transcodeOnsetFrame: OPUS_AUDIBLE_IDX - CYCLE_SILENT,
  audio: `${CYCLE_SILENT * 20} ms silence / ${CYCLE_TONE * 20} ms 1 kHz tone, looped, every call both ways`,
});
