/**
 * A PBX scripted at the wire for call stories that need what the built-in SIP agent cannot do,
 * such as a re-INVITE moving the media to another port: the SIP side is the raw `sip` package
 * ({@link FarEnd}), the media is plain UDP sockets sending a PCMU tone and counting what arrives.
 */
import { createSocket, type Socket } from 'node:dgram';
import type { SipMessage } from 'sip';
import { expect } from 'vitest';
import { measureTone, ToneGenerator } from '#simulator/media/audio.ts';
import type { SimCall } from '#simulator/simulator.ts';
import { g711Encode } from '#worker/media/g711.ts';
import { sleep, until } from '../../../helpers/async.ts';
import type { FarEnd } from '../../sip/helpers/far-end.ts';

/** One RTP port of the PBX on 127.0.0.2: plays a 1 kHz PCMU tone on demand, counts RTP that arrives. */
export class PbxRtp {
  /** RTP packets received on this port. */
  received = 0;
  readonly #socket: Socket;
  readonly #tone = new ToneGenerator(1000, -12, 8000);
  readonly #ssrc = Math.floor(Math.random() * 2 ** 32);
  #seq = 0;
  #timestamp = 0;
  #timer: NodeJS.Timeout | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('message', (msg) => {
      if (msg.length >= 12 && msg[0]! >> 6 === 2) this.received++;
    });
  }

  static async open(address = '127.0.0.2'): Promise<PbxRtp> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, address, resolve));
    return new PbxRtp(socket);
  }

  get port(): number {
    return this.#socket.address().port;
  }

  /** Sends a 20 ms PCMU tone frame to `to` every 20 ms until {@link stop}. */
  play(to: { address: string; port: number }): void {
    this.stop();
    const pcm = new Int16Array(160);
    const payload = new Uint8Array(160);
    this.#timer = setInterval(() => {
      pcm.set(this.#tone.nextFrame(160));
      g711Encode('PCMU', pcm, payload);
      const header = Buffer.alloc(12);
      header[0] = 0x80;
      header[1] = 0; // PCMU
      header.writeUInt16BE(this.#seq++ & 0xffff, 2);
      header.writeUInt32BE(this.#timestamp >>> 0, 4);
      header.writeUInt32BE(this.#ssrc, 8);
      this.#timestamp += 160;
      this.#socket.send(Buffer.concat([header, payload]), to.port, to.address);
    }, 20);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async close(): Promise<void> {
    this.stop();
    await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
  }
}

/** The `c=` address and audio port of an SDP body. */
export function mediaAddress(sdp: string): { address: string; port: number } {
  const address = /^c=IN IP4 (\S+)/m.exec(sdp)?.[1];
  const port = Number(/^m=audio (\d+)/m.exec(sdp)?.[1]);
  if (!address || !port) throw new Error(`no audio address in SDP:\n${sdp}`);
  return { address, port };
}

/** Sends `rq` from `fe`; resolves with the final response. */
export function finalResponse(fe: FarEnd, rq: SipMessage): Promise<SipMessage> {
  return new Promise((resolve) => fe.send(rq, (rs) => (rs.status ?? 0) >= 200 && resolve(rs)));
}

/** The ACK for a 2xx to `rq` (its own transaction, RFC 3261 §13.2.2.4), sent to the 2xx's Contact. */
export function ack2xx(fe: FarEnd, rq: SipMessage, rs: SipMessage): void {
  fe.sendAck({
    method: 'ACK',
    uri: String(Array.isArray(rs.headers.contact) ? rs.headers.contact[0]?.uri : rq.uri),
    headers: {
      via: [],
      to: rs.headers.to,
      from: rq.headers.from,
      'call-id': rq.headers['call-id'],
      cseq: { seq: rq.headers.cseq?.seq ?? 1, method: 'ACK' },
    },
  });
}

/** An INVITE from the PBX `fe` to `uri` offering PCMU on `offer`. */
export function pbxInvite(fe: FarEnd, uri: string, offer: string): SipMessage {
  const tag = `pbx${Math.random().toString(16).slice(2, 10)}`;
  return {
    method: 'INVITE',
    uri,
    headers: {
      via: [],
      to: { uri, params: {} },
      from: { uri: `sip:100@${fe.address}:${fe.port}`, params: { tag } },
      'call-id': `pbx-${tag}`,
      cseq: { seq: 1, method: 'INVITE' },
      contact: [{ uri: `sip:100@${fe.address}:${fe.port}`, params: {} }],
      'max-forwards': 70,
      'content-type': 'application/sdp',
    },
    content: offer,
  };
}

/**
 * A request inside the dialog the PBX created with `invite` (PBX = UAC): its From, the 2xx's To
 * with the bridge's tag, sent to the bridge's Contact (RFC 3261 §12.2.1.1).
 */
export function uacRequest(
  invite: SipMessage,
  ok: SipMessage,
  method: string,
  seq: number,
  content?: string,
): SipMessage {
  return {
    method,
    uri: String(Array.isArray(ok.headers.contact) ? ok.headers.contact[0]?.uri : invite.uri),
    headers: {
      via: [],
      to: ok.headers.to,
      from: invite.headers.from,
      'call-id': invite.headers['call-id'],
      cseq: { seq, method },
      contact: invite.headers.contact,
      'max-forwards': 70,
      ...(content === undefined ? {} : { 'content-type': 'application/sdp' }),
    },
    ...(content === undefined ? {} : { content }),
  };
}

/**
 * The story both business-initiated kinds tell about a re-INVITE that moves the SIP side's media
 * (RFC 3264 §8): the PBX talks from `first` (the bridge latches to it, RFC 4961), goes quiet there,
 * re-INVITEs with `moved` (`reinvite` sends it and acknowledges the 200), and talks from there.
 * Afterwards the bridge sends only to `moved`, and WhatsApp hears the PBX's 1 kHz from it.
 */
export async function expectMediaFollowsMove(opts: {
  readonly call: SimCall;
  readonly first: PbxRtp;
  readonly moved: PbxRtp;
  readonly bridgeRtp: { address: string; port: number };
  readonly reinvite: () => Promise<void>;
}): Promise<void> {
  const { call, first, moved, bridgeRtp } = opts;
  call.relay.playTone(440, -12);
  first.play(bridgeRtp);
  await until(() => first.received > 25, 5000);

  first.stop();
  await opts.reinvite();
  moved.play(bridgeRtp);

  await until(() => moved.received > 25, 5000);
  const atFirst = first.received;
  call.relay.startRecording();
  await sleep(1000); // the measurement window
  const atWhatsApp = measureTone(call.relay.stopRecording(), 48000);
  expect(first.received - atFirst, 'nothing more to the old port').toBeLessThan(3);
  expect(Math.abs(atWhatsApp.hz - 1000), 'the PBX audio from the new port reaches WhatsApp').toBeLessThan(10);
}
