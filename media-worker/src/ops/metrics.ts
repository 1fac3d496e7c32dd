/**
 * The worker's CloudWatch metrics: the shared EMF writer of `core/metrics.ts`, where the metric
 * names, units and dimensions the dashboard, alarms and scaling policy use are defined.
 */
export { createMetricsWriter as workerMetrics, type MetricsWriter as WorkerMetrics } from '#core/metrics.ts';
