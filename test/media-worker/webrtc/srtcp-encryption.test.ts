import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { RtcpReceiverInfo, RtcpRrPacket, RtcpSenderInfo, RtcpSrPacket, SrtcpSession } from 'werift';
import { accelerateSrtcpEncryption } from '#worker/webrtc/srtp-media-path.ts';

/** werift's SRTCP sessions of both ends of one GCM (RFC 7714) DTLS-SRTP association. */
function pair() {
  const a = { key: randomBytes(16), salt: randomBytes(12) };
  const b = { key: randomBytes(16), salt: randomBytes(12) };
  const keys = (l: typeof a, r: typeof a) => ({
    localMasterKey: l.key,
    localMasterSalt: l.salt,
    remoteMasterKey: r.key,
    remoteMasterSalt: r.salt,
  });
  return {
    ours: new SrtcpSession({ profile: 7, keys: keys(a, b) }),
    theirs: new SrtcpSession({ profile: 7, keys: keys(b, a) }),
  };
}

function reports(i: number): Buffer[] {
  const sr = new RtcpSrPacket({
    ssrc: 0x1234_5678,
    senderInfo: new RtcpSenderInfo({
      ntpTimestamp: BigInt(i) << 32n,
      rtpTimestamp: i * 960,
      packetCount: i * 50,
      octetCount: i * 4000,
    }),
    reports: [],
  });
  const rr = new RtcpRrPacket({
    ssrc: 0x1234_5678,
    reports: [
      new RtcpReceiverInfo({
        ssrc: 0x9abc_def0,
        fractionLost: 0,
        packetsLost: i,
        highestSequence: 1000 + i,
        jitter: 3,
        lsr: 0,
        dlsr: 0,
      }),
    ],
  });
  return [sr.serialize(), rr.serialize()];
}

describe('SRTCP encryption on the reused GCM cipher (werift’s reports, RFC 7714 §9)', () => {
  it('the peer’s werift decrypts every report we protect, byte for byte, and index after index', () => {
    const { ours, theirs } = pair();
    const cipher = (ours as unknown as { localContext: { cipher: Parameters<typeof accelerateSrtcpEncryption>[0] } })
      .localContext.cipher;
    expect(accelerateSrtcpEncryption(cipher)).toBe(true);
    for (let i = 1; i <= 50; i++) {
      for (const plain of reports(i)) {
        const protectedPacket = ours.encrypt(plain);
        expect(theirs.decrypt(protectedPacket).equals(plain), `report ${i}`).toBe(true);
      }
    }
  });

  it('produces exactly what werift’s own GCM produces for the same index', () => {
    const { ours } = pair();
    const cipher = (ours as unknown as { localContext: { cipher: Parameters<typeof accelerateSrtcpEncryption>[0] } })
      .localContext.cipher!;
    const original = cipher.encryptRTCP.bind(cipher);
    const [plain] = reports(7) as [Buffer];
    const expected = original(plain, 42);
    accelerateSrtcpEncryption(cipher);
    expect(cipher.encryptRTCP(plain, 42).toString('hex')).toBe(expected.toString('hex'));
  });

  it('leaves an AES-CM cipher (or anything unexpected) to werift', () => {
    const k = { key: randomBytes(16), salt: randomBytes(14) };
    const cm = new SrtcpSession({
      profile: 1,
      keys: { localMasterKey: k.key, localMasterSalt: k.salt, remoteMasterKey: k.key, remoteMasterSalt: k.salt },
    });
    const cipher = (cm as unknown as { localContext: { cipher: Parameters<typeof accelerateSrtcpEncryption>[0] } })
      .localContext.cipher;
    expect(accelerateSrtcpEncryption(cipher)).toBe(false);
    expect(accelerateSrtcpEncryption(undefined)).toBe(false);
  });
});
