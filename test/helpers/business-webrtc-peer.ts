/**
 * A "business side" WebRTC peer for tests: a plain werift RTCPeerConnection
 * configured the way Meta requires of the bridge (full ICE, CONTROLLING
 * against Meta's ICE-lite relay, DTLS client via `a=setup:active`, one
 * sha-256 fingerprint, no external STUN, loopback only).
 *
 * It deliberately does not reuse the relay's media code: RFC 4733 DTMF is
 * built and parsed here independently so relay bugs cannot cancel out.
 */
import { Decoder, Encoder } from '@evan/opus';
import alawmulaw from 'alawmulaw';
import { RTCPeerConnection, RTCRtpCodecParameters, type RTCRtpTransceiver, RtpHeader, RtpPacket } from 'werift';
import { PcmRecorder, ToneGenerator } from '#simulator/media/audio.ts';

/** Options for {@link BusinessWebRtcPeer}. */
export interface BusinessWebRtcPeerOptions {
  /** Loopback address for the host candidate (default 127.0.0.1). */
  bindAddress?: string;
  /** Telephone-event payload type this side offers (default 126). */
  telephoneEventPt?: number;
  /** Audio codec this side supports: Opus (default) or PCMU only (G.711 µ-law, 8 kHz). */
  audioCodec?: 'opus' | 'pcmu';
  /**
   * DTLS role when answering: `client` (default, `a=setup:active`, what Meta
   * recommends) or `server` (`a=setup:passive`).
   */
  dtlsRole?: 'client' | 'server';
}

/** One received RTP packet, as seen by the business side. */
export interface ReceivedRtp {
  at: number;
  payloadType: number;
  sequenceNumber: number;
  timestamp: number;
  ssrc: number;
  marker: boolean;
  payload: Buffer;
}

const DTMF = '0123456789*#ABCD';

/** Business-side test peer; see the module comment. */
export class BusinessWebRtcPeer {
  readonly pc: RTCPeerConnection;
  private transceiver: RTCRtpTransceiver | undefined;
  private readonly tePt: number;
  private readonly dtlsRole: 'client' | 'server';
  /** The audio codec this side sends and expects. */
  readonly audioCodec: 'opus' | 'pcmu';
  /** Sample rate of recordings: 48000 for Opus, 8000 for PCMU. */
  readonly recordingRate: number;
  private timer: NodeJS.Timeout | undefined;
  private seq = 1000;
  private ts = 5000;
  private readonly encoder = new Encoder({ channels: 1, sample_rate: 48_000, application: 'voip' });
  private readonly decoder = new Decoder({ channels: 1, sample_rate: 48_000 });
  private recorder: PcmRecorder | undefined;
  private readonly endedEvents = new Set<number>();
  /** Every RTP packet received from the relay. */
  readonly received: ReceivedRtp[] = [];
  /** Digits decoded from the relay's RFC 4733 events (one per ended event). */
  digits = '';
  /** Count of audio (non-event) packets this side sent. */
  audioPacketsSent = 0;

  constructor(options: BusinessWebRtcPeerOptions = {}) {
    const bind = options.bindAddress ?? '127.0.0.1';
    this.tePt = options.telephoneEventPt ?? 126;
    this.audioCodec = options.audioCodec ?? 'opus';
    this.dtlsRole = options.dtlsRole ?? 'client';
    this.recordingRate = this.audioCodec === 'opus' ? 48_000 : 8000;
    const audioCodecParameters =
      this.audioCodec === 'opus'
        ? new RTCRtpCodecParameters({
            mimeType: 'audio/opus',
            clockRate: 48_000,
            channels: 2,
            payloadType: 111,
            parameters: 'minptime=10;useinbandfec=1',
          })
        : new RTCRtpCodecParameters({ mimeType: 'audio/PCMU', clockRate: 8000, channels: 1, payloadType: 0 });
    this.pc = new RTCPeerConnection({
      iceServers: [],
      // Only the loopback host candidate: no interface enumeration, socket bound to bind.
      iceUseIpv4: false,
      iceUseIpv6: false,
      iceUseTcp: false,
      iceAdditionalHostAddresses: [bind],
      iceInterfaceAddresses: { udp4: bind },
      bundlePolicy: 'max-bundle',
      codecs: {
        audio: [
          audioCodecParameters,
          new RTCRtpCodecParameters({ mimeType: 'audio/telephone-event', clockRate: 8000, payloadType: this.tePt }),
        ],
      },
    });
    this.pc.onTrack.subscribe((track) => {
      track.onReceiveRtp.subscribe((rtp) => this.onRtp(rtp));
    });
  }

  /** Answer the relay's offer (user-initiated call); returns the answer SDP. */
  async answer(offerSdp: string): Promise<string> {
    await this.pc.setRemoteDescription({ type: 'offer', sdp: offerSdp });
    const t = this.pc.getTransceivers()[0];
    if (!t) throw new Error('offer produced no transceiver');
    t.setDirection('sendrecv');
    this.transceiver = t;
    // werift answers with the transport's preset role ('auto' → client/active).
    t.dtlsTransport.role = this.dtlsRole;
    this.disableStun();
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    return this.localSdp();
  }

  /** Create an offer (business-initiated call). */
  async createOffer(): Promise<string> {
    this.transceiver = this.pc.addTransceiver('audio', { direction: 'sendrecv' });
    this.disableStun();
    await this.pc.setLocalDescription(await this.pc.createOffer());
    return this.localSdp();
  }

  /** Apply the relay's answer to {@link createOffer}. */
  async applyAnswer(answerSdp: string): Promise<void> {
    await this.pc.setRemoteDescription({ type: 'answer', sdp: answerSdp });
  }

  /** Resolve when connected, reject after `timeoutMs`. */
  waitForConnected(timeoutMs = 3000): Promise<void> {
    if (this.pc.connectionState === 'connected') return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        sub.unSubscribe();
        reject(new Error(`business peer not connected after ${timeoutMs} ms (${this.pc.connectionState})`));
      }, timeoutMs);
      const sub = this.pc.connectionStateChange.subscribe((s) => {
        if (s === 'connected') {
          clearTimeout(timer);
          sub.unSubscribe();
          resolve();
        } else if (s === 'failed' || s === 'closed') {
          clearTimeout(timer);
          sub.unSubscribe();
          reject(new Error(`business peer ${s}`));
        }
      });
    });
  }

  /** Send an Opus tone every 20 ms until {@link stopSending}. */
  startTone(hz: number, dbfs: number): void {
    this.stopSending();
    const gen = new ToneGenerator(hz, dbfs, this.recordingRate);
    this.timer = setInterval(() => this.sendAudioFrame(gen.nextFrame()), 20);
  }

  /** Send one Opus frame of silence (e.g. the maiden packet). */
  sendOneSilentFrame(): void {
    this.sendAudioFrame(new Int16Array(this.recordingRate / 50));
  }

  /** Stop the periodic sender. */
  stopSending(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Send one DTMF digit as RFC 4733 events (6 × 20 ms, then 3 end packets),
   * sharing this side's sequence/timestamp space; awaits real time.
   */
  async sendDtmfDigit(digit: string): Promise<void> {
    const t = this.requireTransceiver();
    const event = DTMF.indexOf(digit.toUpperCase());
    if (event < 0) throw new Error(`bad digit ${digit}`);
    const start = this.ts;
    const packet = (duration: number, end: boolean, marker: boolean): Promise<number> =>
      t.dtlsTransport.sendRtp(
        Buffer.from([event, (end ? 0x80 : 0) | 10, (duration >> 8) & 0xff, duration & 0xff]),
        new RtpHeader({
          payloadType: this.tePt,
          sequenceNumber: this.nextSeq(),
          timestamp: start,
          ssrc: t.sender.ssrc,
          marker,
        }),
      );
    for (let i = 1; i <= 6; i++) {
      await packet(i * 160, false, i === 1);
      await new Promise((r) => setTimeout(r, 20));
    }
    for (let i = 0; i < 3; i++) await packet(6 * 160, true, false);
    this.ts = (this.ts + 6 * this.frameTicks()) >>> 0;
  }

  /** Start recording decoded relay audio (48 kHz mono). */
  startRecording(): void {
    this.recorder = new PcmRecorder(this.recordingRate);
  }

  /** Stop recording and return the PCM. */
  stopRecording(): Int16Array {
    const pcm = this.recorder?.toInt16Array() ?? new Int16Array(0);
    this.recorder = undefined;
    return pcm;
  }

  /** Close the PeerConnection and stop timers. */
  async close(): Promise<void> {
    this.stopSending();
    await this.pc.close();
  }

  private localSdp(): string {
    const sdp = this.pc.localDescription?.sdp;
    if (!sdp) throw new Error('no local description');
    return sdp;
  }

  /**
   * werift falls back to stun.l.google.com even with `iceServers: []`; there
   * is no DNS here, so clear the gatherer's STUN server before gathering.
   */
  private disableStun(): void {
    for (const ice of this.pc.iceTransports) ice.connection.stunServer = undefined;
  }

  private requireTransceiver(): RTCRtpTransceiver {
    if (!this.transceiver) throw new Error('not negotiated');
    return this.transceiver;
  }

  /** RTP clock ticks per 20 ms frame. */
  private frameTicks(): number {
    return this.audioCodec === 'opus' ? 960 : 160;
  }

  private nextSeq(): number {
    const s = this.seq;
    this.seq = (s + 1) & 0xffff;
    return s;
  }

  private sendAudioFrame(pcm: Int16Array): void {
    const t = this.transceiver;
    if (!t) return;
    const opus = this.audioCodec === 'opus';
    const payload = Buffer.from(opus ? this.encoder.encode(pcm) : alawmulaw.mulaw.encode(pcm));
    const header = new RtpHeader({
      payloadType: opus ? 111 : 0,
      sequenceNumber: this.nextSeq(),
      timestamp: this.ts,
      ssrc: t.sender.ssrc,
    });
    this.ts = (this.ts + this.frameTicks()) >>> 0;
    this.audioPacketsSent++;
    t.sender.sendRtp(new RtpPacket(header, payload)).catch(() => undefined);
  }

  private onRtp(rtp: RtpPacket): void {
    const h = rtp.header;
    this.received.push({
      at: Date.now(),
      payloadType: h.payloadType,
      sequenceNumber: h.sequenceNumber,
      timestamp: h.timestamp,
      ssrc: h.ssrc,
      marker: h.marker,
      payload: Buffer.from(rtp.payload),
    });
    if (h.payloadType === this.tePt) {
      const p = rtp.payload;
      if (p.length >= 4 && ((p[1] as number) & 0x80) !== 0 && !this.endedEvents.has(h.timestamp)) {
        this.endedEvents.add(h.timestamp);
        this.digits += DTMF[p[0] as number] ?? '?';
      }
      return;
    }
    if (this.recorder && this.audioCodec === 'pcmu') {
      this.recorder.push(alawmulaw.mulaw.decode(rtp.payload));
    } else if (this.recorder) {
      const u8 = this.decoder.decode(rtp.payload);
      const copy = new Uint8Array(u8.byteLength);
      copy.set(u8);
      this.recorder.push(new Int16Array(copy.buffer, 0, copy.byteLength >> 1));
    }
  }
}
