/**
 * The project's Lambda function: esbuild-bundled TypeScript on Node 22, arm64, ESM, minified with
 * source maps, X-Ray tracing, Powertools settings, and a log group the stack owns (with retention),
 * executed by a role that may write only to that log group.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Architecture, Runtime, Tracing } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { METRICS_NAMESPACE } from '#core/metrics.ts';

/** Properties of {@link NodeFunction}. */
export interface NodeFunctionProps {
  /** Path of the handler module (exports `handler`). */
  readonly entry: string;
  /** Powertools service name, also the logger's `service` key. */
  readonly serviceName: string;
  /** Environment besides the Powertools and Node settings. @default {} */
  readonly environment?: Record<string, string>;
  /** @default Duration.seconds(10) */
  readonly timeout?: Duration;
  /** @default 512 */
  readonly memorySize?: number;
  /** Retention of the function's log group. @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
  /**
   * What happens to the log group when the stack is deleted (the retention still expires it).
   * @default RemovalPolicy.DESTROY
   */
  readonly logRemovalPolicy?: RemovalPolicy;
}

/** A `NodejsFunction` with the project's fixed runtime, bundling, tracing and logging. */
export class NodeFunction extends NodejsFunction {
  /** The function's own log group. */
  public readonly logs: LogGroup;

  constructor(scope: Construct, id: string, props: NodeFunctionProps) {
    const logs = new LogGroup(scope, `${id}Logs`, {
      retention: props.logRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy: props.logRemovalPolicy ?? RemovalPolicy.DESTROY,
    });
    // An explicit role instead of AWSLambdaBasicExecutionRole: logs to this group only.
    const role = new Role(scope, `${id}Role`, {
      assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
      description: `Execution role of ${id}`,
    });
    role.addToPolicy(
      new PolicyStatement({
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [logs.logGroupArn],
      }),
    );
    super(scope, id, {
      entry: props.entry,
      handler: 'handler',
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      memorySize: props.memorySize ?? 512,
      timeout: props.timeout ?? Duration.seconds(10),
      tracing: Tracing.ACTIVE,
      logGroup: logs,
      role,
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        POWERTOOLS_SERVICE_NAME: props.serviceName,
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
        ...props.environment,
      },
      bundling: {
        format: OutputFormat.ESM,
        target: 'node22',
        platform: 'node',
        minify: true,
        sourceMap: true,
        sourcesContent: false,
        mainFields: ['module', 'main'],
        // Some CommonJS dependencies call require() for Node built-ins; ESM needs a shim.
        banner: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
        // The pinned SDK is bundled (not the runtime's), so AWS runs the versions the tests ran.
        externalModules: [],
        forceDockerBundling: false,
      },
    });
    this.logs = logs;
  }
}
