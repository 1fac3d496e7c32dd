/**
 * The bridge's dashboard and alarms. Alarms notify one SNS topic (subscribe an e-mail address with
 * the `alarmEmail` context, or anything else to the topic output).
 *
 * Thresholds, and why:
 * - **DLQ not empty** (≥ 1 message): a call job failed five receives; the caller was never bridged.
 * - **Call job waiting** (oldest message ≥ 10 s for 2 min): a worker claims a job in well under a
 *   second; waiting means no worker has room or none runs, while Meta rings the caller for 45 s.
 * - **No workers** (running tasks < 1 for 2 min, missing data breaches): nobody can take a call.
 * - **Workers saturated** (average load ≥ 90 % for 5 min): scaling is at its maximum or too slow.
 * - **Failed calls** (≥ 3 in 5 min ending in one of `FAILURE_END_REASONS`: `media-failed`, `meta-connect-timeout`,
 *   `no-media-from-bridge`, `worker-lost`, `bridge-error`): the bridge is losing callers.
 * - **Webhook errors** (API 5xx ≥ 5 in 5 min): Meta redelivers, but persistent 5xx means intake is
 *   broken (settings, permissions, DynamoDB).
 * - **Function errors / throttles** (≥ 3 in 5 min per function).
 * - **Setup latency** (p90 ≥ 3 s for 3 × 5 min): callers hear ringing late; Meta's own budget is
 *   tight (pre-accept before the user gives up).
 * - **Media loss** (average ≥ 5 % for 3 × 5 min): audible degradation on one of the legs.
 * - **Event-loop lag** (the worst thread's p99 ≥ 50 ms for 5 min): packets wait behind a busy
 *   loop; stalls that long are what the pacer rides out, not what a thread should live with.
 * - **Worker CPU** (the busiest task ≥ 85 % for 5 min): the media threads are near saturation.
 */
import { CfnOutput, Duration } from 'aws-cdk-lib';
import {
  Alarm,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type IMetric,
  MathExpression,
  Metric,
  SingleValueWidget,
  TextWidget,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import { DIMENSION, FAILURE_END_REASONS, LEGS, METRIC, METRICS_NAMESPACE } from '#core/metrics.ts';
import type { BridgeApi } from './bridge-api.ts';
import type { CallData } from './call-data.ts';
import type { MediaWorkers } from './media-workers.ts';

/** Properties of {@link Observability}. */
export interface ObservabilityProps {
  readonly stage: string;
  readonly data: CallData;
  readonly api: BridgeApi;
  readonly workers: MediaWorkers;
  /** E-mail address subscribed to the alarm topic. @default no subscription */
  readonly alarmEmail?: string;
  /** The settings-sync function (its errors are alarmed). @default none */
  readonly settingsSync?: IFunction;
}

const FIVE_MINUTES = Duration.minutes(5);

/** Dashboard, alarms and the alarm topic. */
export class Observability extends Construct {
  public readonly dashboard: Dashboard;
  public readonly alarmTopic: Topic;
  /** Every alarm, by construct id. */
  public readonly alarms: Record<string, Alarm> = {};

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const { stage, data, api, workers } = props;
    const bridge = (
      metricName: string,
      statistic: string,
      extra: Record<string, string> = {},
      period = Duration.minutes(1),
    ) =>
      new Metric({
        namespace: METRICS_NAMESPACE,
        metricName,
        dimensionsMap: { [DIMENSION.stage]: stage, ...extra },
        statistic,
        period,
      });

    this.alarmTopic = new Topic(this, 'AlarmTopic', { displayName: `wa-sip-bridge ${stage} alarms`, enforceSSL: true });
    if (props.alarmEmail) this.alarmTopic.addSubscription(new EmailSubscription(props.alarmEmail));
    new CfnOutput(this, 'AlarmTopicArn', { value: this.alarmTopic.topicArn, description: 'SNS topic of the alarms' });

    // --- metrics ---
    const offered = bridge(METRIC.callsOffered, 'Sum', {}, FIVE_MINUTES);
    const answered = bridge(METRIC.callsAnswered, 'Sum', {}, FIVE_MINUTES);
    const answerRate = new MathExpression({
      expression: 'IF(offered > 0, 100 * answered / offered, 0)',
      usingMetrics: { offered, answered },
      label: 'answer rate %',
      period: FIVE_MINUTES,
    });
    const callsByResult = new MathExpression({
      expression: `SEARCH('{${METRICS_NAMESPACE},${DIMENSION.stage},${DIMENSION.endReason}} MetricName="${METRIC.callsEnded}" ${DIMENSION.stage}="${stage}"', 'Sum', 300)`,
      label: '',
      period: FIVE_MINUTES,
    });
    const failedCalls = new MathExpression({
      expression: FAILURE_END_REASONS.map((_, i) => `FILL(f${i}, 0)`).join(' + '),
      usingMetrics: Object.fromEntries(
        FAILURE_END_REASONS.map((r, i) => [
          `f${i}`,
          bridge(METRIC.callsEnded, 'Sum', { [DIMENSION.endReason]: r }, FIVE_MINUTES),
        ]),
      ),
      label: 'failed calls',
      period: FIVE_MINUTES,
    });
    const metaErrorsByCode = new MathExpression({
      expression: `SEARCH('{${METRICS_NAMESPACE},${DIMENSION.stage},${DIMENSION.metaCode}} MetricName="${METRIC.metaCallErrors}" ${DIMENSION.stage}="${stage}"', 'Sum', 300)`,
      label: '',
      period: FIVE_MINUTES,
    });
    const malformedItems = bridge(METRIC.webhookItemsMalformed, 'Sum', {}, FIVE_MINUTES);
    // Every alert, from the series without AlertType the webhook also writes: an alarm cannot use SEARCH.
    const accountAlerts = bridge(METRIC.metaAccountAlerts, 'Sum', {}, FIVE_MINUTES);
    const accountAlertsByType = new MathExpression({
      expression: `SEARCH('{${METRICS_NAMESPACE},${DIMENSION.stage},${DIMENSION.alertType}} MetricName="${METRIC.metaAccountAlerts}" ${DIMENSION.stage}="${stage}"', 'Sum', 300)`,
      label: '',
      period: FIVE_MINUTES,
    });
    const handleTime = bridge(METRIC.handleTime, 'Average', {}, FIVE_MINUTES);
    const setupP50 = bridge(METRIC.setupLatency, 'p50', {}, FIVE_MINUTES);
    const setupP90 = bridge(METRIC.setupLatency, 'p90', {}, FIVE_MINUTES);
    const loss = LEGS.map((leg) => bridge(METRIC.mediaPacketLoss, 'Average', { [DIMENSION.leg]: leg }, FIVE_MINUTES));
    const jitter = LEGS.map((leg) => bridge(METRIC.mediaJitter, 'Average', { [DIMENSION.leg]: leg }, FIVE_MINUTES));
    const activePerWorker = workers.activeCallsPerWorker;
    const workerLoad = bridge(METRIC.workerLoad, 'Average');
    // p99 event-loop delay per media thread (0, 1, …) and the main thread, the worst worker's each minute.
    const eventLoopLag = new MathExpression({
      expression: `SEARCH('{${METRICS_NAMESPACE},${DIMENSION.stage},${DIMENSION.mediaThread}} MetricName="${METRIC.eventLoopLag}" ${DIMENSION.stage}="${stage}"', 'Maximum', 60)`,
      label: '',
      period: Duration.minutes(1),
    });
    const runningTasks = new Metric({
      namespace: 'ECS/ContainerInsights',
      metricName: 'RunningTaskCount',
      dimensionsMap: { ClusterName: workers.cluster.clusterName, ServiceName: workers.service.serviceName },
      statistic: 'Average',
      period: Duration.minutes(1),
    });
    const queueDepth = data.callJobs.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1) });
    const queueAge = data.callJobs.metricApproximateAgeOfOldestMessage({ period: Duration.minutes(1) });
    const dlqDepth = data.callJobsDlq.metricApproximateNumberOfMessagesVisible({
      period: Duration.minutes(1),
      statistic: 'Maximum',
    });
    const api5xx = api.api.metricServerError({ period: FIVE_MINUTES, statistic: 'Sum' });
    const api4xx = api.api.metricClientError({ period: FIVE_MINUTES, statistic: 'Sum' });

    // --- alarms ---
    const alarm = (
      name: string,
      metric: IMetric,
      threshold: number,
      evaluationPeriods: number,
      description: string,
      options: { comparison?: ComparisonOperator; missing?: TreatMissingData } = {},
    ) => {
      const a = new Alarm(this, name, {
        metric,
        threshold,
        evaluationPeriods,
        datapointsToAlarm: evaluationPeriods,
        comparisonOperator: options.comparison ?? ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: options.missing ?? TreatMissingData.NOT_BREACHING,
        alarmDescription: `wa-sip-bridge ${stage}: ${description}`,
      });
      a.addAlarmAction(new SnsAction(this.alarmTopic));
      a.addOkAction(new SnsAction(this.alarmTopic));
      this.alarms[name] = a;
      return a;
    };
    alarm('CallJobsDlqNotEmpty', dlqDepth, 1, 1, 'a call job failed five receives and sits in the DLQ');
    alarm('CallJobWaiting', queueAge, 10, 2, 'the oldest call job waited 10 s or more: no worker has room');
    alarm('NoWorkers', runningTasks, 1, 2, 'no media worker is running', {
      comparison: ComparisonOperator.LESS_THAN_THRESHOLD,
      missing: TreatMissingData.BREACHING,
    });
    alarm('WorkersSaturated', workerLoad, 90, 5, 'workers are at 90 % of MAX_CALLS_PER_WORKER or more');
    alarm('FailedCalls', failedCalls, 3, 1, `three or more calls ended in ${FAILURE_END_REASONS.join(', ')} in 5 min`);
    alarm('ApiServerErrors', api5xx, 5, 1, 'the HTTP API answered 5xx five times or more in 5 min');
    for (const [name, fn] of [
      ['Webhook', api.webhook],
      ['ControlApi', api.controlApi],
    ] as const) {
      alarm(
        `${name}Errors`,
        fn.metricErrors({ period: FIVE_MINUTES, statistic: 'Sum' }),
        3,
        1,
        `${name} function errors`,
      );
      alarm(
        `${name}Throttles`,
        fn.metricThrottles({ period: FIVE_MINUTES, statistic: 'Sum' }),
        3,
        1,
        `${name} function throttled`,
      );
    }
    alarm(
      'MetaAccountAlerts',
      accountAlerts,
      1,
      1,
      "Meta sent an account_update: calling quality warning (ACCOUNT_VIOLATION) or calling paused / call button hidden (ACCOUNT_RESTRICTION); see the webhook's 'Meta calling account alert' log",
    );
    if (props.settingsSync) {
      alarm(
        'SettingsSyncErrors',
        props.settingsSync.metricErrors({ period: Duration.hours(1), statistic: 'Sum' }),
        1,
        1,
        "the settings sync could not push BUSINESS_HOURS / VOICEMAIL to Meta (see its log: the day at fault or Meta's code)",
      );
    }
    alarm('SetupLatencyHigh', setupP90, 3000, 3, 'p90 call setup (webhook to INVITE) at 3 s or more');
    // The worst p99 event-loop delay of any worker's main thread or media thread (an alarm cannot
    // SEARCH: the threads are named, main and 0 … vcpus − 1). Packets wait behind a blocked loop.
    const lagThreads = ['main', ...Array.from({ length: workers.vcpus }, (_, i) => String(i))];
    const worstLag = new MathExpression({
      expression: `MAX([${lagThreads.map((_, i) => `lag${i}`).join(', ')}])`,
      usingMetrics: Object.fromEntries(
        lagThreads.map((t, i) => [`lag${i}`, bridge(METRIC.eventLoopLag, 'Maximum', { [DIMENSION.mediaThread]: t })]),
      ),
      label: 'worst event-loop lag p99 (ms)',
      period: Duration.minutes(1),
    });
    alarm(
      'EventLoopLagHigh',
      worstLag,
      50,
      5,
      "a worker thread's p99 event-loop delay at 50 ms or more for 5 min: audio waits behind it (too many calls per vCPU, or a hot loop)",
    );
    alarm(
      'WorkerCpuHigh',
      workers.service.metricCpuUtilization({ period: Duration.minutes(1), statistic: 'Maximum' }),
      85,
      5,
      'a worker task at 85 % CPU or more for 5 min: media threads are near saturation (scaling too slow, or MAX_CALLS_PER_WORKER too high)',
    );
    loss.forEach((m, i) => {
      const leg = LEGS[i]!;
      alarm(
        `MediaLoss${leg[0]!.toUpperCase()}${leg.slice(1)}`,
        m,
        5,
        3,
        `average packet loss on the ${leg} leg at 5 % or more`,
      );
    });

    // --- dashboard ---
    this.dashboard = new Dashboard(this, 'Dashboard', {
      dashboardName: `wa-sip-bridge-${stage}`,
      defaultInterval: Duration.hours(3),
    });
    this.dashboard.addWidgets(
      new TextWidget({
        markdown: `# wa-sip-bridge ${stage}\nCalls, media quality, workers and queues. Alarms notify the stack's AlarmTopic.`,
        width: 24,
        height: 2,
      }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({ title: 'Calls by result (ended, per 5 min)', left: [callsByResult], width: 12, stacked: true }),
      new GraphWidget({
        title: 'Offered and answered (per 5 min)',
        left: [offered, answered],
        right: [answerRate],
        width: 12,
      }),
    );
    this.dashboard.addWidgets(
      new SingleValueWidget({ title: 'Answer rate %', metrics: [answerRate], width: 6 }),
      new GraphWidget({ title: 'Average handle time (s)', left: [handleTime], width: 6 }),
      new GraphWidget({ title: 'Setup latency, webhook → INVITE (ms)', left: [setupP50, setupP90], width: 12 }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({ title: 'Media packet loss %', left: loss, width: 12 }),
      new GraphWidget({ title: 'Media jitter (ms)', left: jitter, width: 12 }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({ title: 'Worker load', left: [activePerWorker], right: [workerLoad], width: 12 }),
      new GraphWidget({ title: 'Running workers', left: [runningTasks], width: 12 }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({ title: 'Event-loop lag p99 per media thread (ms)', left: [eventLoopLag], width: 12 }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({
        title: 'Call jobs: queue and DLQ depth',
        left: [queueDepth, dlqDepth],
        right: [queueAge],
        width: 12,
      }),
      new GraphWidget({
        title: 'API and functions',
        left: [
          api4xx,
          api5xx,
          api.webhook.metricErrors({ period: FIVE_MINUTES }),
          api.controlApi.metricErrors({ period: FIVE_MINUTES }),
        ],
        right: [api.webhook.metricDuration({ period: FIVE_MINUTES, statistic: 'p90' })],
        width: 12,
      }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({
        title: "Meta's error webhooks by code, and skipped malformed webhook items (per 5 min)",
        left: [metaErrorsByCode],
        right: [malformedItems],
        width: 24,
      }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({
        title: "Meta's account alerts by type: quality warnings and calling restrictions (per 5 min)",
        left: [accountAlertsByType],
        width: 24,
      }),
    );
  }
}
