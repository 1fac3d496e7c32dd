/** The shared metric definitions and the EMF record the emitters write (`core/metrics.ts`). */
import { describe, expect, it } from 'vitest';
import { emfRecord, METRIC, METRIC_UNIT, METRICS_NAMESPACE } from '#core/metrics.ts';

describe('Function: emfRecord', () => {
  it('writes the namespace, the Stage dimension set, units and values as CloudWatch expects', () => {
    const record = emfRecord('prod', { ActiveCalls: 3, WorkerLoad: 3 }, {}, 1_700_000_000_000);

    expect(record).toEqual({
      _aws: {
        Timestamp: 1_700_000_000_000,
        CloudWatchMetrics: [
          {
            Namespace: METRICS_NAMESPACE,
            Dimensions: [['Stage']],
            Metrics: [
              { Name: 'ActiveCalls', Unit: 'Count' },
              { Name: 'WorkerLoad', Unit: 'Percent' },
            ],
          },
        ],
      },
      Stage: 'prod',
      ActiveCalls: 3,
      WorkerLoad: 3,
    });
  });

  it('adds the extra dimensions to the dimension set and the record', () => {
    const record = emfRecord('prod', { CallsEnded: 1 }, { EndReason: 'media-failed' });

    expect(
      (record._aws as { CloudWatchMetrics: Array<{ Dimensions: string[][] }> }).CloudWatchMetrics[0]!.Dimensions,
    ).toEqual([['Stage', 'EndReason']]);
    expect(record.EndReason).toBe('media-failed');
  });

  it('has a unit for every metric', () => {
    for (const name of Object.values(METRIC))
      expect(METRIC_UNIT[name]).toMatch(/^(Count|Milliseconds|Seconds|Percent)$/);
  });
});
