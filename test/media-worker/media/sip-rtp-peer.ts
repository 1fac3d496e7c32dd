/**
 * A raw dgram RTP peer standing in for the PBX's media endpoint in tests.
 *
 * It deliberately shares no code with the bridge: RTP and RFC 4733 are
 * built and parsed here by hand so bridge bugs cannot cancel out.
 */
import { createSocket, type Socket } from 'node:dgram';
import { Decoder, Encoder } from '@evan/opus';
import alawmulaw from 'alawmulaw';
import { PcmRecorder, ToneGenerator } from '#simulator/media/audio.ts';

/** Codec the peer speaks. */
export type PeerCodec = 'PCMU' | 'PCMA' | 'opus';

/** One received RTP packet. */
export interface PeerPacket {
  at: number;
  pt: number;
  seq: number;
  ts: number;
  ssrc: number;
  marker: boolean;
  payload: Buffer;
}

const DTMF = '0123456789*#ABCD';

/** The PBX side of the test call. */
export class SipRtpPeer {
  readonly codec: PeerCodec;
  readonly pt: number;
  readonly clockRate: number;
  readonly dtmfPt = 101;
  /** All packets received. */
  readonly received: PeerPacket[] = [];
  /** Digits from ended RFC 4733 events. */
  digits = '';
  /** Every telephone-event packet received (parsed). */
  readonly events: { ts: number; seq: number; event: number; end: boolean; duration: number; at: number }[] = [];
  private readonly socket: Socket;
  private target: { address: string; port: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private gen: ToneGenerator | undefined;
  private seq = 30_000;
  private ts = 1_000_000;
  private readonly ssrc = 0x1234abcd;
  private readonly encoder: Encoder | undefined;
  private readonly decoder: Decoder | undefined;
  private recorder: PcmRecorder | undefined;
  private readonly endedTs = new Set<number>();

  private constructor(socket: Socket, codec: PeerCodec) {
    this.socket = socket;
    this.codec = codec;
    this.pt = codec === 'PCMU' ? 0 : codec === 'PCMA' ? 8 : 111;
    this.clockRate = codec === 'opus' ? 48_000 : 8000;
    if (codec === 'opus') {
      this.encoder = new Encoder({ channels: 1, sample_rate: 48_000, application: 'voip' });
      this.decoder = new Decoder({ channels: 1, sample_rate: 48_000 });
    }
    socket.on('message', (msg) => this.onMessage(msg));
  }

  /** Bind a peer on 127.0.0.1 (ephemeral port). */
  static async open(codec: PeerCodec): Promise<SipRtpPeer> {
    const socket = createSocket('udp4');
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
    return new SipRtpPeer(socket, codec);
  }

  /** The port this peer sends from and receives on. */
  get port(): number {
    return this.socket.address().port;
  }

  /** A PBX-style SDP answer advertising `sdpPort` (default: our real port). */
  answerSdp(sdpPort = this.port, direction = 'sendrecv'): string {
    const fmt =
      this.codec === 'opus'
        ? ['a=rtpmap:111 opus/48000/2', 'a=fmtp:111 useinbandfec=1']
        : [`a=rtpmap:${this.pt} ${this.codec}/8000`];
    return [
      'v=0',
      'o=- 1 1 IN IP4 127.0.0.1',
      's=test-pbx',
      'c=IN IP4 127.0.0.1',
      't=0 0',
      `m=audio ${sdpPort} RTP/AVP ${this.pt} ${this.dtmfPt}`,
      ...fmt,
      `a=rtpmap:${this.dtmfPt} telephone-event/8000`,
      `a=fmtp:${this.dtmfPt} 0-16`,
      'a=ptime:20',
      `a=${direction}`,
      '',
    ].join('\r\n');
  }

  /** Send to the bridge's RTP port. */
  sendTo(address: string, port: number): void {
    this.target = { address, port };
  }

  /**
   * Send a tone every 20 ms until {@link stop}. Options (any of them puts the
   * frames on a drift-free schedule): `ptimeMs`, the packet duration
   * (default 20); `periodMs`, a PBX whose packet clock runs fast or slow
   * against ours (default `ptimeMs`); `lose(n)`, true for packets lost on the
   * way (their sequence number and timestamp are used, nothing is sent).
   */
  startTone(
    hz: number,
    dbfs: number,
    opts?: { periodMs?: number; ptimeMs?: number; lose?: (n: number) => boolean },
  ): void {
    this.stop();
    const gen = new ToneGenerator(hz, dbfs, this.clockRate);
    this.gen = gen;
    if (opts === undefined) {
      this.timer = setInterval(() => this.sendAudio(gen.nextFrame()), 20);
      return;
    }
    const ptime = opts.ptimeMs ?? 20;
    const period = opts.periodMs ?? ptime;
    const samples = (this.clockRate * ptime) / 1000;
    const start = performance.now();
    let n = 0;
    const next = (): void => {
      this.sendAudio(gen.nextFrame(samples), opts.lose?.(n) ?? false);
      n++;
      this.timer = setTimeout(next, Math.max(0, start + n * period - performance.now()));
    };
    next();
  }

  /**
   * A stalled PBX flushing its backlog: stop sending for `ms` while frames
   * keep being produced (timestamps continue), then send the queued frames
   * back-to-back and go on every 20 ms. Needs {@link startTone} first.
   * Resolves with the number of flushed frames once they went out.
   */
  async stallThenFlush(ms: number): Promise<number> {
    const gen = this.gen;
    if (!gen || !this.timer) throw new Error('stallThenFlush needs a running tone');
    this.stop();
    await sleep(ms);
    const n = Math.round(ms / 20);
    for (let i = 0; i < n; i++) this.sendAudio(gen.nextFrame());
    this.timer = setInterval(() => this.sendAudio(gen.nextFrame()), 20);
    return n;
  }

  /** Stop sending audio. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer); // also clears an interval
    this.timer = undefined;
  }

  /** Move the RTP timestamp on by `ticks` without any time passing (a PBX clock step). */
  jumpTimestamp(ticks: number): void {
    this.ts = (this.ts + ticks) >>> 0;
  }

  /** Send RFC 4733 events for `digits` in real time (6 updates + 3 end packets per digit). */
  async sendDigits(digits: string): Promise<void> {
    for (const d of digits) {
      const event = DTMF.indexOf(d);
      const start = this.ts;
      for (let i = 1; i <= 6; i++) {
        this.rawSend(this.dtmfPt, start, Buffer.from([event, 10, (i * 160) >> 8, (i * 160) & 0xff]), i === 1);
        await sleep(20);
      }
      for (let i = 0; i < 3; i++)
        this.rawSend(this.dtmfPt, start, Buffer.from([event, 0x80 | 10, 960 >> 8, 960 & 0xff]), false);
      this.ts = (this.ts + 6 * (this.clockRate / 50)) >>> 0;
      await sleep(60);
    }
  }

  /** Send raw bytes (garbage tests). */
  sendRaw(buf: Buffer): void {
    if (this.target) this.socket.send(buf, this.target.port, this.target.address);
  }

  startRecording(): void {
    this.recorder = new PcmRecorder(this.clockRate);
  }

  stopRecording(): Int16Array {
    const pcm = this.recorder?.toInt16Array() ?? new Int16Array(0);
    this.recorder = undefined;
    return pcm;
  }

  /** Audio (non-event) packets received so far. */
  audioPackets(): PeerPacket[] {
    return this.received.filter((p) => p.pt === this.pt);
  }

  close(): Promise<void> {
    this.stop();
    return new Promise((r) => this.socket.close(() => r()));
  }

  private sendAudio(pcm: Int16Array, lost = false): void {
    const payload =
      this.codec === 'opus'
        ? Buffer.from((this.encoder as Encoder).encode(pcm))
        : Buffer.from(this.codec === 'PCMU' ? alawmulaw.mulaw.encode(pcm) : alawmulaw.alaw.encode(pcm));
    if (lost) this.seq = (this.seq + 1) & 0xffff;
    else this.rawSend(this.pt, this.ts, payload, false);
    this.ts = (this.ts + pcm.length) >>> 0;
  }

  private rawSend(pt: number, ts: number, payload: Buffer, marker: boolean): void {
    if (!this.target) return;
    const h = Buffer.alloc(12);
    h[0] = 0x80;
    h[1] = (marker ? 0x80 : 0) | pt;
    h.writeUInt16BE(this.seq, 2);
    h.writeUInt32BE(ts >>> 0, 4);
    h.writeUInt32BE(this.ssrc, 8);
    this.seq = (this.seq + 1) & 0xffff;
    this.socket.send(Buffer.concat([h, payload]), this.target.port, this.target.address);
  }

  private onMessage(msg: Buffer): void {
    if (msg.length < 12) return;
    const b0 = msg.readUInt8(0);
    const b1 = msg.readUInt8(1);
    if (b0 >> 6 !== 2) return;
    if (b1 >= 192 && b1 <= 223) return; // RTCP (RFC 5761 §4) that landed on this socket, not RTP
    const cc = b0 & 0x0f;
    const pkt: PeerPacket = {
      at: performance.now(),
      pt: b1 & 0x7f,
      marker: (b1 & 0x80) !== 0,
      seq: msg.readUInt16BE(2),
      ts: msg.readUInt32BE(4),
      ssrc: msg.readUInt32BE(8),
      payload: msg.subarray(12 + cc * 4),
    };
    this.received.push(pkt);
    if (pkt.pt === this.dtmfPt) {
      const p = pkt.payload;
      if (p.length < 4) return;
      const event = p.readUInt8(0);
      const end = (p.readUInt8(1) & 0x80) !== 0;
      this.events.push({ ts: pkt.ts, seq: pkt.seq, event, end, duration: p.readUInt16BE(2), at: pkt.at });
      if (end && !this.endedTs.has(pkt.ts)) {
        this.endedTs.add(pkt.ts);
        this.digits += DTMF[event] ?? '?';
      }
      return;
    }
    if (pkt.pt !== this.pt || !this.recorder) return;
    if (this.codec === 'opus') {
      const u8 = (this.decoder as Decoder).decode(pkt.payload);
      this.recorder.push(new Int16Array(u8.buffer, u8.byteOffset, u8.byteLength >> 1));
    } else {
      this.recorder.push(
        this.codec === 'PCMU' ? alawmulaw.mulaw.decode(pkt.payload) : alawmulaw.alaw.decode(pkt.payload),
      );
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
