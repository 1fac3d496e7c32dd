import { describe, expect, it } from 'vitest';
import { DelayHistogram } from '#worker/media/delay-histogram.ts';

describe('DelayHistogram', () => {
  it('reads percentiles as bucket upper edges and merges across calls', () => {
    const a = new DelayHistogram();
    const b = new DelayHistogram();
    expect(a.percentile(0.5)).toBeUndefined();
    for (let i = 0; i < 98; i++) a.record(3.4); // bucket 3 → reads 4 ms
    b.record(19.9);
    b.record(1000); // beyond the range: last bucket
    a.merge(b);
    expect(a.count).toBe(100);
    expect(a.percentile(0.5)).toBe(4);
    expect(a.percentile(0.99)).toBe(20);
    expect(a.percentile(1)).toBe(256);
    a.record(-1);
    expect(a.counts[0]).toBe(1);
  });
});
