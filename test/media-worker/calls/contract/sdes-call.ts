/**
 * Contract story, run on each SipPort adapter: a PBX-started call with SDES-SRTP (RFC 4568) on
 * the PBX leg, through the whole worker, with `SIP_SRTP=required`. The PBX is scripted at the wire
 * (the raw `sip` package) and protects its media with werift's SRTP, an implementation that shares
 * no code with the bridge's. Every line the worker logs is captured at trace level: neither key
 * may appear there or in the call record.
 */
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RtpHeader, RtpPacket, SrtpSession } from 'werift';
import { measureTone, ToneGenerator } from '#simulator/media/audio.ts';
import { g711Decode, g711Encode } from '#worker/media/g711.ts';
import { sleep, until } from '../../../helpers/async.ts';
import { grantPermission } from '../../../helpers/permissions.ts';
import { eventually, startTestStack, type TestStack } from '../../../helpers/test-stack.ts';
import { FarEnd } from '../../sip/helpers/far-end.ts';
import { ack2xx, finalResponse, mediaAddress, pbxInvite, uacRequest } from '../helpers/pbx.ts';

/** A PBX offer (session version 1, or `version` in a re-offer): PCMU on `port`, the profile and crypto lines given. */
function offer(port: number, profile: string, ...crypto: string[]): string {
  return reoffer(1, port, profile, ...crypto);
}

function reoffer(version: number, port: number, profile: string, ...crypto: string[]): string {
  return [
    'v=0',
    `o=- 4242 ${version} IN IP4 127.0.0.2`,
    's=-',
    'c=IN IP4 127.0.0.2',
    't=0 0',
    `m=audio ${port} ${profile} 0 101`,
    'a=rtpmap:0 PCMU/8000',
    'a=rtpmap:101 telephone-event/8000',
    ...crypto,
    'a=sendrecv',
    '',
  ].join('\r\n');
}

/** The PBX's SRTP media: a 1 kHz PCMU tone out, what arrives decrypted and decoded. */
class SrtpPbx {
  received = 0;
  undecryptable = 0;
  readonly pcm: number[] = [];
  readonly #socket: Socket;
  readonly #tone = new ToneGenerator(1000, -12, 8000);
  #srtp: SrtpSession | undefined;
  #timer: NodeJS.Timeout | undefined;
  #seq = 0;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('message', (msg) => {
      if (!this.#srtp) return;
      try {
        const packet = RtpPacket.deSerialize(this.#srtp.decrypt(msg));
        const out = new Int16Array(packet.payload.length);
        g711Decode('PCMU', packet.payload, out);
        this.pcm.push(...out);
        this.received++;
      } catch {
        this.undecryptable++;
      }
    });
  }

  static async open(): Promise<SrtpPbx> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.2', resolve));
    return new SrtpPbx(socket);
  }

  get port(): number {
    return this.#socket.address().port;
  }

  /** Keys from the SDP: ours (`local`, what we send with) and the bridge's. */
  key(local: Buffer, bridge: Buffer): void {
    this.#srtp = new SrtpSession({
      profile: 1,
      keys: {
        localMasterKey: local.subarray(0, 16),
        localMasterSalt: local.subarray(16),
        remoteMasterKey: bridge.subarray(0, 16),
        remoteMasterSalt: bridge.subarray(16),
      },
    });
  }

  play(to: { address: string; port: number }): void {
    const payload = new Uint8Array(160);
    this.#timer = setInterval(() => {
      g711Encode('PCMU', this.#tone.nextFrame(160), payload);
      const seq = this.#seq++;
      const header = new RtpHeader({ payloadType: 0, sequenceNumber: seq, timestamp: seq * 160, ssrc: 0x0bad_cafe });
      this.#socket.send((this.#srtp as SrtpSession).encrypt(Buffer.from(payload), header), to.port, to.address);
    }, 20);
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
  }
}

/** Register the SDES-SRTP call story for SIP adapter `name`. */
export function sdesCallContract(name: 'inprocess' | 'drachtio'): void {
  let stack: TestStack;
  let bridgeUri: (number: string) => string;
  const workerLog: string[] = [];

  beforeAll(async () => {
    stack = await startTestStack(
      {},
      {
        bridge: true,
        sipStack: name,
        workerEnv: { SIP_SRTP: 'required' },
        workerLogger: pino({ level: 'trace' }, { write: (line: string) => workerLog.push(line) }),
      },
    );
    const contact = stack.worker!.sipContact;
    bridgeUri = (number) => `sip:+${number}@${contact.slice(contact.indexOf('@') + 1)}`;
  });
  afterAll(() => stack?.stop());

  describe('a PBX-started call with SDES-SRTP (SIP_SRTP=required)', () => {
    it('refuses a plain RTP/AVP offer with 488 before Meta hears of it', async () => {
      const number = '5511900000081';
      await grantPermission(stack, number);
      const pbx = await FarEnd.start('127.0.0.2');
      try {
        const refused = await finalResponse(pbx, pbxInvite(pbx, bridgeUri(number), offer(40_000, 'RTP/AVP')));
        expect(refused.status).toBe(488);
        expect(JSON.stringify(refused.headers)).toMatch(/SIP_SRTP is required/);
      } finally {
        pbx.close();
      }
      expect(stack.simulator!.calls.filter((c) => c.user.waId === number)).toHaveLength(0);
    });

    it('answers RTP/SAVP with its own key, the tone crosses both ways as SRTP, a rekeying re-INVITE is followed; no key is logged or recorded', async () => {
      const number = '5511900000082';
      await grantPermission(stack, number);
      const pbx = await FarEnd.start('127.0.0.2');
      const media = await SrtpPbx.open();
      const pbxKey = randomBytes(30);
      try {
        const invite = pbxInvite(
          pbx,
          bridgeUri(number),
          offer(media.port, 'RTP/SAVP', `a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:${pbxKey.toString('base64')}`),
        );
        const ok = await finalResponse(pbx, invite);
        expect(ok.status).toBe(200);
        ack2xx(pbx, invite, ok);
        const answer = String(ok.content);
        expect(answer).toMatch(/^m=audio \d+ RTP\/SAVP 0/m);
        const crypto = /^a=crypto:(\d+) AES_CM_128_HMAC_SHA1_80 inline:([A-Za-z0-9+/]{40})\r?$/m.exec(answer);
        expect(crypto?.[1], 'the answer keeps the tag of the line it accepted').toBe('3');
        const bridgeKey = Buffer.from(crypto?.[2] ?? '', 'base64');
        expect(bridgeKey).toHaveLength(30);
        expect(bridgeKey.equals(pbxKey)).toBe(false);
        media.key(pbxKey, bridgeKey);

        const call = stack.simulator!.calls.find((c) => c.user.waId === number)!;
        call.relay.playTone(440, -12);
        media.play(mediaAddress(answer));
        await until(() => media.received > 50, 10_000, { what: () => `${media.received} SRTP packets at the PBX` });
        call.relay.startRecording();
        await sleep(1000); // the measurement window
        const atWhatsApp = measureTone(call.relay.stopRecording(), 48_000);
        const atPbx = measureTone(Int16Array.from(media.pcm.slice(-8000)), 8000);
        expect(Math.abs(atWhatsApp.hz - 1000), 'the PBX’s SRTP tone reaches WhatsApp').toBeLessThan(10);
        expect(Math.abs(atPbx.hz - 440), 'WhatsApp’s tone reaches the PBX as SRTP it decrypts').toBeLessThan(10);
        expect(media.undecryptable, 'every packet to the PBX is SRTP under the answered key').toBe(0);

        // The PBX rekeys in a re-INVITE (RFC 4568 §7.1.4), under another tag: the answer keeps our
        // key with the new tag, and the PBX's audio under its new key still reaches WhatsApp.
        const newKey = randomBytes(30);
        const rekey = uacRequest(
          invite,
          ok,
          'INVITE',
          2,
          reoffer(2, media.port, 'RTP/SAVP', `a=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:${newKey.toString('base64')}`),
        );
        const rekeyed = await finalResponse(pbx, rekey);
        expect(rekeyed.status).toBe(200);
        ack2xx(pbx, rekey, rekeyed);
        const reanswer = /^a=crypto:(\d+) AES_CM_128_HMAC_SHA1_80 inline:(\S+)\r?$/m.exec(String(rekeyed.content));
        expect(reanswer?.[1], 'the re-answer takes the tag of the new line').toBe('5');
        expect(reanswer?.[2], 'and keeps our key').toBe(bridgeKey.toString('base64'));
        media.key(newKey, bridgeKey);
        const heardBefore = media.received;
        await until(() => media.received > heardBefore + 25, 5000);
        call.relay.startRecording();
        await sleep(1000); // the measurement window
        const afterRekey = measureTone(call.relay.stopRecording(), 48_000);
        expect(Math.abs(afterRekey.hz - 1000), 'the PBX’s tone under its new key reaches WhatsApp').toBeLessThan(10);

        expect((await finalResponse(pbx, uacRequest(invite, ok, 'BYE', 3))).status).toBe(200);
        const record = await eventually(async () => {
          const r = await stack.runtime.calls.get(call.id);
          return r?.state === 'ended' && r.media && r;
        });
        // SRTP ran on the SIP leg (a packet or two under the new key may beat the re-answer's rekey).
        expect(record).toMatchObject({
          endReason: 'agent-hung-up',
          media: { sip: { srtpRejected: expect.any(Number) } },
        });

        // Keys are secrets: not in any log line (at trace level) nor in the call record.
        const keys = [pbxKey, bridgeKey, newKey].map((k) => k.toString('base64'));
        const logged = workerLog.join('\n');
        expect(logged).toContain('a=crypto:<redacted>'); // the SDP was logged, redacted
        for (const key of keys) {
          expect(logged).not.toContain(key);
          expect(JSON.stringify(stack.logs)).not.toContain(key);
          expect(JSON.stringify(await stack.callRecords())).not.toContain(key);
        }
      } finally {
        pbx.close();
        await media.close();
      }
    });
  });
}
