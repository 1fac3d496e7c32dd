/**
 * Audio correctness through the whole bridge against baresip (Debian `baresip-core`), a SIP UA
 * that shares no code with us. The Meta simulator's relay calls (real WebRTC, Opus); the webhook
 * queues the job; the media worker answers Meta and INVITEs baresip, whose echo module answers and
 * plays back what it hears. A tone played on the WhatsApp side and heard back there has therefore
 * crossed the bridge WhatsApp→SIP *and* SIP→WhatsApp, so one measurement covers both directions.
 *
 * Each codec case runs its own baresip and stack:
 * - Opus: the bridge offers its default order (opus first) to a baresip with every codec →
 *   passthrough.
 * - PCMU: the bridge offers only PCMU (`CODEC_ORDER=PCMU`) → transcoding.
 * - PCMA: the bridge offers its default order to a baresip whose account only takes PCMA →
 *   transcoding after the far end picked the last codec of the offer.
 * - SDES-SRTP: the bridge with `SIP_SRTP=required` offers `RTP/SAVP` + `a=crypto` (RFC 4568) to a
 *   baresip whose account has `mediaenc=srtp-mand` (its srtp.so, libre's own SRTP): the tone
 *   crosses the PBX leg as SRTP both ways, and its RTCP as SRTCP. And best effort: `SIP_SRTP=optional`
 *   offers `RTP/AVP` with `a=crypto` to a baresip with `mediaenc=srtp`, which takes the key.
 *
 * The suite fails, never skips, when baresip or its modules are missing.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { measureTone, rmsDbfs, type ToneMeasurement } from '#simulator/media/audio.ts';
import type { SimCall } from '#simulator/simulator.ts';
import { sleep } from '#test/helpers/async.ts';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';
import { type BaresipCodec, type BaresipEcho, requireBaresip, startBaresipEcho } from './baresip-echo.ts';

const SAMPLE_RATE = 48_000;
const TONE_DBFS = -12;
/** 20 ms at 48 kHz: a whole number of periods of both test tones. */
const WINDOW = 960;

/** What came back for one stimulus. */
interface Echo extends ToneMeasurement {
  /** Quietest and loudest 20 ms window of the measured stretch (dBFS): dropouts and glitches show here. */
  readonly minWindowDbfs: number;
  readonly maxWindowDbfs: number;
  /** Time from the start of the stimulus until the recording got louder than -40 dBFS. */
  readonly latencyMs: number;
  /** Samples recorded in all (48 per ms when packets kept coming). */
  readonly samples: number;
}

interface CodecCase {
  readonly name: string;
  /** Codec the SIP leg must end up with. */
  readonly codec: BaresipCodec;
  /** The bridge's `CODEC_ORDER`; undefined = its default (opus,PCMU,PCMA). */
  readonly codecOrder?: string;
  /** baresip account codecs; undefined = opus, PCMU, PCMA. */
  readonly baresipCodecs?: readonly BaresipCodec[];
  /** Expected `media` of the ended call record. */
  readonly media: { mode: 'passthrough' | 'transcode'; codec: string };
  readonly waId: string;
  /** SDES-SRTP on the PBX leg: the bridge's `SIP_SRTP` and baresip's `mediaenc`. */
  readonly srtp?: { readonly bridge: 'required' | 'optional'; readonly baresip: 'srtp' | 'srtp-mand' };
}

const CASES: readonly CodecCase[] = [
  {
    name: 'Opus (passthrough)',
    codec: 'opus',
    media: { mode: 'passthrough', codec: 'opus' },
    waId: '5511987654321',
  },
  {
    name: 'PCMU (transcoding, CODEC_ORDER=PCMU)',
    codec: 'PCMU',
    codecOrder: 'PCMU',
    media: { mode: 'transcode', codec: 'g711' },
    waId: '5511987654322',
  },
  {
    name: 'PCMA (transcoding, baresip takes only PCMA)',
    codec: 'PCMA',
    baresipCodecs: ['PCMA'],
    media: { mode: 'transcode', codec: 'g711' },
    waId: '5511987654323',
  },
  {
    name: 'SDES-SRTP (SIP_SRTP=required, baresip mediaenc=srtp-mand, Opus)',
    codec: 'opus',
    media: { mode: 'passthrough', codec: 'opus' },
    waId: '5511987654324',
    srtp: { bridge: 'required', baresip: 'srtp-mand' },
  },
  {
    name: 'best-effort SDES-SRTP (SIP_SRTP=optional, baresip mediaenc=srtp, PCMU)',
    codec: 'PCMU',
    codecOrder: 'PCMU',
    media: { mode: 'transcode', codec: 'g711' },
    waId: '5511987654325',
    srtp: { bridge: 'optional', baresip: 'srtp' },
  },
];

/** Measured values, printed at the end for the record. */
const results: Array<Record<string, unknown>> = [];

afterAll(() => {
  if (results.length > 0) console.info(`baresip echo measurements:\n${JSON.stringify(results, null, 2)}`);
});

describe.each(CASES)('a WhatsApp call to baresip echo: $name', (c) => {
  let baresip: BaresipEcho | undefined;
  let stack: TestStack | undefined;

  async function record(callId: string): Promise<Record<string, unknown>> {
    return (await (await stack!.api(`/v1/calls/${encodeURIComponent(callId)}`)).json()) as Record<string, unknown>;
  }

  /**
   * Plays `source` on the WhatsApp side for `totalMs` while recording what comes back; measures the
   * last `measureMs` (the echo path's latency is well under `totalMs - measureMs`).
   */
  async function roundTrip(
    call: SimCall,
    source: { hz: number } | 'silence',
    totalMs: number,
    measureMs: number,
    allowGaps = false,
  ): Promise<Echo> {
    if (source === 'silence') call.relay.playSilence();
    else call.relay.playTone(source.hz, TONE_DBFS);
    call.relay.startRecording();
    await sleep(totalMs);
    const pcm = call.relay.stopRecording();
    const tail = pcm.slice(-Math.round((SAMPLE_RATE * measureMs) / 1000));
    // A recording shorter than the window means packets stopped coming back.
    if (!allowGaps) {
      expect(tail.length, `audio samples received back in the last ${measureMs} ms`).toBeGreaterThanOrEqual(
        (SAMPLE_RATE * measureMs * 0.9) / 1000,
      );
    }
    const windows: number[] = [];
    for (let i = 0; i + WINDOW <= tail.length; i += WINDOW) windows.push(rmsDbfs(tail.subarray(i, i + WINDOW)));
    if (windows.length === 0) windows.push(Number.NEGATIVE_INFINITY);
    // Echo latency: how long the recording stayed quiet after the tone started.
    let quiet = 0;
    while (quiet + WINDOW <= pcm.length && rmsDbfs(pcm.subarray(quiet, quiet + WINDOW)) < -40) quiet += WINDOW;
    return {
      ...measureTone(tail, SAMPLE_RATE),
      minWindowDbfs: Math.min(...windows),
      maxWindowDbfs: Math.max(...windows),
      latencyMs: (quiet / SAMPLE_RATE) * 1000,
      samples: pcm.length,
    };
  }

  /** baresip's output, attached to any failure of `fn`. */
  async function withDiagnostics<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      const tail = baresip?.output().slice(-6000) ?? '(baresip not started)';
      if (error instanceof Error) error.message += `\n--- baresip output (tail) ---\n${tail}`;
      throw error;
    }
  }

  afterAll(async () => {
    await stack?.stop();
    await baresip?.stop();
  });

  it('echoes silence as silence, 700 Hz as 700 Hz and 1 kHz at 1000 ± 10 Hz within 3 dB; the call ends cleanly', () =>
    withDiagnostics(async () => {
      // Started here rather than in a hook so that a missing baresip fails each test (with the
      // apt-get hint) instead of leaving them reported as skipped.
      requireBaresip();
      const b = await startBaresipEcho({
        ...(c.baresipCodecs ? { codecs: c.baresipCodecs } : {}),
        ...(c.srtp ? { mediaenc: c.srtp.baresip } : {}),
      });
      baresip = b;
      const workerEnv = {
        ...(c.codecOrder ? { CODEC_ORDER: c.codecOrder } : {}),
        ...(c.srtp ? { SIP_SRTP: c.srtp.bridge } : {}),
      };
      stack = await startTestStack(
        { SIP_TARGET_URI: b.uri, SIP_RING_TIMEOUT_SECONDS: '5' },
        { bridge: true, workerEnv },
      );
      const mark = b.mark();
      const call = await stack!.simulator!.placeUserCall({ user: { waId: c.waId } });
      await call.waitFor('accepted', 10_000);
      // baresip's side: the echo module took the call, answered with 200 on the expected codec both
      // ways, and RTP from the bridge reached it.
      await b.waitForOutput(/incoming rtp for 'audio' established/, 5000, mark);
      const answered = b.output().slice(mark);
      expect(answered).toMatch(/echo: CALL_INCOMING: peer=sip:\+\d+@127\.0\.0\.1/);
      expect(answered).toMatch(/call: answering call on line \d+ from .* with 200/);
      expect(answered).toContain(`audio: Set audio decoder: ${c.codec} `);
      expect(answered).toContain(`audio: Set audio encoder: ${c.codec} `);
      if (c.srtp) {
        // baresip's SIP trace shows our offer: RTP/SAVP (best effort: RTP/AVP) with one AES_CM_128_HMAC_SHA1_80 key.
        expect(answered).toMatch(c.srtp.bridge === 'required' ? /^m=audio \d+ RTP\/SAVP /m : /^m=audio \d+ RTP\/AVP /m);
        expect(answered).toMatch(/^a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:[A-Za-z0-9+/]{40}/m);
      }

      // Nothing played → nothing audible back: neither the bridge nor baresip adds a tone of its own.
      const silence = await roundTrip(call, 'silence', 1000, 600);
      expect(silence.dbfs, 'level echoed for silence (dBFS)').toBeLessThan(-50);

      // Another frequency comes back as itself: what we hear is really the echo of what we send.
      const tone700 = await roundTrip(call, { hz: 700 }, 1200, 600);
      expect(Math.abs(tone700.hz - 700), `700 Hz came back at ${tone700.hz.toFixed(1)} Hz`).toBeLessThanOrEqual(10);
      expect(tone700.latencyMs, 'echo latency (ms)').toBeLessThan(500);

      // The requirement: 1 kHz back at 1000 ± 10 Hz within 3 dB, having crossed the bridge both ways.
      const tone = await roundTrip(call, { hz: 1000 }, 2000, 1000);
      expect(Math.abs(tone.hz - 1000), `1 kHz came back at ${tone.hz.toFixed(1)} Hz`).toBeLessThanOrEqual(10);
      expect(Math.abs(tone.dbfs - TONE_DBFS), `1 kHz came back at ${tone.dbfs.toFixed(2)} dBFS`).toBeLessThanOrEqual(3);
      // …steadily: no 20 ms stretch of the measured second drops out or jumps.
      expect(tone.minWindowDbfs, 'quietest 20 ms of the 1 kHz echo (dBFS)').toBeGreaterThan(TONE_DBFS - 3);
      expect(tone.maxWindowDbfs, 'loudest 20 ms of the 1 kHz echo (dBFS)').toBeLessThan(TONE_DBFS + 3);

      // The echo is baresip's: with baresip frozen (SIGSTOP) the tone stops coming back, and it
      // returns once baresip runs again.
      b.pause();
      const frozen = await roundTrip(call, { hz: 1000 }, 1000, 600, true);
      b.resume();
      expect(frozen.maxWindowDbfs, 'loudest 20 ms back while baresip is frozen (dBFS)').toBeLessThan(-40);
      // baresip flushes what it held while frozen; measure the last 600 ms of 2 s, once that has passed
      // (a run on a loaded machine measured the tail of the flush in a 1.2 s window: 5 dB low).
      const resumed = await roundTrip(call, { hz: 1000 }, 2000, 600);
      expect(
        Math.abs(resumed.hz - 1000),
        `1 kHz after resuming came back at ${resumed.hz.toFixed(1)} Hz`,
      ).toBeLessThanOrEqual(10);
      expect(Math.abs(resumed.dbfs - TONE_DBFS)).toBeLessThanOrEqual(3);

      expect(await record(call.id)).toMatchObject({ state: 'answered', sip: { answeredTarget: b.uri } });

      const hangUpMark = b.mark();
      call.hangUp();
      const ended = await eventually(
        async () => {
          const r = await record(call.id);
          return r.state === 'ended' && r;
        },
        8000,
        `call ${call.id} to end`,
      );
      expect(ended).toMatchObject({ endReason: 'caller-hung-up', endedBy: 'whatsapp' });
      // Our BYE reached baresip, which closed its side. (libre reports a BYE received from the peer
      // as "session closed: Connection reset by peer", i.e. ECONNRESET; that is the normal path.)
      await b.waitForOutput(/Call with sip:\S+ terminated/, 3000, hangUpMark);
      const closed = b.output().slice(hangUpMark);
      expect(closed).toMatch(/^BYE sip:echo-\S+@127\.0\.0\.3:\d+ SIP\/2\.0/m);
      expect(closed).toMatch(/session closed: Connection reset by peer/);

      const withMedia = await eventually(
        async () => {
          const r = await record(call.id);
          return r.media !== undefined && r;
        },
        5000,
        `media statistics of ${call.id}`,
      );
      expect(withMedia).toMatchObject({ media: c.media });
      // Audio really flowed both ways through the bridge (~50 packets/s for the whole call).
      const stats = withMedia.media as { whatsappToSip: { packets: number }; sipToWhatsapp: { packets: number } };
      expect(stats.whatsappToSip.packets, 'packets WhatsApp → baresip').toBeGreaterThan(100);
      expect(stats.sipToWhatsapp.packets, 'packets baresip → WhatsApp').toBeGreaterThan(100);
      // baresip's RTCP reached the SIP leg (RFC 3550 reports both ways).
      const sip = (withMedia.media as { sip?: { rtcpReportsReceived: number; roundTripTimeMs?: number } }).sip;
      console.info(`[baresip ${c.name}] SIP-leg RTCP: ${JSON.stringify(sip)}`);
      expect(sip?.rtcpReportsReceived, 'RTCP reports from baresip').toBeGreaterThan(0);
      if (c.srtp) {
        // SRTP ran on the PBX leg, and the report counted above came as SRTCP that authenticated.
        // At most one packet was refused: on our BYE baresip 1.0 sends its RTCP BYE (BYE + SDES,
        // 52 bytes) in the clear, its SRTP already closed (logged in these runs: refused ~10 ms
        // after our BYE, never before it; the bytes parse as plain RTCP), which SRTCP must refuse.
        expect((sip as { srtpRejected?: number } | undefined)?.srtpRejected, 'SRTP/SRTCP refused').toBeLessThanOrEqual(
          1,
        );
      }

      results.push({
        case: c.name,
        sipCodec: c.codec,
        media: withMedia.media,
        silenceDbfs: silence.dbfs,
        tone700,
        tone1k: { hz: tone.hz, dbfs: tone.dbfs, minWindowDbfs: tone.minWindowDbfs, maxWindowDbfs: tone.maxWindowDbfs },
        frozen: { samples: frozen.samples, maxWindowDbfs: frozen.maxWindowDbfs },
        resumed,
      });
    }));
});
