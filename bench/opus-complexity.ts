/**
 * Micro-benchmark of the transcoding path's Opus encoder (SIP→WhatsApp): 8 kHz mono, VoIP,
 * 16 kb/s, in-band FEC, as MediaBridge configures it, at each libopus complexity. Prints the
 * encode time per 20 ms frame and what a decoder (48 kHz, as WhatsApp's) hears of a 1 kHz
 * tone at -12 dBFS and of a 300–3400 Hz two-tone signal: frequency, level, and the SNR of the
 * round trip at 8 kHz (aligned by the codec's lookahead).
 *
 * Usage: node --import tsx bench/opus-complexity.ts [--frames 1500]
 */
import { Decoder, Encoder } from '@evan/opus';
import { measureTone, ToneGenerator } from '#simulator/media/audio.ts';
import { machine, round } from './lib/common.ts';

const args = process.argv.slice(2);
const FRAMES = Number(args[args.indexOf('--frames') + 1] ?? 0) || 1500;

function signal(kind: 'tone' | 'two-tone', frames: number): Int16Array[] {
  const a = new ToneGenerator(1000, -12, 8000);
  const b = new ToneGenerator(440, -18, 8000);
  const c = new ToneGenerator(2900, -18, 8000);
  const out: Int16Array[] = [];
  for (let i = 0; i < frames; i++) {
    if (kind === 'tone') out.push(a.nextFrame());
    else {
      const x = b.nextFrame();
      const y = c.nextFrame();
      const f = new Int16Array(160);
      for (let k = 0; k < 160; k++) f[k] = (x[k] as number) + (y[k] as number);
      out.push(f);
    }
  }
  return out;
}

/** SNR (dB) of `got` against `ref` at the best lag in 0..64 samples. */
function snrDb(ref: Int16Array, got: Int16Array): number {
  let best = -Infinity;
  for (let lag = 0; lag <= 64; lag++) {
    let s = 0;
    let n = 0;
    for (let i = 800; i + lag < got.length && i < ref.length; i++) {
      const r = ref[i] as number;
      const e = r - (got[i + lag] as number);
      s += r * r;
      n += e * e;
    }
    best = Math.max(best, 10 * Math.log10(s / Math.max(1, n)));
  }
  return best;
}

const results: unknown[] = [];
for (const complexity of [0, 1, 2, 3, 4, 5, 6, 8, 10]) {
  const row: Record<string, unknown> = { complexity };
  for (const kind of ['tone', 'two-tone'] as const) {
    const frames = signal(kind, FRAMES);
    const enc = new Encoder({ channels: 1, sample_rate: 8000, application: 'voip' });
    enc.bitrate = 16_000;
    enc.complexity = complexity as 5;
    enc.inband_fec = true;
    enc.packet_loss = 5;
    const packets: Uint8Array[] = [];
    for (let i = 0; i < 100; i++) enc.encode(frames[i] as Int16Array); // warm-up
    enc.reset();
    const t0 = performance.now();
    for (const f of frames) packets.push(enc.encode(f));
    const us = ((performance.now() - t0) * 1000) / frames.length;
    const dec48 = new Decoder({ channels: 1, sample_rate: 48_000 });
    const dec8 = new Decoder({ channels: 1, sample_rate: 8000 });
    const pcm48: Int16Array[] = [];
    const pcm8: Int16Array[] = [];
    for (const p of packets) {
      const a = dec48.decode(p);
      pcm48.push(new Int16Array(a.buffer, a.byteOffset, a.byteLength >> 1));
      const b = dec8.decode(p);
      pcm8.push(new Int16Array(b.buffer, b.byteOffset, b.byteLength >> 1));
    }
    const cat = (xs: Int16Array[]) => {
      const out = new Int16Array(xs.reduce((n, x) => n + x.length, 0));
      let o = 0;
      for (const x of xs) {
        out.set(x, o);
        o += x.length;
      }
      return out;
    };
    const at48 = cat(pcm48).subarray(48_000); // skip the first second
    const m = measureTone(at48, 48_000);
    row[kind] = {
      encodeUsPerFrame: round(us, 1),
      bytesPerFrame: round(packets.reduce((n, p) => n + p.length, 0) / packets.length, 1),
      ...(kind === 'tone' ? { hz: round(m.hz, 1), dbfs: round(m.dbfs, 2) } : {}),
      snrDb: round(snrDb(cat(frames), cat(pcm8)), 1),
    };
  }
  results.push(row);
}
process.stdout.write(
  `${JSON.stringify({ bench: 'opus-complexity', machine: machine(), frames: FRAMES, results }, null, 2)}\n`,
);
