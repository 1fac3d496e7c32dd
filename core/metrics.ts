/**
 * The bridge's own CloudWatch metrics: one namespace, the names and dimensions the Lambdas and the
 * media workers emit (as Embedded Metric Format log lines, which CloudWatch Logs turns into
 * metrics), and the dashboard, alarms and auto scaling read. Kept free of CDK imports so the
 * emitters can import it too.
 *
 * Every metric carries the `Stage` dimension (the deployment stage), so two stages in one account
 * never mix. Emitters:
 *
 * | metric | unit | extra dimensions | emitted by | when |
 * |---|---|---|---|---|
 * | `CallsOffered` | Count | – | webhook | a `connect` created a new call record (not for duplicates) |
 * | `CallsAnswered` | Count | – | media worker | the call reached `answered` |
 * | `CallsEnded` | Count | `EndReason` | webhook (refusals, terminate) and media worker | the call reached `ended`, once per call (the single winner of the conditional write) |
 * | `SetupLatency` | Milliseconds | – | media worker | INVITE sent: time since the connect webhook was received |
 * | `HandleTime` | Seconds | – | media worker | an answered call ended: answer to hang-up |
 * | `MediaPacketLoss` | Percent | `Leg` | media worker | call ended: packets lost / expected on that leg |
 * | `MediaJitter` | Milliseconds | `Leg` | media worker | call ended: mean interarrival jitter on that leg |
 * | `ActiveCalls` | Count | – | media worker | every heartbeat (5 s): calls this worker bridges now |
 * | `WorkerLoad` | Percent | – | media worker | every heartbeat: `100 * ActiveCalls / MAX_CALLS_PER_WORKER` |
 * | `EventLoopLag` | Milliseconds | `MediaThread` | media worker (`MEDIA_THREADS` ≥ 1) | every 5 s per media thread (`0`, `1`, …) and for the main thread (`main`, SIP and call scripts): p99 event-loop delay over those 5 s (`monitorEventLoopDelay`) — what a call's packets wait behind |
 * | `MetaCallErrors` | Count | `MetaCode` | webhook | Meta reported a calling error: an errors-only `calls` change (e.g. 131044 no payment method), or a call's `terminate` carrying `errors[]` (138007, 138019–138023; once per call), one per error |
 * | `WebhookItemsMalformed` | Count | – | webhook | an item of a POST did not have Meta's shape and was skipped (the rest was processed) |
 * | `MetaAccountAlerts` | Count | none (all alerts), and `AlertType` | webhook | an `account_update` ACCOUNT_VIOLATION (one, typed by `violation_type`) or ACCOUNT_RESTRICTION (one per `restriction_type`): calling quality warning or pause (§2.10, §4.6) |
 *
 * The media worker's series (`CallsAnswered`, `CallsEnded`, `HandleTime`, `Media*`) cover all three call
 * kinds (user-, PBX- and API-started); `SetupLatency` only user-initiated calls (it measures from the
 * connect webhook).
 *
 * `ActiveCalls` and `WorkerLoad` must carry *only* `Stage` (no worker id): the Average over a minute of
 * every worker's data points is then the load per worker, which target tracking scales on.
 */

/** CloudWatch namespace of every metric the bridge emits. */
import type { EndReason } from './calls/call-state.ts';

export const METRICS_NAMESPACE = 'WaSipBridge';

/** Metric names. */
export const METRIC = {
  callsOffered: 'CallsOffered',
  callsAnswered: 'CallsAnswered',
  callsEnded: 'CallsEnded',
  setupLatency: 'SetupLatency',
  handleTime: 'HandleTime',
  mediaPacketLoss: 'MediaPacketLoss',
  mediaJitter: 'MediaJitter',
  activeCalls: 'ActiveCalls',
  workerLoad: 'WorkerLoad',
  metaCallErrors: 'MetaCallErrors',
  webhookItemsMalformed: 'WebhookItemsMalformed',
  metaAccountAlerts: 'MetaAccountAlerts',
  eventLoopLag: 'EventLoopLag',
} as const;

/** Dimension names. */
export const DIMENSION = {
  stage: 'Stage',
  endReason: 'EndReason',
  leg: 'Leg',
  metaCode: 'MetaCode',
  alertType: 'AlertType',
  mediaThread: 'MediaThread',
} as const;

/** Values of the `Leg` dimension. */
export const LEGS = ['whatsapp', 'sip'] as const;

/**
 * Values of the `EndReason` dimension: the call record's `endReason` (docs/architecture.md §4).
 * The first group are normal outcomes, `FAILURE_END_REASONS` are the bridge's own failures.
 */
export const END_REASONS = [
  'caller-hung-up',
  'agent-hung-up',
  'terminated-before-connect',
  'meta-terminated',
  'sanctioned-caller',
  'after-hours',
  'over-capacity',
  'number-not-configured',
  'stale-connect',
  'unanswered',
  'rejected-by-user',
  'sip-rejected',
  'meta-refused',
  'meta-connect-timeout',
  'whatsapp-setup-failed',
  'whatsapp-media-failed',
  'no-media-from-bridge',
  'bridge-shutdown',
  'media-failed',
  'unsupported-key-exchange',
  'worker-lost',
  'bridge-error',
] as const satisfies readonly EndReason[];

/** Compile-time check: every end reason the code can produce has a metric series. */
type EndReasonsCovered = Exclude<EndReason, (typeof END_REASONS)[number]> extends never ? true : never;
export const END_REASONS_COVERED: EndReasonsCovered = true;

/**
 * End reasons that mean the bridge failed the caller; the failed-calls alarm counts these.
 * A planned stop (`bridge-shutdown`) is not one; a worker lost mid-call (`worker-lost`) is, and so are
 * Meta's verdicts on the bridge's side of the call: no answer applied in time (138007), no media
 * sent (138021). The user's client failing (138019/138020/138022/138023) is not the bridge's.
 */
export const FAILURE_END_REASONS = [
  'media-failed',
  'unsupported-key-exchange',
  'meta-connect-timeout',
  'no-media-from-bridge',
  'worker-lost',
  'bridge-error',
] as const;

/** Units as EMF writes them. */
export const METRIC_UNIT = {
  CallsOffered: 'Count',
  CallsAnswered: 'Count',
  CallsEnded: 'Count',
  SetupLatency: 'Milliseconds',
  HandleTime: 'Seconds',
  MediaPacketLoss: 'Percent',
  MediaJitter: 'Milliseconds',
  ActiveCalls: 'Count',
  WorkerLoad: 'Percent',
  MetaCallErrors: 'Count',
  WebhookItemsMalformed: 'Count',
  MetaAccountAlerts: 'Count',
  EventLoopLag: 'Milliseconds',
} as const satisfies Record<(typeof METRIC)[keyof typeof METRIC], string>;

/** A metric name of {@link METRIC}. */
export type MetricName = (typeof METRIC)[keyof typeof METRIC];

/** Extra dimensions a data point may carry besides `Stage`. */
export interface MetricDimensions {
  readonly EndReason?: EndReason;
  readonly Leg?: (typeof LEGS)[number];
  /** Meta's error code, e.g. `131044` (M-TRB). */
  readonly MetaCode?: string;
  /** An `account_update` alert: the violation or restriction type, e.g. `RESTRICTED_USER_INITIATED_CALLING`. */
  readonly AlertType?: string;
  /** A media thread's index (`0`, `1`, …) or `main` (the worker's main thread). */
  readonly MediaThread?: string;
}

/**
 * One Embedded Metric Format record: write it as a single JSON line to stdout (Lambda or the ECS
 * `awslogs` driver) and CloudWatch Logs extracts the metrics. All values share the dimension set
 * `Stage` + `dimensions`, exactly what the dashboard, alarms and scaling query.
 *
 * @example process.stdout.write(`${JSON.stringify(emfRecord('prod', { ActiveCalls: 3, WorkerLoad: 3 }))}\n`)
 */
export function emfRecord(
  stage: string,
  values: Partial<Record<MetricName, number>>,
  dimensions: MetricDimensions = {},
  timestamp: number = Date.now(),
): Record<string, unknown> {
  const names = Object.keys(values) as MetricName[];
  return {
    _aws: {
      Timestamp: timestamp,
      CloudWatchMetrics: [
        {
          Namespace: METRICS_NAMESPACE,
          Dimensions: [[DIMENSION.stage, ...Object.keys(dimensions)]],
          Metrics: names.map((Name) => ({ Name, Unit: METRIC_UNIT[Name] })),
        },
      ],
    },
    [DIMENSION.stage]: stage,
    ...dimensions,
    ...values,
  };
}

/** Writes the bridge's metrics. A no-op without a stage. */
export interface MetricsWriter {
  emit(values: Partial<Record<MetricName, number>>, dimensions?: MetricDimensions): void;
}

/**
 * Metrics for `stage` as EMF lines written with `write` (default: stdout, which the Lambda runtime
 * and the awslogs driver ship to CloudWatch). Without a stage nothing is written. Powertools
 * Metrics is not used for these: its `singleMetric()` adds a `service` dimension, and a series with
 * an extra dimension is a different series, invisible to the dashboard, alarms and scaling policy.
 */
export function createMetricsWriter(
  stage: string | undefined,
  write: (line: string) => void = (l) => process.stdout.write(l),
): MetricsWriter {
  if (!stage) return { emit() {} };
  return {
    emit(values, dimensions = {}) {
      write(`${JSON.stringify(emfRecord(stage, values, dimensions))}\n`);
    },
  };
}
