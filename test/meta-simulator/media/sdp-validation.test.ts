import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type BusinessSdpValidationOptions, validateBusinessSdp } from '#simulator/media/sdp-validation.ts';

const fixture = (name: string): string => readFileSync(new URL(`../../fixtures/sdp/${name}`, import.meta.url), 'utf8');

const answer: BusinessSdpValidationOptions = { type: 'answer' };

/** Golden fixtures and Meta's verdict on each. `null` = accepted. */
const cases: { file: string; opts: BusinessSdpValidationOptions; rejects: RegExp | string | null }[] = [
  { file: 'meta-uic-offer.sdp', opts: { type: 'offer' }, rejects: null },
  { file: 'business-answer-good.sdp', opts: answer, rejects: null },
  { file: 'business-offer-browser.sdp', opts: { type: 'offer' }, rejects: null },
  { file: 'answer-two-fingerprints.sdp', opts: answer, rejects: /exactly one fingerprint, found 2/ },
  { file: 'answer-sha384.sdp', opts: answer, rejects: /only sha-256/ },
  { file: 'answer-no-fingerprint.sdp', opts: answer, rejects: 'No fingerprint found in SDP' },
  { file: 'answer-two-mlines.sdp', opts: answer, rejects: /exactly one m-line, found 2/ },
  { file: 'answer-pcmu-only.sdp', opts: answer, rejects: /opus\/48000 is required/ },
  { file: 'answer-pcmu-only.sdp', opts: { type: 'answer', allowG711: true }, rejects: null },
  { file: 'answer-ptime-30.sdp', opts: answer, rejects: /ptime must be 20/ },
  { file: 'answer-te-48000.sdp', opts: answer, rejects: /telephone-event must be 8000 Hz/ },
  { file: 'answer-actpass.sdp', opts: answer, rejects: /setup must be active or passive, found actpass/ },
  { file: 'answer-two-ssrcs.sdp', opts: answer, rejects: /at most one SSRC, found 2/ },
  { file: 'answer-no-ice-pwd.sdp', opts: answer, rejects: /ice-pwd/ },
  { file: 'answer-sdes.sdp', opts: { type: 'answer', keyExchange: 'SDES' }, rejects: null },
  { file: 'answer-sdes.sdp', opts: answer, rejects: /UDP\/TLS\/RTP\/SAVPF/ },
  { file: 'business-answer-good.sdp', opts: { type: 'answer', keyExchange: 'SDES' }, rejects: /RTP\/SAVP/ },
];

describe('validateBusinessSdp', () => {
  describe('golden fixtures (test/fixtures/sdp)', () => {
    for (const { file, opts, rejects } of cases) {
      const mode = [opts.type, opts.allowG711 ? 'G.711 enabled' : '', opts.keyExchange ?? '']
        .filter(Boolean)
        .join(', ');
      it(`${file} as ${mode} → ${rejects === null ? 'accepted' : `rejected (${String(rejects)})`}`, () => {
        const verdict = validateBusinessSdp(fixture(file), opts);
        if (rejects === null) {
          expect(verdict).toEqual({ ok: true });
        } else {
          expect(verdict.ok).toBe(false);
          const details = verdict.ok ? '' : verdict.details;
          if (typeof rejects === 'string') expect(details).toBe(rejects);
          else expect(details).toMatch(rejects);
        }
      });
    }
  });

  it('accepts LF-only line endings as well as CRLF', () => {
    expect(validateBusinessSdp(fixture('business-answer-good.sdp').replace(/\r\n/g, '\n'), answer)).toEqual({
      ok: true,
    });
  });

  it('rejects an answer whose only codec is Opus at the wrong clock rate', () => {
    const sdp = fixture('business-answer-good.sdp').replace('opus/48000/2', 'opus/16000');
    expect(validateBusinessSdp(sdp, answer)).toMatchObject({
      ok: false,
      details: expect.stringMatching(/opus\/48000/),
    });
  });

  it('rejects an offer whose telephone-event exists only at 48 kHz, but accepts one that also has 8 kHz', () => {
    const browser = fixture('business-offer-browser.sdp');
    const only48k = browser.replace('a=rtpmap:126 telephone-event/8000', 'a=rtpmap:126 telephone-event/48000');
    expect(validateBusinessSdp(browser, { type: 'offer' })).toEqual({ ok: true });
    expect(validateBusinessSdp(only48k, { type: 'offer' }).ok).toBe(false);
  });

  it('never throws on garbage and says why it refused', () => {
    const garbage: unknown[] = [
      '',
      'hello',
      'v=0',
      'v=0\r\nm=',
      'v=0\r\nm=audio\r\na=rtpmap:',
      'm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nv=0',
      '\u0000\u0001\u0002',
      'v=0\r\n'.repeat(10_000),
      `v=0\r\n${'a=fingerprint:\r\n'.repeat(50)}m=audio x y z\r\na=ssrc:\r\na=ptime:abc`,
      null,
      undefined,
      42,
      { sdp: 'v=0' },
    ];
    for (const g of garbage) {
      const verdict = validateBusinessSdp(g as string, answer);
      expect(verdict.ok).toBe(false);
      expect(verdict.ok ? '' : verdict.details).not.toBe('');
    }
  });
});
