/**
 * The local stack: the whole product on one machine. Embedded DynamoDB and SQS, an HTTP gateway
 * that feeds API Gateway v2 events to the same handlers that run in Lambda, the Meta simulator
 * (unless a real Graph API is configured) and, from the media-worker issue on, a media worker.
 */

import type { Logger } from '#core/logger.ts';
import { createControlApiHandler } from '#functions/control-api/handler.ts';
import { runSettingsSync } from '#functions/settings-sync/handler.ts';
import { loadControlPlaneConfig } from '#functions/shared/config.ts';
import { buildControlPlaneRuntime, type ControlPlaneRuntime } from '#functions/shared/runtime.ts';
import { createWebhookHandler } from '#functions/webhook/handler.ts';
import type { MetaSimulator } from '#simulator/simulator.ts';
import type { LocalConfig } from './config.ts';
import { startDrachtioServer } from './drachtio-server.ts';
import { type LocalAws, startLocalAws } from './emulators.ts';
import { type HttpGateway, type LambdaHandler, startHttpGateway } from './http-gateway.ts';
import { SipAgent, type SipAgentOptions } from './sip-agent.ts';
import { startWorkerProcess, type WorkerHandle } from './worker-process.ts';

/** Options of {@link startLocalStack}. */
export interface LocalStackOptions {
  readonly config: LocalConfig;
  /** Clock of the control plane (tests move it). */
  readonly now?: () => number;
  readonly logger?: Logger;
  /** Options passed to the simulator (timers, clock…). */
  readonly simulator?: Record<string, unknown>;
  /**
   * How to run the media worker: a child process (like ECS runs it; `npm start`), in this process
   * (tests), or not at all. @default 'child'
   */
  readonly worker?: 'child' | 'in-process' | 'none';
  /** Worker settings overriding the local defaults (e.g. `CODEC_ORDER`). */
  readonly workerEnv?: Record<string, string>;
  /** pino logger of an in-process worker. */
  readonly workerLogger?: import('pino').Logger;
  /** Business-call rules for an in-process worker (default: the worker builds the real ones). */
  readonly checkBusinessCall?: import('#core/outbound/contract.ts').CheckBusinessCall;
  /** Metrics writer of an in-process worker (default: EMF lines for the configured stage). */
  readonly workerMetrics?: import('#worker/ops/metrics.ts').WorkerMetrics;
  /** Options of the built-in SIP agent, started when no `SIP_TARGET_URI` is configured. */
  readonly agent?: SipAgentOptions;
  /**
   * Run the settings sync once at start (`npm start` does, like the deploy trigger in AWS): BUSINESS_HOURS and
   * VOICEMAIL are pushed to the Graph API (the simulator) as `call_hours` / `voicemail`. @default false
   */
  readonly syncCallSettings?: boolean;
  /** Metrics writer of the control plane (tests record the data points). */
  readonly metrics?: import('#core/metrics.ts').MetricsWriter;
}

/** A running local stack. */
export interface LocalStack {
  /** Base URL of the HTTP API (webhook and control API). */
  readonly url: string;
  readonly webhookUrl: string;
  readonly aws: LocalAws;
  readonly runtime: ControlPlaneRuntime;
  /** The Meta simulator, unless a real Graph API is configured. */
  readonly simulator?: MetaSimulator;
  readonly graphUrl: string;
  /** The built-in SIP agent, when no `SIP_TARGET_URI` is configured. */
  readonly agent?: SipAgent;
  /** The media worker, unless `worker: 'none'`. */
  readonly worker?: WorkerHandle;
  /** Where the worker sends its INVITEs. */
  readonly sipTargetUri: string;
  /** Stops everything; idempotent. */
  stop(): Promise<void>;
}

/** Starts the local stack. */
export async function startLocalStack(options: LocalStackOptions): Promise<LocalStack> {
  const { config } = options;
  const stoppers: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stoppers.reverse().splice(0)) await stop().catch(() => undefined);
  };
  try {
    const aws = await startLocalAws();
    stoppers.push(() => aws.stop());

    let webhook: LambdaHandler | undefined;
    let controlApi: LambdaHandler | undefined;
    const gateway: HttpGateway = await startHttpGateway(
      [
        { method: 'ANY', path: '/webhook', handler: () => webhook },
        { method: 'ANY', path: /^\/(v1\/|healthz$|openapi\.json$)/, handler: () => controlApi },
      ],
      { host: config.host, port: config.port },
    );
    stoppers.push(() => gateway.stop());
    const webhookUrl = `${gateway.url}/webhook`;

    let simulator: MetaSimulator | undefined;
    let graphUrl: string;
    let accessToken: string;
    if (config.meta.external) {
      graphUrl = config.meta.external.graphUrl;
      accessToken = config.meta.external.accessToken;
    } else {
      accessToken = 'local-simulator-token';
      // Loaded only when needed: a stack talking to a real Graph API never loads the simulator.
      const { MetaSimulator } = await import('#simulator/simulator.ts');
      simulator = await MetaSimulator.start({
        host: config.host,
        port: config.simulatorPort,
        accessToken,
        appSecret: config.meta.appSecret,
        verifyToken: config.meta.verifyToken,
        webhookUrl,
        business: {
          wabaId: config.meta.wabaId,
          phoneNumberId: config.meta.phoneNumberId,
          displayPhoneNumber: config.meta.businessNumber,
        },
        // A sandbox/test number: the simulated Meta applies the same relaxed limits (OVR26).
        ...(config.controlPlane.META_PERMISSION_LIMITS === 'sandbox' ? { sandbox: true } : {}),
        ...(options.simulator ?? {}),
      });
      const sim = simulator;
      stoppers.push(() => sim.stop());
      graphUrl = simulator.graphUrl;
    }

    const controlPlaneConfig = loadControlPlaneConfig({
      ...config.controlPlane,
      // The simulator's WABA starts with this permission-request template (its default templates).
      PERMISSION_REQUEST_TEMPLATE:
        config.controlPlane.PERMISSION_REQUEST_TEMPLATE ?? (simulator ? 'call_permission_request:en' : undefined),
      META_APP_SECRET: config.meta.appSecret,
      META_VERIFY_TOKEN: config.meta.verifyToken,
      CONTROL_API_KEY: config.controlApiKey,
      META_PHONE_NUMBER_ID: config.meta.phoneNumberId,
      META_BUSINESS_NUMBER: config.meta.businessNumber,
      META_GRAPH_URL: graphUrl,
      META_ACCESS_TOKEN: accessToken,
      CALLS_TABLE: aws.tables.calls,
      PERMISSIONS_TABLE: aws.tables.permissions,
      WORKERS_TABLE: aws.tables.workers,
      CALL_JOBS_QUEUE_URL: aws.queues.callJobs,
      AWS_REGION: aws.region,
      DYNAMODB_ENDPOINT: aws.dynamodbEndpoint,
      SQS_ENDPOINT: aws.sqsEndpoint,
      LOG_LEVEL: config.logLevel,
    });
    const runtime = buildControlPlaneRuntime(controlPlaneConfig, {
      ...(options.now ? { now: options.now } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.metrics ? { metrics: options.metrics } : {}),
    });
    webhook = createWebhookHandler(runtime) as unknown as LambdaHandler;
    if (options.syncCallSettings)
      await runSettingsSync(controlPlaneConfig, { logger: runtime.logger, now: runtime.now });
    controlApi = createControlApiHandler(runtime) as unknown as LambdaHandler;

    let agent: SipAgent | undefined;
    if (!config.sip.targetUri) {
      agent = await SipAgent.start({
        address: config.sip.agentAddress,
        port: config.sip.agentPort,
        ...(options.agent ?? {}),
      });
      const a = agent;
      stoppers.push(() => a.stop());
    }
    const sipTargetUri = config.sip.targetUri ?? agent!.uri;

    let worker: WorkerHandle | undefined;
    if ((options.worker ?? 'child') !== 'none') {
      // SIP_STACK=drachtio with DRACHTIO_SERVER_BIN: the SIP sockets belong to a drachtio-server we start.
      let drachtioEnv: Record<string, string> = {};
      if (config.worker.SIP_STACK === 'drachtio' && config.drachtioServerBin) {
        const server = await startDrachtioServer('127.0.0.1', config.sip.workerPort, config.drachtioServerBin);
        stoppers.push(() => server.stop());
        drachtioEnv = {
          DRACHTIO_HOST: server.host,
          DRACHTIO_PORT: String(server.port),
          DRACHTIO_SECRET: server.secret,
        };
      }
      worker = await startWorkerProcess(
        options.worker === 'in-process' ? 'in-process' : 'child',
        {
          ...config.worker,
          WORKER_ID: 'local-worker-1',
          SIP_TARGET_URI: sipTargetUri,
          SIP_BIND_ADDRESS: '127.0.0.1',
          SIP_PORT: String(config.sip.workerPort),
          RTP_BIND_ADDRESS: '127.0.0.1',
          META_GRAPH_URL: graphUrl,
          META_ACCESS_TOKEN: accessToken,
          META_PHONE_NUMBER_ID: config.meta.phoneNumberId,
          META_BUSINESS_NUMBER: config.meta.businessNumber,
          // The built-in SIP agent doubles as the PBX that starts business-initiated calls.
          PBX_ALLOWED_SOURCES: config.worker.PBX_ALLOWED_SOURCES ?? `${config.sip.agentAddress}/32`,
          PERMISSIONS_TABLE: aws.tables.permissions,
          CALLS_TABLE: aws.tables.calls,
          WORKERS_TABLE: aws.tables.workers,
          CALL_JOBS_QUEUE_URL: aws.queues.callJobs,
          AWS_REGION: aws.region,
          DYNAMODB_ENDPOINT: aws.dynamodbEndpoint,
          SQS_ENDPOINT: aws.sqsEndpoint,
          LOG_LEVEL: config.logLevel.toLowerCase(),
          // local-aws-sqs answers a long poll only with a full batch (AWS answers at the first message).
          SQS_RECEIVE_BATCH: '1',
          ...drachtioEnv,
          ...(options.workerEnv ?? {}),
        },
        {
          inheritedEnv: config.inheritedEnv,
          ...(options.workerLogger ? { logger: options.workerLogger } : {}),
          ...(options.checkBusinessCall ? { checkBusinessCall: options.checkBusinessCall } : {}),
          ...(options.workerMetrics ? { metrics: options.workerMetrics } : {}),
        },
      );
      const w = worker;
      stoppers.push(() => w.stop());
    }

    return {
      url: gateway.url,
      webhookUrl,
      aws,
      runtime,
      ...(simulator ? { simulator } : {}),
      graphUrl,
      ...(agent ? { agent } : {}),
      ...(worker ? { worker } : {}),
      sipTargetUri,
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}
