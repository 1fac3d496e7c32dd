/**
 * Composition root of the media worker: builds AWS clients (with timeouts), the SIP port, the call
 * runner and the worker loop from a {@link WorkerConfig}. `main.ts` (ECS task, local child process)
 * and the tests use it.
 */
import { readFileSync } from 'node:fs';
import { utimes, writeFile } from 'node:fs/promises';
import pino, { type Logger } from 'pino';
import { createAwsClients } from '#adapters/aws/aws-clients.ts';
import { DynamoCallStore } from '#adapters/aws/dynamo-call-store.ts';
import { DynamoPermissionStore } from '#adapters/aws/dynamo-permission-store.ts';
import { DynamoWorkerRegistry } from '#adapters/aws/dynamo-workers.ts';
import { wallClock } from '#core/clock.ts';
import { MetaGraphClient } from '#core/meta/graph-client.ts';
import type { CheckBusinessCall } from '#core/outbound/contract.ts';
import { createBusinessCallRules, DEFAULT_BIC_BLOCKED_COUNTRIES } from '#core/outbound/rules.ts';
import { MetaPermissionsClient } from '#core/permissions/meta-permissions.ts';
import { ledgerOutcomes } from '#core/permissions/service.ts';
import { startApiBusinessCall } from './calls/api-business-call.ts';
import { handlePbxInvite } from './calls/pbx-call.ts';
import { createPbxGate } from './calls/pbx-gate.ts';
import type { BusinessCallOutcomes } from './calls/ports.ts';
import { UserCallRunner } from './calls/user-call.ts';
import type { WorkerConfig } from './config.ts';
import { checkOpusBackend } from './media/opus-backend.ts';
import { type WorkerMetrics, workerMetrics } from './ops/metrics.ts';
import { RetirementWatch } from './ops/retirement.ts';
import { SipTargetWatch } from './ops/sip-target-watch.ts';
import { TaskProtection } from './ops/task-protection.ts';
import { reapDeadWorkers } from './reaper.ts';
import { createDrachtioSipPort } from './sip/drachtio/drachtio-adapter.ts';
import { createSipPort } from './sip/sip-adapter.ts';
import type { SipPort } from './sip/sip-port.ts';
import { MediaThreadPool } from './threads/pool.ts';
import { type CallRunner, MediaWorker } from './worker.ts';

/** A running worker and its parts. */
export interface RunningWorker {
  readonly worker: MediaWorker;
  readonly sip: SipPort;
  readonly logger: Logger;
  /** The media threads, when `MEDIA_THREADS` ≥ 1. */
  readonly mediaThreads?: MediaThreadPool;
  /** Stops taking jobs, drains (or ends) calls, closes SIP and clients. Idempotent. */
  stop(options?: { drain?: boolean; timeoutMs?: number }): Promise<void>;
}

/** Starts a media worker. */
export async function startMediaWorker(
  config: WorkerConfig,
  overrides: {
    logger?: Logger;
    pollSeconds?: number;
    /** The business-call rules (permission, countries, limits); required for PBX-started calls. */
    checkBusinessCall?: CheckBusinessCall;
    outcomes?: BusinessCallOutcomes;
    /** Where the worker's metrics go (default: EMF lines on stdout for `config.metricsStage`). */
    metrics?: WorkerMetrics;
    /** How often each media thread reports its event-loop delay (default 5 s). */
    lagIntervalMs?: number;
  } = {},
): Promise<RunningWorker> {
  const logger = (overrides.logger ?? pino({ level: config.logLevel, base: { service: 'media-worker' } })).child({
    workerId: config.workerId,
  });
  // Before anything starts: a worker on libopus's WebAssembly fallback would transcode at a
  // fraction of its capacity without saying so.
  const opus = checkOpusBackend(config.opusAllowWasm);
  if (opus === 'wasm')
    logger.warn('libopus runs as WebAssembly (OPUS_ALLOW_WASM=true): transcoding costs several times the CPU');
  // RFC 4568 §8.1: SDES keys travel in the SDP, so over plain UDP/TCP anyone on the path reads them.
  const plainTargets = config.sip.targets.filter((t) => !/^sips:|;transport=tls\b/i.test(t.uri));
  if ((config.media.srtp ?? 'off') !== 'off' && plainTargets.length > 0) {
    logger.warn(
      { targets: plainTargets.map((t) => t.uri.replace(/^(sips?:)[^@]*@/i, '$1…@')) },
      'SIP_SRTP is on but these targets are reached without TLS: their SRTP keys cross the network in clear',
    );
  }
  // Long polls wait up to 20 s, so the SQS request timeout sits above that.
  const { dynamo, sqs } = createAwsClients({ ...config.aws, sqsRequestTimeoutMs: 25_000 });
  const calls = new DynamoCallStore(dynamo, config.tables.calls);
  // One writer for the worker's own series and every kind of call (user, API- and PBX-started).
  const metrics = overrides.metrics ?? workerMetrics(config.metricsStage);
  // Each call's media on one of MEDIA_THREADS threads (one per vCPU), pinned for its life; 0: here.
  const mediaThreads =
    config.mediaThreads > 0
      ? await MediaThreadPool.start({
          threads: config.mediaThreads,
          maxCalls: config.maxCalls,
          media: config.media,
          logger: logger.child({ component: 'media-threads' }),
          metrics,
          ...(overrides.lagIntervalMs === undefined ? {} : { lagIntervalMs: overrides.lagIntervalMs }),
        })
      : undefined;
  const openMedia = mediaThreads ? { openMedia: mediaThreads.open } : {};
  const sipLogger = logger.child({ component: 'sip' });
  // A start-up that fails past here stops the threads too, or they would keep the process alive.
  const sip: SipPort = await (config.sip.stack.kind === 'drachtio'
    ? // SIP_STACK=drachtio: drachtio-server owns the SIP sockets; the worker is its application.
      createDrachtioSipPort({
        host: config.sip.stack.host,
        port: config.sip.stack.port,
        secret: config.sip.stack.secret,
        fromDomain: config.sip.fromDomain,
        tlsVerify: config.sip.tlsVerify,
        sessionExpiresS: config.sip.sessionExpiresS,
        ...(config.pbxAuth ? { inboundAuth: config.pbxAuth } : {}),
        logger: sipLogger,
      })
    : createSipPort({
        address: config.sip.bindAddress,
        port: config.sip.port,
        transports: config.sip.transports,
        ...(config.sip.tls
          ? {
              tls: {
                port: config.sip.tls.port,
                cert: readFileSync(config.sip.tls.certFile),
                key: readFileSync(config.sip.tls.keyFile),
                ...(config.sip.tls.caFile ? { ca: readFileSync(config.sip.tls.caFile) } : {}),
                rejectUnauthorized: config.sip.tlsVerify,
              },
            }
          : {}),
        fromDomain: config.sip.fromDomain,
        sessionExpiresS: config.sip.sessionExpiresS,
        ...(config.pbxAuth ? { inboundAuth: config.pbxAuth } : {}),
        ...(config.sip.advertisedAddress ? { publicAddress: config.sip.advertisedAddress } : {}),
        logger: sipLogger,
      })
  ).catch(async (error: unknown) => {
    await mediaThreads?.close();
    throw error;
  });
  const meta = new MetaGraphClient({
    baseUrl: config.meta.graphUrl,
    accessToken: config.meta.accessToken,
    timeoutMs: config.meta.timeoutMs,
    optIns: config.meta.optIns,
  });
  // The permission ledger and the business-call rules (the same ones the control API applies).
  const permissions = config.tables.permissions
    ? new DynamoPermissionStore(dynamo, config.tables.permissions)
    : undefined;
  const outcomes: BusinessCallOutcomes | undefined =
    overrides.outcomes ??
    (permissions ? ledgerOutcomes({ permissions, now: Date.now, limits: config.permissionLimits }) : undefined);
  const rules: CheckBusinessCall | undefined =
    overrides.checkBusinessCall ??
    (permissions && config.line
      ? createBusinessCallRules({
          permissions,
          // A ledger miss is checked with Meta's call_permissions before a PBX-started call is refused (REF26).
          meta: {
            api: new MetaPermissionsClient({
              baseUrl: config.meta.graphUrl,
              accessToken: config.meta.accessToken,
              timeoutMs: config.meta.timeoutMs,
            }),
            timeoutMs: config.meta.timeoutMs,
            staleAfterMs: config.permissionReconcileMs,
          },
          calls,
          lines: [config.line],
          blockedCountries: config.bicBlockedCountries ?? DEFAULT_BIC_BLOCKED_COUNTRIES,
          maxConcurrentCalls: config.maxConcurrentCalls,
          limits: config.permissionLimits,
          now: Date.now,
        })
      : undefined);
  let worker: MediaWorker | undefined;
  const owner = () => ({ workerId: config.workerId, controlQueueUrl: worker!.controlQueueUrl! });
  const userCalls = new UserCallRunner({
    config,
    calls,
    meta,
    sip,
    logger,
    metrics,
    ...(outcomes ? { outcomes } : {}),
    ...openMedia,
  });
  const runner: CallRunner = {
    start: (job, context) =>
      job.type === 'bridge-user-call'
        ? userCalls.start(job, context)
        : startApiBusinessCall(
            {
              requestId: job.requestId,
              line: job.line,
              user: job.user,
              mode: job.mode,
              ...(job.sipTarget === undefined ? {} : { sipTarget: job.sipTarget }),
              ...(job.callbackData === undefined ? {} : { callbackData: job.callbackData }),
            },
            {
              config,
              calls,
              meta,
              sip,
              ...(outcomes ? { outcomes } : {}),
              owner,
              // Counted under its request id already; Meta's call id only routes in-call events.
              adopt: (callId, call) => worker!.alias(callId, call),
              logger,
              metrics,
              ...openMedia,
            },
          ),
  };
  const registry = new DynamoWorkerRegistry(dynamo, config.tables.workers);
  const reap = () =>
    reapDeadWorkers({
      selfId: config.workerId,
      registry,
      calls,
      meta,
      sqs,
      logger,
      now: Date.now,
      graceMs: config.deadAfterMs,
      finishedRetentionSeconds: config.finishedRetentionSeconds,
    });
  const protection = config.taskProtection
    ? new TaskProtection({ ...config.taskProtection, logger: logger.child({ component: 'task-protection' }) })
    : undefined;
  // Is the PBX reachable from here? OPTIONS to each target, every 30 s; the heartbeat carries it.
  const targetWatch = new SipTargetWatch({
    port: sip,
    targets: config.sip.targets.map((t) => t.uri),
    clock: wallClock,
    logger: logger.child({ component: 'sip-target-watch' }),
  });
  targetWatch.start();
  worker = new MediaWorker({
    sipTargets: () => targetWatch.results(),
    onLoadChange: (active) => protection?.update(active),
    onHeartbeat: (active, max) => metrics.emit({ ActiveCalls: active, WorkerLoad: (100 * active) / max }),
    workerId: config.workerId,
    maxCalls: config.maxCalls,
    jobsQueueUrl: config.callJobsQueueUrl,
    controlQueueName: `${config.controlQueuePrefix}-${config.workerId}`.replace(/[^\w-]/g, '-').slice(0, 80),
    sqs,
    calls,
    registry,
    reap,
    reapIntervalMs: Math.max(1000, config.deadAfterMs / 2),
    runner,
    logger,
    ...(mediaThreads ? { mediaRoom: () => mediaThreads.room } : {}),
    receiveBatch: config.sqsReceiveBatch,
    ...(overrides.pollSeconds === undefined ? {} : { pollSeconds: overrides.pollSeconds }),
    ...(config.ecs?.deployment ? { deployment: config.ecs.deployment } : {}),
    ...(config.healthFile ? { onHeartbeatWritten: healthFileToucher(config.healthFile) } : {}),
  });
  await worker.start().catch(async (error: unknown) => {
    targetWatch.stop();
    await sip.close();
    await mediaThreads?.close();
    throw error;
  });
  // INVITEs from the PBX start business-initiated calls; without rules or a line, the gate refuses them.
  const gate = createPbxGate(config.line && rules ? config.pbxAllowedSources : []);
  const checkBusinessCall: CheckBusinessCall =
    rules ??
    (async () => ({
      allowed: false,
      reason: 'invalid-request',
      detail: 'business-initiated calls are not configured',
      httpStatus: 403,
      sipStatus: 403,
    }));
  const running = worker;
  sip.onInvite((invite) =>
    handlePbxInvite(invite, {
      config,
      calls,
      meta,
      gate,
      checkBusinessCall,
      ...(outcomes ? { outcomes } : {}),
      owner,
      adopt: (callId, call) => running.adopt(callId, call),
      full: () => running.full,
      logger,
      metrics,
      ...openMedia,
    }),
  );
  // In ECS: retire instead of stall when a deployment supersedes this task or scale-in leaves it surplus.
  const retirement = config.ecs
    ? await startRetirementWatch(config.ecs, config.aws.region, config.workerId, running, registry, logger)
    : undefined;
  let stopped: Promise<void> | undefined;
  return {
    worker: running,
    sip,
    logger,
    ...(mediaThreads ? { mediaThreads } : {}),
    stop(options) {
      stopped ??= (async () => {
        await retirement?.close();
        targetWatch.stop();
        await running.stop(options);
        await mediaThreads?.close();
        await protection?.close();
        await sip.close();
        dynamo.destroy();
        sqs.destroy();
      })();
      return stopped;
    },
  };
}

/**
 * The retirement check of a worker in ECS (ops/retirement.ts): the ECS client is imported here, only
 * in ECS, so local mode and tests do not load it.
 */
async function startRetirementWatch(
  ecs: NonNullable<WorkerConfig['ecs']>,
  region: string,
  workerId: string,
  worker: MediaWorker,
  registry: DynamoWorkerRegistry,
  logger: Logger,
): Promise<RetirementWatch> {
  const [{ ECSClient }, { EcsServiceReader }] = await Promise.all([
    import('@aws-sdk/client-ecs'),
    import('#adapters/aws/ecs-service.ts'),
  ]);
  const reader = new EcsServiceReader(new ECSClient({ region, maxAttempts: 2 }), ecs.cluster, ecs.taskArn);
  const watch = new RetirementWatch({
    workerId,
    service: () => reader.view(),
    workers: () => registry.list(),
    retire: (reason, detail) => {
      logger.info({ reason, ...detail }, 'retiring');
      worker.retire(reason);
    },
    intervalMs: ecs.retirementCheckMs,
    // Two missed heartbeats (5 s each) and a worker no longer counts as live.
    freshMs: 15_000,
    logger: logger.child({ component: 'retirement' }),
    clock: wallClock,
  });
  watch.start();
  return watch;
}

/** Touches `path` (creating it): the container health check reads its age. Never throws. */
function healthFileToucher(path: string): () => Promise<void> {
  return async () => {
    const now = new Date();
    await utimes(path, now, now).catch(() => writeFile(path, '').catch(() => undefined));
  };
}
