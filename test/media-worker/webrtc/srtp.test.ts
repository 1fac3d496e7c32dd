import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { RtpHeader, RtpPacket, SrtcpSession, SrtpSession } from 'werift';
import { buildRtcpReport } from '#worker/media/rtcp.ts';
import { createRtpView, writeRtp } from '#worker/media/rtp.ts';
import {
  deriveSrtpSessionKeys,
  type SrtpProfile,
  SrtpStream,
  srtpMasterLengths,
  srtpProfileFromId,
} from '#worker/webrtc/srtp.ts';

const PROFILES: SrtpProfile[] = ['AES_CM_128_HMAC_SHA1_80', 'AEAD_AES_128_GCM'];
const WERIFT_ID: Record<SrtpProfile, number> = { AES_CM_128_HMAC_SHA1_80: 1, AEAD_AES_128_GCM: 7 };

function masters(profile: SrtpProfile) {
  const l = srtpMasterLengths(profile);
  return {
    a: { key: randomBytes(l.key), salt: randomBytes(l.salt) },
    b: { key: randomBytes(l.key), salt: randomBytes(l.salt) },
  };
}

function rtp(seq: number, payload: Buffer, ssrc = 0x1234_5678, ts = 960 * seq): Buffer {
  const buf = Buffer.alloc(12 + payload.length);
  writeRtp(buf, 111, false, seq & 0xffff, ts >>> 0, ssrc, payload);
  return buf;
}

/** werift's SRTP session for side A (local = a, remote = b): an independent implementation. */
function weriftSide(profile: SrtpProfile, m: ReturnType<typeof masters>) {
  return new SrtpSession({
    profile: WERIFT_ID[profile],
    keys: { localMasterKey: m.a.key, localMasterSalt: m.a.salt, remoteMasterKey: m.b.key, remoteMasterSalt: m.b.salt },
  });
}

describe('SRTP key derivation (RFC 3711 §4.3.1, Appendix B.3)', () => {
  it('derives the RFC test vector session keys', () => {
    const keys = deriveSrtpSessionKeys(
      'AES_CM_128_HMAC_SHA1_80',
      Buffer.from('E1F97A0D3E018BE0D64FA32C06DE4139', 'hex'),
      Buffer.from('0EC675AD498AFEEBB6960B3AABE6', 'hex'),
    );
    expect(keys.encryptionKey.toString('hex').toUpperCase()).toBe('C61E7A93744F39EE10734AFE3FF7A087');
    expect(keys.salt.toString('hex').toUpperCase()).toBe('30CBBC08863D8C85D49DB34A9AE1');
    expect(keys.authKey?.toString('hex').toUpperCase()).toBe('CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4');
  });

  it('refuses master keys of the wrong length', () => {
    expect(() => deriveSrtpSessionKeys('AEAD_AES_128_GCM', randomBytes(16), randomBytes(14))).toThrow(/salt/);
    expect(() => deriveSrtpSessionKeys('AES_CM_128_HMAC_SHA1_80', randomBytes(32), randomBytes(14))).toThrow(/key/);
  });

  it('maps the IANA DTLS-SRTP profile numbers it supports', () => {
    expect(srtpProfileFromId(1)).toBe('AES_CM_128_HMAC_SHA1_80');
    expect(srtpProfileFromId(7)).toBe('AEAD_AES_128_GCM');
    expect(srtpProfileFromId(2)).toBeUndefined();
  });
});

describe.each(PROFILES)('SRTP %s', (profile) => {
  it('werift decrypts what we protect, and we unprotect what werift encrypts', () => {
    const m = masters(profile);
    const werift = weriftSide(profile, m);
    const ours = {
      send: SrtpStream.sender(profile, m.b.key, m.b.salt),
      recv: SrtpStream.receiver(profile, m.a.key, m.a.salt),
    };
    const view = createRtpView();
    for (let seq = 65_530; seq < 65_560; seq++) {
      // Crosses the sequence wrap, so the rollover counter must agree on both sides.
      const payload = randomBytes(20 + (seq % 140));
      const ourPacket = ours.send.protect(rtp(seq, payload));
      const plain = RtpPacket.deSerialize(werift.decrypt(ourPacket));
      expect(plain.payload.equals(payload)).toBe(true);
      expect(plain.header.sequenceNumber).toBe(seq & 0xffff);

      const header = new RtpHeader({
        payloadType: 111,
        sequenceNumber: seq & 0xffff,
        timestamp: seq * 960,
        ssrc: 0xabcdef01,
        marker: seq % 7 === 0,
      });
      const theirs = werift.encrypt(payload, header);
      expect(ours.recv.unprotect(Buffer.from(theirs), view)).toBeUndefined();
      expect(Buffer.from(view.payload).equals(payload)).toBe(true);
      expect(view).toMatchObject({
        sequenceNumber: seq & 0xffff,
        ssrc: 0xabcdef01,
        payloadType: 111,
        marker: seq % 7 === 0,
      });
      expect(view.timestamp).toBe((seq * 960) >>> 0);
    }
  });

  it('refuses a tampered packet, a wrong key and a replay, and recovers after them', () => {
    const m = masters(profile);
    const send = SrtpStream.sender(profile, m.a.key, m.a.salt);
    const recv = SrtpStream.receiver(profile, m.a.key, m.a.salt);
    const stranger = SrtpStream.receiver(profile, m.b.key, m.b.salt);
    const view = createRtpView();
    const p1 = send.protect(rtp(100, randomBytes(60)));
    const p2 = send.protect(rtp(101, randomBytes(60)));

    for (const at of [2, 8, 12, 30, p1.length - 1]) {
      const bad = Buffer.from(p1);
      bad[at] = (bad[at] as number) ^ 0x01;
      expect(recv.unprotect(bad, view)).toBe('authentication');
    }
    expect(stranger.unprotect(Buffer.from(p1), view)).toBe('authentication');
    expect(recv.unprotect(Buffer.from(p1), view)).toBeUndefined();
    expect(recv.unprotect(Buffer.from(p1), view)).toBe('replay');
    expect(recv.unprotect(Buffer.from(p2), view)).toBeUndefined();
    expect(recv.unprotect(Buffer.alloc(15), view)).toBe('malformed');
  });

  it('accepts reordering inside the replay window and refuses packets older than it', () => {
    const m = masters(profile);
    const send = SrtpStream.sender(profile, m.a.key, m.a.salt);
    const recv = SrtpStream.receiver(profile, m.a.key, m.a.salt);
    const view = createRtpView();
    const packets = Array.from({ length: 200 }, (_, i) => send.protect(rtp(i, randomBytes(40))));
    expect(recv.unprotect(Buffer.from(packets[0] as Buffer), view)).toBeUndefined();
    expect(recv.unprotect(Buffer.from(packets[150] as Buffer), view)).toBeUndefined();
    expect(recv.unprotect(Buffer.from(packets[100] as Buffer), view)).toBeUndefined(); // 50 behind: in the window
    expect(recv.unprotect(Buffer.from(packets[50] as Buffer), view)).toBe('replay'); // 100 behind: too old
    expect(recv.unprotect(Buffer.from(packets[151] as Buffer), view)).toBeUndefined();
  });

  it('keeps decrypting across many rollovers of the sequence number', () => {
    const m = masters(profile);
    const send = SrtpStream.sender(profile, m.a.key, m.a.salt);
    const recv = SrtpStream.receiver(profile, m.a.key, m.a.salt);
    const view = createRtpView();
    let ok = 0;
    for (let i = 0; i < 3 * 65_536 + 10; i += 997) {
      // Large steps (< 2^15) still let the receiver follow the ROC.
      for (let j = 0; j < 3; j++) {
        const payload = randomBytes(30);
        const packet = send.protect(rtp(i + j, payload));
        if (recv.unprotect(packet, view) === undefined && Buffer.from(view.payload).equals(payload)) ok++;
      }
    }
    expect(ok).toBe(Math.ceil((3 * 65_536 + 10) / 997) * 3);
  });
});

describe('SRTCP AES_CM_128_HMAC_SHA1_80 (RFC 3711 §3.4), for the SIP leg’s SDES', () => {
  const profile: SrtpProfile = 'AES_CM_128_HMAC_SHA1_80';

  function report(ssrc: number, n: number): Buffer {
    return buildRtcpReport({
      ssrc,
      cname: `cname-${n}@test`,
      blocks: [{ ssrc: 7, fractionLost: n, cumulativeLost: n, highestSeq: 1000 + n, jitter: 3, lsr: 0, dlsr: 0 }],
    });
  }

  it('werift decrypts the reports we protect, and we unprotect the ones werift encrypts', () => {
    const m = masters(profile);
    const werift = new SrtcpSession({
      profile: 1,
      keys: {
        localMasterKey: m.a.key,
        localMasterSalt: m.a.salt,
        remoteMasterKey: m.b.key,
        remoteMasterSalt: m.b.salt,
      },
    });
    const send = SrtpStream.forRtcp(profile, m.b.key, m.b.salt);
    const recv = SrtpStream.forRtcp(profile, m.a.key, m.a.salt);
    for (let n = 0; n < 5; n++) {
      const plain = report(0x1111_2222, n);
      const protectedByUs = send.protectRtcp(plain);
      expect(protectedByUs.length).toBe(plain.length + 4 + 10);
      expect(protectedByUs.subarray(8, plain.length).equals(plain.subarray(8))).toBe(false);
      expect(Buffer.from(werift.decrypt(protectedByUs)).equals(plain)).toBe(true);

      const theirs = Buffer.from(werift.encrypt(report(0x3333_4444, n)));
      const unprotected = recv.unprotectRtcp(theirs);
      expect(typeof unprotected).not.toBe('string');
      expect(Buffer.from(unprotected as Buffer).equals(report(0x3333_4444, n))).toBe(true);
    }
  });

  it('refuses a tampered report, a wrong key and a replay, and keeps taking new ones', () => {
    const m = masters(profile);
    const send = SrtpStream.forRtcp(profile, m.a.key, m.a.salt);
    const recv = SrtpStream.forRtcp(profile, m.a.key, m.a.salt);
    const stranger = SrtpStream.forRtcp(profile, m.b.key, m.b.salt);
    const first = send.protectRtcp(report(5, 1));
    const second = send.protectRtcp(report(5, 2));
    for (const at of [1, 9, first.length - 12, first.length - 1]) {
      const bad = Buffer.from(first);
      bad[at] = (bad[at] as number) ^ 0x01;
      expect(recv.unprotectRtcp(bad)).toBe('authentication');
    }
    expect(stranger.unprotectRtcp(Buffer.from(first))).toBe('authentication');
    expect(typeof recv.unprotectRtcp(Buffer.from(first))).not.toBe('string');
    expect(recv.unprotectRtcp(Buffer.from(first))).toBe('replay');
    expect(typeof recv.unprotectRtcp(Buffer.from(second))).not.toBe('string');
    expect(recv.unprotectRtcp(Buffer.alloc(20))).toBe('malformed');
  });

  it('is AES-CM only', () => {
    const l = srtpMasterLengths('AEAD_AES_128_GCM');
    expect(() => SrtpStream.forRtcp('AEAD_AES_128_GCM', randomBytes(l.key), randomBytes(l.salt))).toThrow(/AES-CM/);
  });
});
