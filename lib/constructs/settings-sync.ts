/**
 * The settings sync (functions/settings-sync): pushes BUSINESS_HOURS and VOICEMAIL to Meta's `call_hours` and
 * `voicemail` (meta-calling-api.md §3.6, review D7/F5). It runs after every deploy (an EventBridge rule on this
 * stack's CloudFormation `CREATE_COMPLETE` / `UPDATE_COMPLETE` event) and hourly (an EventBridge schedule), so an
 * SSM change reaches Meta within the hour and holidays roll into Meta's 20-entry list. A failure (hours Meta
 * cannot express, Meta refusing or unreachable) does not roll the deploy back — an unreachable Graph API must not
 * block a bridge fix — but shows as function errors, alarmed (SettingsSyncErrors in Observability).
 *
 * Not a CDK Trigger: its provider is an extra Lambda with an AWS managed policy, which this stack avoids.
 */
import { fileURLToPath } from 'node:url';
import { Duration, Stack } from 'aws-cdk-lib';
import { Rule, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { ANY_RESOURCE_FINDING, bindSettings, settingsWildcardFindings } from '../grants.ts';
import { acknowledge } from '../nag.ts';
import { NodeFunction } from './node-function.ts';

const root = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));

/** Properties of {@link SettingsSync}. */
export interface SettingsSyncProps {
  /** SSM prefix of the stage's settings. */
  readonly settingsPrefix: string;
  /** KMS key of the SecureString settings. @default the AWS managed key `alias/aws/ssm` */
  readonly settingsKeyArn?: string;
  /** The control plane's wiring environment (the sync reads the same configuration). */
  readonly environment: Record<string, string>;
  /** How often the sync runs besides deploys. @default 1 hour */
  readonly every?: Duration;
  /** Retention of the function's logs. */
  readonly logRetention?: RetentionDays;
}

/** The settings-sync function, its deploy trigger and its schedule. */
export class SettingsSync extends Construct {
  /** The function. */
  public readonly fn: NodeFunction;
  /** The hourly rule. */
  public readonly schedule: Rule;
  /** The after-deploy rule. */
  public readonly onDeploy: Rule;

  constructor(scope: Construct, id: string, props: SettingsSyncProps) {
    super(scope, id);
    this.fn = new NodeFunction(this, 'Function', {
      entry: root('functions/settings-sync/handler.ts'),
      serviceName: 'settings-sync',
      environment: props.environment,
      // Two Graph requests of META_GRAPH_TIMEOUT_MS (≤ 20 s) each, plus the SSM read at start.
      timeout: Duration.seconds(60),
      ...(props.logRetention ? { logRetention: props.logRetention } : {}),
    });
    bindSettings(this.fn, this, props.settingsPrefix, props.settingsKeyArn);

    this.onDeploy = new Rule(this, 'OnDeploy', {
      description: 'wa-sip-bridge: push BUSINESS_HOURS and VOICEMAIL to Meta after each deploy',
      eventPattern: {
        source: ['aws.cloudformation'],
        detailType: ['CloudFormation Stack Status Change'],
        detail: {
          'stack-id': [Stack.of(this).stackId],
          'status-details': { status: ['CREATE_COMPLETE', 'UPDATE_COMPLETE'] },
        },
      },
      targets: [new LambdaFunction(this.fn, { retryAttempts: 2 })],
    });
    this.schedule = new Rule(this, 'Hourly', {
      description: 'wa-sip-bridge: push BUSINESS_HOURS and VOICEMAIL to Meta (call_hours, voicemail)',
      schedule: Schedule.rate(props.every ?? Duration.hours(1)),
      targets: [new LambdaFunction(this.fn, { retryAttempts: 2 })],
    });

    acknowledge(
      this.fn,
      ['AwsSolutions::AwsSolutions-L1'],
      'Node.js 22 is the runtime the repository, its tests and the local stack run on (node@22 devDependency), so the functions run what was tested.',
    );
    acknowledge(
      this.fn.role!,
      [ANY_RESOURCE_FINDING],
      'Tracing.ACTIVE adds xray:PutTraceSegments and xray:PutTelemetryRecords, which have no resource-level permissions.',
    );
    acknowledge(
      this.fn.role!,
      settingsWildcardFindings(props.settingsPrefix, props.settingsKeyArn),
      "Settings are read by path: every parameter under this stage's prefix and none elsewhere, decrypted only through SSM for that prefix.",
    );
  }
}
