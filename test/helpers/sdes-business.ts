/**
 * A business endpoint that speaks SDES-SRTP (`RTP/SAVP` + `a=crypto`, no ICE or DTLS), for simulator tests of
 * Meta's SDES mode. The bridge itself speaks DTLS-SRTP only.
 */
import { createSocket, type Socket } from 'node:dgram';
import { Encoder } from '@evan/opus';
import sdpTransform from 'sdp-transform';
import { RtpHeader, RtpPacket } from 'werift';
import { ToneGenerator } from '#simulator/media/audio.ts';
import { cryptoLine, newSdesKey, parseCryptoLines, sdesSrtpSession } from '#simulator/media/sdes.ts';

/** A business that speaks SDES-SRTP: answers (or offers) `RTP/SAVP` with its own `a=crypto`. */
export class SdesBusiness {
  readonly key = newSdesKey();
  readonly received: RtpPacket[] = [];
  #socket: Socket | undefined;
  #srtp: ReturnType<typeof sdesSrtpSession> | undefined;
  #remote: { address: string; port: number } | undefined;
  #seq = 1;
  #ts = 0;
  readonly #encoder = new Encoder({ channels: 1, sample_rate: 48_000, application: 'voip' });
  readonly #tone = new ToneGenerator(440, -20, 48_000);

  /** Its SDP: an answer to `theirs`, or (with `theirs` empty) an offer whose crypto line has `tag`. */
  async sdp(theirs: string, tag = 1): Promise<string> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
    socket.on('message', (msg) => {
      if (this.#srtp) this.received.push(RtpPacket.deSerialize(this.#srtp.decrypt(msg)));
    });
    this.#socket = socket;
    if (theirs) this.useRemote(theirs);
    return [
      'v=0',
      'o=- 1 2 IN IP4 127.0.0.1',
      's=-',
      't=0 0',
      `m=audio ${socket.address().port} RTP/SAVP 111 126`,
      'c=IN IP4 127.0.0.1',
      'a=rtcp-mux',
      cryptoLine(tag, this.key),
      'a=rtpmap:111 opus/48000/2',
      'a=rtpmap:126 telephone-event/8000',
      'a=ptime:20',
      'a=sendrecv',
      'a=ssrc:1234 cname:biz',
      '',
    ].join('\r\n');
  }

  /** Take the other side's address and key. */
  useRemote(sdp: string): void {
    const m = sdpTransform.parse(sdp).media[0];
    const remoteKey = parseCryptoLines(sdp)[0]?.keySalt;
    if (!m?.connection?.ip || !remoteKey) throw new Error('remote SDP without c= or a=crypto');
    this.#remote = { address: m.connection.ip, port: m.port };
    this.#srtp = sdesSrtpSession(this.key, remoteKey);
  }

  /** One 20 ms Opus frame of a 440 Hz tone, SRTP-protected, to the relay. */
  sendFrame(): void {
    if (!this.#srtp || !this.#remote || !this.#socket) throw new Error('not negotiated');
    const header = new RtpHeader({ payloadType: 111, sequenceNumber: this.#seq++, timestamp: this.#ts, ssrc: 1234 });
    this.#ts += 960;
    const payload = Buffer.from(this.#encoder.encode(this.#tone.nextFrame(960)));
    this.#socket.send(this.#srtp.encrypt(payload, header), this.#remote.port, this.#remote.address);
  }

  /** Release the socket. */
  async close(): Promise<void> {
    const socket = this.#socket;
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
}
