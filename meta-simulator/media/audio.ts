/**
 * Pure audio helpers for the Meta simulator's media relay and for tests:
 * tone generation, tone measurement (frequency + level) and a PCM recorder.
 *
 * All PCM is signed 16-bit, mono. Levels are in dBFS where a full-scale sine
 * (peak 32767) is 0 dBFS, i.e. `dBFS = 20·log10(RMS·√2 / 32767)`.
 *
 * @module
 */

/** Full-scale peak amplitude of signed 16-bit PCM. */
export const FULL_SCALE = 32767;

/** Samples in one 20 ms frame at `sampleRate` (960 at 48 kHz, 160 at 8 kHz). */
export function frameSamples(sampleRate: number, frameMs = 20): number {
  return Math.round((sampleRate * frameMs) / 1000);
}

/** Peak amplitude of a sine whose level is `dbfs` (0 dBFS → 32767). */
export function dbfsToPeak(dbfs: number): number {
  return FULL_SCALE * 10 ** (dbfs / 20);
}

function clampInt16(x: number): number {
  const r = Math.round(x);
  return Math.min(32767, Math.max(-32768, r));
}

/**
 * One block of a sine tone, starting at absolute sample index `startSample`
 * (so consecutive calls with increasing `startSample` are phase-continuous).
 *
 * @param hz - tone frequency in Hz
 * @param dbfs - level in dBFS (0 = full-scale sine)
 * @param sampleRate - samples per second
 * @param startSample - index of the first sample, for phase continuity
 * @param length - number of samples; defaults to one 20 ms frame
 */
export function sineFrame(
  hz: number,
  dbfs: number,
  sampleRate: number,
  startSample = 0,
  length = frameSamples(sampleRate),
): Int16Array {
  const out = new Int16Array(length);
  const peak = dbfsToPeak(dbfs);
  const w = (2 * Math.PI * hz) / sampleRate;
  for (let i = 0; i < length; i++) {
    out[i] = clampInt16(peak * Math.sin(w * (startSample + i)));
  }
  return out;
}

/**
 * Stateful sine generator producing continuous 20 ms frames (phase carries
 * over between frames, so there are no clicks at frame boundaries).
 */
export class ToneGenerator {
  readonly hz: number;
  readonly dbfs: number;
  readonly sampleRate: number;
  private phase = 0;

  /**
   * @param hz - tone frequency in Hz
   * @param dbfs - level in dBFS (0 = full-scale sine)
   * @param sampleRate - samples per second (default 48000, the Opus RTP clock, RFC 7587)
   */
  constructor(hz: number, dbfs: number, sampleRate = 48_000) {
    if (!(hz >= 0) || !(sampleRate > 0)) {
      throw new RangeError(`invalid tone ${hz} Hz at ${sampleRate} Hz sample rate`);
    }
    this.hz = hz;
    this.dbfs = dbfs;
    this.sampleRate = sampleRate;
  }

  /** Next frame of `samples` samples (default 20 ms). */
  nextFrame(samples = frameSamples(this.sampleRate)): Int16Array {
    const out = new Int16Array(samples);
    const peak = dbfsToPeak(this.dbfs);
    const step = (2 * Math.PI * this.hz) / this.sampleRate;
    let phase = this.phase;
    for (let i = 0; i < samples; i++) {
      out[i] = clampInt16(peak * Math.sin(phase));
      phase += step;
    }
    // Keep the phase small so precision does not decay over long calls.
    this.phase = phase % (2 * Math.PI);
    return out;
  }
}

/** RMS of `pcm` (0 for an empty buffer). */
export function rms(pcm: Int16Array): number {
  if (pcm.length === 0) return 0;
  let sum = 0;
  for (let i = 0; i < pcm.length; i++) {
    const v = pcm[i] as number;
    sum += v * v;
  }
  return Math.sqrt(sum / pcm.length);
}

/**
 * Level of `pcm` in dBFS relative to a full-scale sine (a full-scale sine is
 * 0 dBFS, a full-scale square wave +3 dBFS). Digital silence is `-Infinity`.
 */
export function rmsDbfs(pcm: Int16Array): number {
  const r = rms(pcm);
  if (r === 0) return Number.NEGATIVE_INFINITY;
  return 20 * Math.log10((r * Math.SQRT2) / FULL_SCALE);
}

/** Result of {@link measureTone}. */
export interface ToneMeasurement {
  /** Dominant frequency in Hz (0 for digital silence). */
  hz: number;
  /** RMS level in dBFS relative to a full-scale sine (`-Infinity` for silence). */
  dbfs: number;
}

/** In-place iterative radix-2 FFT; `re`/`im` length must be a power of two. */
function fft(re: Float64Array, im: Float64Array): void {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      const tr = re[i] as number;
      re[i] = re[j] as number;
      re[j] = tr;
      const ti = im[i] as number;
      im[i] = im[j] as number;
      im[j] = ti;
    }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = (-2 * Math.PI) / len;
    const wr = Math.cos(ang);
    const wi = Math.sin(ang);
    const half = len >> 1;
    for (let i = 0; i < n; i += len) {
      let cr = 1;
      let ci = 0;
      for (let k = 0; k < half; k++) {
        const a = i + k;
        const b = a + half;
        const br = re[b] as number;
        const bi = im[b] as number;
        const tr = br * cr - bi * ci;
        const ti = br * ci + bi * cr;
        re[b] = (re[a] as number) - tr;
        im[b] = (im[a] as number) - ti;
        re[a] = (re[a] as number) + tr;
        im[a] = (im[a] as number) + ti;
        const ncr = cr * wr - ci * wi;
        ci = cr * wi + ci * wr;
        cr = ncr;
      }
    }
  }
}

/**
 * Measure the dominant tone in `pcm`.
 *
 * Frequency: Hann-windowed FFT (up to 2^17 samples, zero-padded to at least
 * 2^15 so the bin spacing is ≤ 1.5 Hz at 48 kHz), peak bin refined by
 * Gaussian (log-parabolic) interpolation. A 1 kHz tone over ≥ 0.5 s at 48 kHz
 * is measured to well within ±2 Hz.
 *
 * Level: RMS of the whole buffer in dBFS (see {@link rmsDbfs}); trim leading
 * silence first (e.g. {@link trimSilence}) when measuring recorded audio.
 */
export function measureTone(pcm: Int16Array, sampleRate: number): ToneMeasurement {
  const dbfs = rmsDbfs(pcm);
  if (!Number.isFinite(dbfs) || pcm.length < 4) return { hz: 0, dbfs };
  const maxLen = 1 << 17;
  const src = pcm.length > maxLen ? pcm.subarray(0, maxLen) : pcm;
  let n = 1 << 15;
  while (n < src.length) n <<= 1;
  const re = new Float64Array(n);
  const im = new Float64Array(n);
  const m = src.length;
  for (let i = 0; i < m; i++) {
    const w = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (m - 1));
    re[i] = (src[i] as number) * w;
  }
  fft(re, im);
  const half = n >> 1;
  let peak = 1;
  let peakMag = -1;
  const mag = new Float64Array(half);
  for (let k = 0; k < half; k++) {
    const v = Math.hypot(re[k] as number, im[k] as number);
    mag[k] = v;
    // Skip DC and the first bin so an offset does not win.
    if (k >= 2 && v > peakMag) {
      peakMag = v;
      peak = k;
    }
  }
  let delta = 0;
  if (peak > 0 && peak < half - 1) {
    const a = Math.log((mag[peak - 1] as number) + 1e-12);
    const b = Math.log((mag[peak] as number) + 1e-12);
    const c = Math.log((mag[peak + 1] as number) + 1e-12);
    const denom = a - 2 * b + c;
    if (denom !== 0) delta = (0.5 * (a - c)) / denom;
  }
  return { hz: ((peak + delta) * sampleRate) / n, dbfs };
}

/**
 * Drop leading and trailing samples quieter than `thresholdDbfs`, judged per
 * `windowMs` window (default 20 ms), so a recording that starts with silence
 * can be measured for level. Returns an empty array if nothing is louder.
 */
export function trimSilence(pcm: Int16Array, sampleRate: number, thresholdDbfs = -50, windowMs = 20): Int16Array {
  const win = Math.max(1, frameSamples(sampleRate, windowMs));
  let start = -1;
  let end = -1;
  for (let i = 0; i < pcm.length; i += win) {
    const level = rmsDbfs(pcm.subarray(i, Math.min(pcm.length, i + win)));
    if (level > thresholdDbfs) {
      if (start < 0) start = i;
      end = Math.min(pcm.length, i + win);
    }
  }
  return start < 0 ? new Int16Array(0) : pcm.slice(start, end);
}

/**
 * Accumulates PCM frames (e.g. decoded 20 ms Opus frames) into one buffer.
 */
export class PcmRecorder {
  readonly sampleRate: number;
  private readonly maxSamples: number;
  private chunks: Int16Array[] = [];
  private total = 0;

  /**
   * @param sampleRate - sample rate of the frames pushed (default 48000)
   * @param maxSeconds - cap on recorded audio; later frames are dropped (default 600 s)
   */
  constructor(sampleRate = 48_000, maxSeconds = 600) {
    this.sampleRate = sampleRate;
    this.maxSamples = Math.floor(sampleRate * maxSeconds);
  }

  /** Append a frame (copied). Frames beyond the cap are dropped. */
  push(frame: Int16Array): void {
    const room = this.maxSamples - this.total;
    if (room <= 0 || frame.length === 0) return;
    const copy = frame.slice(0, Math.min(room, frame.length));
    this.chunks.push(copy);
    this.total += copy.length;
  }

  /** Number of samples recorded so far. */
  get length(): number {
    return this.total;
  }

  /** Recorded duration in milliseconds. */
  get durationMs(): number {
    return (this.total * 1000) / this.sampleRate;
  }

  /** All recorded samples as one contiguous buffer. */
  toInt16Array(): Int16Array {
    const out = new Int16Array(this.total);
    let off = 0;
    for (const c of this.chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }

  /** Discard everything recorded. */
  clear(): void {
    this.chunks = [];
    this.total = 0;
  }
}

/** What a listener heard over a recent window: the output of {@link RecentAudio.heard}. */
export interface HeardAudio {
  /** Whether the window is louder than the audibility threshold (default -50 dBFS). */
  audible: boolean;
  /** Dominant frequency in Hz, rounded to 1 Hz; 0 when nothing audible was heard. */
  hz: number;
  /** RMS level in dBFS (full-scale sine = 0), rounded to 0.1; `null` for digital silence or no audio. */
  dbfs: number | null;
  /** Milliseconds of audio the measurement covers (less than the window early in a call). */
  ms: number;
}

/**
 * The last `windowMs` of audio a listener received (a ring buffer of PCM), measured on demand with
 * {@link measureTone}: "what does the simulated user hear right now".
 */
export class RecentAudio {
  readonly sampleRate: number;
  private readonly ring: Int16Array;
  private write = 0;
  private filled = 0;

  /**
   * @param sampleRate - sample rate of the frames pushed (default 48000)
   * @param windowMs - how much of the most recent audio is kept and measured (default 1000 ms)
   */
  constructor(sampleRate = 48_000, windowMs = 1000) {
    if (!(sampleRate > 0) || !(windowMs > 0)) {
      throw new RangeError(`invalid window ${windowMs} ms at ${sampleRate} Hz sample rate`);
    }
    this.sampleRate = sampleRate;
    this.ring = new Int16Array(Math.max(1, Math.round((sampleRate * windowMs) / 1000)));
  }

  /** Append a frame; the oldest samples beyond the window are overwritten. */
  push(frame: Int16Array): void {
    const size = this.ring.length;
    const src = frame.length > size ? frame.subarray(frame.length - size) : frame;
    const first = Math.min(src.length, size - this.write);
    this.ring.set(src.subarray(0, first), this.write);
    this.ring.set(src.subarray(first), 0);
    this.write = (this.write + src.length) % size;
    this.filled = Math.min(size, this.filled + src.length);
  }

  /** The kept samples, oldest first. */
  samples(): Int16Array {
    const size = this.ring.length;
    if (this.filled < size) return this.ring.slice(0, this.filled);
    const out = new Int16Array(size);
    out.set(this.ring.subarray(this.write), 0);
    out.set(this.ring.subarray(0, this.write), size - this.write);
    return out;
  }

  /**
   * Dominant frequency and level of the kept window.
   * @param audibleDbfs - below this level the window counts as silence (`hz` 0)
   */
  heard(audibleDbfs = -50): HeardAudio {
    const pcm = this.samples();
    const ms = Math.round((pcm.length * 1000) / this.sampleRate);
    const { hz, dbfs } = measureTone(pcm, this.sampleRate);
    const audible = Number.isFinite(dbfs) && dbfs > audibleDbfs;
    return {
      audible,
      hz: audible ? Math.round(hz) : 0,
      dbfs: Number.isFinite(dbfs) ? Math.round(dbfs * 10) / 10 : null,
      ms,
    };
  }

  /** Forget everything kept. */
  clear(): void {
    this.write = 0;
    this.filled = 0;
  }
}
