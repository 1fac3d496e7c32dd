/**
 * The control plane: Meta's webhook and the control API as Lambda functions behind one HTTP API,
 * throttled, with access logs. The functions get their wiring (tables, queue, settings prefix) as
 * environment variables and read every other setting from SSM at cold start
 * (`adapters/aws/ssm-parameters.ts`).
 */
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { HttpApi, HttpMethod, type HttpStage, LogGroupLogDestination } from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import {
  ANY_RESOURCE_FINDING,
  bindSettings,
  bindTable,
  controlQueueArnPattern,
  controlQueueWildcardFinding,
  settingsWildcardFindings,
} from '../grants.ts';
import { acknowledge } from '../nag.ts';
import type { CallData } from './call-data.ts';
import { NodeFunction } from './node-function.ts';

const root = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));

/** Properties of {@link BridgeApi}. */
export interface BridgeApiProps {
  /** Tables and queues the functions use. */
  readonly data: CallData;
  /** SSM prefix of the stage's settings, e.g. `/wa-sip-bridge/prod`. */
  readonly settingsPrefix: string;
  /** Deployment stage, the `Stage` dimension of the bridge's metrics (`METRICS_STAGE`). */
  readonly stage: string;
  /** Name prefix of the media workers' control queues (the webhook signals their owners). */
  readonly controlQueuePrefix: string;
  /** KMS key of the SecureString settings. @default the AWS managed key `alias/aws/ssm` */
  readonly settingsKeyArn?: string;
  /**
   * Steady-state request rate of the whole API, per second. Meta sends one POST per call event and
   * retries on errors; 50/s is far above a 1000-concurrent-call line.
   * @default 50
   */
  readonly throttleRateLimit?: number;
  /** Burst of the whole API. @default 100 */
  readonly throttleBurstLimit?: number;
  /** Retention of function and access logs. @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
}

/** The HTTP API and its two functions. */
export class BridgeApi extends Construct {
  public readonly api: HttpApi;
  public readonly stage: HttpStage;
  /** `GET|POST /webhook`. */
  public readonly webhook: NodeFunction;
  /** `GET /healthz`, `GET /openapi.json`, `ANY /v1/{proxy+}` (the local gateway routes the same paths). */
  public readonly controlApi: NodeFunction;
  /** Base URL of the API (the `$default` stage). */
  public readonly url: string;
  /** The functions' wiring environment (the settings sync reads the same configuration). */
  public readonly environment: Record<string, string>;

  constructor(scope: Construct, id: string, props: BridgeApiProps) {
    super(scope, id);
    const { data } = props;
    const logRetention = props.logRetention ?? RetentionDays.ONE_MONTH;
    const environment = {
      SSM_PREFIX: props.settingsPrefix,
      METRICS_STAGE: props.stage,
      CALLS_TABLE: data.tables.calls.tableName,
      PERMISSIONS_TABLE: data.tables.permissions.tableName,
      WORKERS_TABLE: data.tables.workers.tableName,
      CALL_JOBS_QUEUE_URL: data.callJobs.queueUrl,
    };
    this.environment = environment;

    this.webhook = new NodeFunction(this, 'Webhook', {
      entry: root('functions/webhook/handler.ts'),
      serviceName: 'webhook',
      environment,
      // Meta waits 20 s for the answer; intake takes milliseconds, a cold start about a second.
      timeout: Duration.seconds(15),
      logRetention,
    });
    this.controlApi = new NodeFunction(this, 'ControlApi', {
      entry: root('functions/control-api/handler.ts'),
      serviceName: 'control-api',
      environment,
      timeout: Duration.seconds(10),
      logRetention,
    });

    // GET /v1/workers lists the live workers (a small table: one item per worker, scanned).
    bindTable(this.controlApi, data.tables.workers, 'readScan');
    for (const fn of [this.webhook, this.controlApi]) {
      bindSettings(fn, this, props.settingsPrefix, props.settingsKeyArn);
      bindTable(fn, data.tables.calls, 'readWrite');
      bindTable(fn, data.tables.permissions, 'readWrite');
      data.callJobs.grantSendMessages(fn);
      // In-call events go straight to the owning worker's control queue.
      fn.addToRolePolicy(
        new PolicyStatement({
          actions: ['sqs:SendMessage'],
          resources: [controlQueueArnPattern(this, props.controlQueuePrefix)],
        }),
      );
    }

    this.api = new HttpApi(this, 'HttpApi', {
      description: 'wa-sip-bridge: Meta webhook and control API',
      createDefaultStage: false,
    });
    const accessLogs = new LogGroup(this, 'AccessLogs', {
      retention: logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.stage = this.api.addStage('DefaultStage', {
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit: props.throttleRateLimit ?? 50, burstLimit: props.throttleBurstLimit ?? 100 },
      accessLogSettings: { destination: new LogGroupLogDestination(accessLogs) },
    });
    const webhook = new HttpLambdaIntegration('WebhookIntegration', this.webhook);
    const control = new HttpLambdaIntegration('ControlApiIntegration', this.controlApi);
    this.api.addRoutes({ path: '/webhook', methods: [HttpMethod.GET, HttpMethod.POST], integration: webhook });
    this.api.addRoutes({ path: '/healthz', methods: [HttpMethod.GET], integration: control });
    this.api.addRoutes({ path: '/openapi.json', methods: [HttpMethod.GET], integration: control });
    this.api.addRoutes({ path: '/v1/{proxy+}', methods: [HttpMethod.ANY], integration: control });
    this.url = this.stage.url;

    acknowledge(
      this.api,
      ['AwsSolutions::AwsSolutions-APIG4'],
      'Meta signs its webhooks (X-Hub-Signature-256, verified over the raw body before anything is parsed; 401 otherwise) and cannot present API Gateway credentials; the control API checks its bearer key (CONTROL_API_KEY, constant-time compare) in the function; /healthz and /openapi.json are public by design (health and the API description, no data).',
    );
    // GET /v1/workers lists the live workers (a small table: one item per worker, scanned).
    bindTable(this.controlApi, data.tables.workers, 'readScan');
    for (const fn of [this.webhook, this.controlApi]) {
      acknowledge(
        fn,
        ['AwsSolutions::AwsSolutions-L1'],
        'Node.js 22 is the runtime the repository, its tests and the local stack run on (node@22 devDependency), so the functions run what was tested. Move to the next LTS together with that devDependency.',
      );
      acknowledge(
        fn.role!,
        [ANY_RESOURCE_FINDING],
        'Tracing.ACTIVE adds xray:PutTraceSegments and xray:PutTelemetryRecords, which have no resource-level permissions.',
      );
      acknowledge(
        fn.role!,
        [controlQueueWildcardFinding(props.controlQueuePrefix)],
        "Each media worker creates its own control queue at start (<prefix>-<workerId>); the webhook may send in-call events to any of this stage's control queues, nothing else.",
      );
      acknowledge(
        fn.role!,
        settingsWildcardFindings(props.settingsPrefix, props.settingsKeyArn),
        "Settings are read by path: every parameter under this stage's prefix and none elsewhere. kms:Decrypt is limited by kms:ViaService=ssm and the PARAMETER_ARN encryption context to that prefix (the AWS managed aws/ssm key has an account-specific id).",
      );
    }
  }
}
