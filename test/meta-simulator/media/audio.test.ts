import { describe, expect, it } from 'vitest';
import { measureTone, PcmRecorder, rmsDbfs, sineFrame, ToneGenerator, trimSilence } from '#simulator/media/audio.ts';

/** `seconds` of continuous 20 ms frames from a ToneGenerator, concatenated. */
function generate(hz: number, dbfs: number, seconds: number, sampleRate = 48_000): Int16Array {
  const gen = new ToneGenerator(hz, dbfs, sampleRate);
  const rec = new PcmRecorder(sampleRate);
  for (let i = 0; i < seconds * 50; i++) rec.push(gen.nextFrame());
  return rec.toInt16Array();
}

describe('ToneGenerator', () => {
  it('produces 20 ms frames: 960 samples at 48 kHz, 160 at 8 kHz', () => {
    expect(new ToneGenerator(1000, -12).nextFrame()).toHaveLength(960);
    expect(new ToneGenerator(1000, -12, 8000).nextFrame()).toHaveLength(160);
  });

  it('is phase-continuous across frames (matches one long sine)', () => {
    const framed = generate(1000, -6, 0.1);
    const whole = sineFrame(1000, -6, 48_000, 0, framed.length);
    let maxDiff = 0;
    for (let i = 0; i < whole.length; i++) maxDiff = Math.max(maxDiff, Math.abs((framed[i] ?? 0) - (whole[i] ?? 0)));
    expect(maxDiff).toBeLessThanOrEqual(1);
  });

  it('defines 0 dBFS as a full-scale sine', () => {
    const pcm = generate(1000, 0, 0.5);
    expect(Math.max(...pcm)).toBe(32767);
    expect(rmsDbfs(pcm)).toBeCloseTo(0, 2);
  });
});

describe('measureTone', () => {
  it('measures a 1000 Hz tone at -12 dBFS over 0.5 s to ±2 Hz and ±0.5 dB', () => {
    const tone = measureTone(generate(1000, -12, 0.5), 48_000);
    expect(Math.abs(tone.hz - 1000)).toBeLessThanOrEqual(2);
    expect(Math.abs(tone.dbfs - -12)).toBeLessThanOrEqual(0.5);
  });

  it('measures 440 Hz at -20 dBFS over 1 s', () => {
    const tone = measureTone(generate(440, -20, 1), 48_000);
    expect(Math.abs(tone.hz - 440)).toBeLessThanOrEqual(2);
    expect(Math.abs(tone.dbfs - -20)).toBeLessThanOrEqual(0.5);
  });

  it('tells close frequencies apart (1000 vs 1010 Hz) and works at 8 kHz', () => {
    expect(Math.abs(measureTone(generate(1010, -12, 0.5), 48_000).hz - 1010)).toBeLessThanOrEqual(2);
    expect(Math.abs(measureTone(generate(1000, -12, 0.5, 8000), 8000).hz - 1000)).toBeLessThanOrEqual(2);
  });

  it('reports digital silence as 0 Hz at -Infinity dBFS', () => {
    expect(measureTone(new Int16Array(48_000), 48_000)).toEqual({ hz: 0, dbfs: Number.NEGATIVE_INFINITY });
    expect(measureTone(new Int16Array(0), 48_000).dbfs).toBe(Number.NEGATIVE_INFINITY);
  });

  it('finds the tone under quieter noise', () => {
    const pcm = generate(1000, -12, 0.5);
    let seed = 1;
    for (let i = 0; i < pcm.length; i++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      pcm[i] = (pcm[i] ?? 0) + Math.round(((seed / 0x7fffffff) * 2 - 1) * 300);
    }
    expect(Math.abs(measureTone(pcm, 48_000).hz - 1000)).toBeLessThanOrEqual(2);
  });
});

describe('trimSilence', () => {
  it('drops leading and trailing silence so the level of the audible part can be measured', () => {
    const tone = generate(1000, -12, 0.5);
    const padded = new Int16Array(tone.length + 48_000);
    padded.set(tone, 24_000);
    expect(rmsDbfs(padded)).toBeLessThan(-14);
    const trimmed = trimSilence(padded, 48_000);
    expect(trimmed.length).toBe(tone.length);
    expect(Math.abs(measureTone(trimmed, 48_000).dbfs - -12)).toBeLessThanOrEqual(0.5);
    expect(trimSilence(new Int16Array(4800), 48_000)).toHaveLength(0);
  });
});

describe('PcmRecorder', () => {
  it('accumulates copies of frames and reports duration', () => {
    const rec = new PcmRecorder(48_000);
    const frame = new Int16Array(960).fill(7);
    rec.push(frame);
    frame.fill(9);
    rec.push(frame);
    expect(rec.length).toBe(1920);
    expect(rec.durationMs).toBe(40);
    const pcm = rec.toInt16Array();
    expect(pcm[0]).toBe(7);
    expect(pcm[1919]).toBe(9);
    rec.clear();
    expect(rec.length).toBe(0);
  });

  it('stops at its cap', () => {
    const rec = new PcmRecorder(1000, 1);
    for (let i = 0; i < 5; i++) rec.push(new Int16Array(300));
    expect(rec.length).toBe(1000);
  });
});
