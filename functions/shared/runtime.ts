/**
 * Builds the control plane's collaborators from its configuration: AWS clients with timeouts,
 * the stores, the job queue, the Graph client and the logger. Lambda entry points build it once
 * per cold start; the local stack builds it from its own configuration. Same code either way.
 */

import { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { createAwsClients } from '#adapters/aws/aws-clients.ts';
import { DynamoCallStore } from '#adapters/aws/dynamo-call-store.ts';
import { DynamoPermissionReplies, type PermissionReplies } from '#adapters/aws/dynamo-permission-replies.ts';
import { DynamoPermissionStore } from '#adapters/aws/dynamo-permission-store.ts';
import { DynamoWorkerRegistry, type WorkerInfo } from '#adapters/aws/dynamo-workers.ts';
import { SqsCallJobQueue, SqsWorkerSignals } from '#adapters/aws/sqs.ts';
import type { CallJobQueue, CallStore, WorkerSignals } from '#core/calls/call-record.ts';
import type { IntakePolicy } from '#core/calls/intake.ts';
import type { Logger } from '#core/logger.ts';
import { MetaGraphClient } from '#core/meta/graph-client.ts';
import { createMetricsWriter, type MetricsWriter } from '#core/metrics.ts';
import type { CheckBusinessCall } from '#core/outbound/contract.ts';
import { createBusinessCallRules } from '#core/outbound/rules.ts';
import type { PermissionLimits } from '#core/permissions/ledger.ts';
import { type MetaPermissionsApi, MetaPermissionsClient } from '#core/permissions/meta-permissions.ts';
import type { PermissionStore } from '#core/permissions/store.ts';
import type { ControlPlaneConfig } from './config.ts';

/** Tracer of the control plane's Lambdas; disabled outside Lambda (local mode, tests). */
export const tracer = new Tracer({ serviceName: 'wa-sip-bridge' });

/** Everything the handlers need. */
export interface ControlPlaneRuntime {
  readonly config: ControlPlaneConfig;
  readonly calls: CallStore;
  readonly permissionReplies: PermissionReplies;
  /** The call-permission ledger. */
  readonly permissions: PermissionStore;
  /** Meta's permission endpoints (`call_permissions`, permission-request messages). */
  readonly metaPermissions: MetaPermissionsApi;
  /** The rules checked before every business-initiated call. */
  readonly checkBusinessCall: CheckBusinessCall;
  readonly jobs: CallJobQueue;
  readonly signals: WorkerSignals;
  /** The workers table: every registered media worker's last heartbeat. */
  readonly workers: { list(): Promise<WorkerInfo[]> };
  readonly meta: MetaGraphClient;
  readonly policy: IntakePolicy;
  readonly logger: Logger;
  /** CloudWatch metrics (EMF); a no-op without `METRICS_STAGE`. */
  readonly metrics: MetricsWriter;
  /** Meta's permission limits the ledger applies (META_PERMISSION_LIMITS); the runtime is the ledger's deps. */
  readonly limits: PermissionLimits;
  readonly now: () => number;
}

/** Options for tests and the local stack. */
export interface RuntimeOverrides {
  readonly now?: () => number;
  readonly logger?: Logger;
  /** Metrics writer (tests record the data points); default: EMF for `METRICS_STAGE`. */
  readonly metrics?: MetricsWriter;
}

/** Builds the runtime. AWS SDK calls time out (connection 1 s, request 3 s) and retry 3 times. */
export function buildControlPlaneRuntime(
  config: ControlPlaneConfig,
  overrides: RuntimeOverrides = {},
): ControlPlaneRuntime {
  const { dynamo, sqs } = createAwsClients(config.aws);
  // X-Ray subsegments for every DynamoDB and SQS call (Powertools Tracer is off outside Lambda).
  tracer.captureAWSv3Client(dynamo);
  tracer.captureAWSv3Client(sqs);
  const logger = overrides.logger ?? powertoolsLogger(config.logLevel);
  const now = overrides.now ?? Date.now;
  const calls = new DynamoCallStore(dynamo, config.tables.calls);
  const permissions = new DynamoPermissionStore(dynamo, config.tables.permissions);
  const metaPermissions = new MetaPermissionsClient({
    baseUrl: config.meta.graphUrl,
    accessToken: config.meta.accessToken,
    timeoutMs: config.meta.graphTimeoutMs,
  });
  return {
    config,
    calls,
    permissionReplies: new DynamoPermissionReplies(dynamo, config.tables.permissions),
    permissions,
    metaPermissions,
    checkBusinessCall: createBusinessCallRules({
      permissions,
      // A ledger miss is checked with Meta's call_permissions before a call is refused (REF26).
      meta: {
        api: metaPermissions,
        timeoutMs: config.meta.graphTimeoutMs,
        staleAfterMs: config.businessCalls.reconcileAfterMs,
      },
      calls,
      lines: [config.line],
      blockedCountries: config.businessCalls.blockedCountries,
      maxConcurrentCalls: config.maxConcurrentCalls,
      limits: config.permissionLimits,
      now,
    }),
    jobs: new SqsCallJobQueue(sqs, config.callJobsQueueUrl),
    signals: new SqsWorkerSignals(sqs),
    workers: new DynamoWorkerRegistry(dynamo, config.tables.workers),
    meta: new MetaGraphClient({
      baseUrl: config.meta.graphUrl,
      accessToken: config.meta.accessToken,
      timeoutMs: config.meta.graphTimeoutMs,
    }),
    policy: {
      lines: [config.line],
      ...(config.businessHours ? { businessHours: config.businessHours } : {}),
      afterHours: config.afterHours,
      maxConcurrentCalls: config.maxConcurrentCalls,
      staleAfterMs: config.staleConnectMs,
      admissionLeaseMs: 10_000,
      finishedRetentionSeconds: config.finishedRetentionSeconds,
    },
    logger,
    metrics: overrides.metrics ?? createMetricsWriter(config.metricsStage),
    limits: config.permissionLimits,
    now,
  };
}

/** Adapts Powertools Logger to the domain's {@link Logger}. */
export function powertoolsLogger(level: ControlPlaneConfig['logLevel'], serviceName = 'wa-sip-bridge'): Logger {
  return adapt(new PowertoolsLogger({ serviceName, logLevel: level }));
}

function adapt(l: PowertoolsLogger): Logger {
  return {
    debug: (m, f) => l.debug(m, f ?? {}),
    info: (m, f) => l.info(m, f ?? {}),
    warn: (m, f) => l.warn(m, f ?? {}),
    error: (m, f) => l.error(m, f ?? {}),
    child: (fields) => {
      const c = l.createChild();
      c.appendKeys(fields as Record<string, string>);
      return adapt(c);
    },
  };
}
