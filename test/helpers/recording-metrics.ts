/**
 * A metrics writer that records every data point, for asserting what the worker reports.
 */
import { expect } from 'vitest';
import type { MetricDimensions, MetricName, MetricsWriter } from '#core/metrics.ts';

/** One emitted data point of one metric. */
export interface RecordedPoint {
  readonly name: MetricName;
  readonly value: number;
  readonly dimensions: MetricDimensions;
}

/** Records data points; `mark()` then `since(mark)` isolates what one story emitted. */
export class RecordingMetrics implements MetricsWriter {
  readonly points: RecordedPoint[] = [];

  emit(values: Partial<Record<MetricName, number>>, dimensions: MetricDimensions = {}): void {
    for (const [name, value] of Object.entries(values) as Array<[MetricName, number]>)
      this.points.push({ name, value, dimensions });
  }

  /** A position in the record, for {@link since}. */
  mark(): number {
    return this.points.length;
  }

  /** The points of `name` emitted since `mark`. */
  since(mark: number, name: MetricName): RecordedPoint[] {
    return this.points.slice(mark).filter((p) => p.name === name);
  }
}

/** What the worker reported about the calls it ended since a mark: the series the dashboard reads. */
export interface CallMetricsSummary {
  readonly answered: number;
  readonly ended: readonly (string | undefined)[];
  readonly handleTimeSeconds: readonly number[];
  readonly packetLossPercent: { readonly whatsapp: readonly number[]; readonly sip: readonly number[] };
  readonly jitterMs: { readonly whatsapp: readonly number[]; readonly sip: readonly number[] };
}

/** Sums up {@link RecordingMetrics} since `mark` per series. */
export function callMetrics(metrics: RecordingMetrics, mark: number): CallMetricsSummary {
  const values = (name: MetricName, leg?: 'whatsapp' | 'sip') =>
    metrics
      .since(mark, name)
      .filter((p) => leg === undefined || p.dimensions.Leg === leg)
      .map((p) => p.value);
  return {
    answered: values('CallsAnswered').length,
    ended: metrics.since(mark, 'CallsEnded').map((p) => p.dimensions.EndReason),
    handleTimeSeconds: values('HandleTime'),
    packetLossPercent: { whatsapp: values('MediaPacketLoss', 'whatsapp'), sip: values('MediaPacketLoss', 'sip') },
    jitterMs: { whatsapp: values('MediaJitter', 'whatsapp'), sip: values('MediaJitter', 'sip') },
  };
}

/** The summary of one answered call that ended with `reason`, as the worker must report it. */
export function oneAnsweredCall(reason: string): Record<string, unknown> {
  const one = [expect.any(Number)];
  return {
    answered: 1,
    ended: [reason],
    handleTimeSeconds: one,
    packetLossPercent: { whatsapp: one, sip: one },
    jitterMs: { whatsapp: one, sip: one },
  };
}
