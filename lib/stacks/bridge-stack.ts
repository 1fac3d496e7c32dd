/**
 * The wa-sip-bridge stack: call data (tables, queues), the control plane (HTTP API + Lambda), the
 * media workers (ECS Fargate) and observability, for one stage. Env-agnostic: it needs no lookups,
 * so `cdk synth` runs offline without credentials.
 */
import { CfnOutput, Fn, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import type { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { ParameterTier, StringParameter } from 'aws-cdk-lib/aws-ssm';
import type { Construct } from 'constructs';
import { BridgeApi } from '../constructs/bridge-api.ts';
import { CallData } from '../constructs/call-data.ts';
import { MediaWorkers, type MediaWorkersProps } from '../constructs/media-workers.ts';
import { Observability } from '../constructs/observability.ts';
import { SettingsSync } from '../constructs/settings-sync.ts';
import { parameterPrefix, pbxAllowListParameterName, sipTlsSource } from '../settings.ts';

/** Properties of {@link BridgeStack}. */
export interface BridgeStackProps extends StackProps {
  /**
   * Deployment stage: lower-case letters, digits and dashes. Names the SSM prefix
   * `/wa-sip-bridge/<stage>/`, the dashboard, the control queues and the metric dimension.
   * @default 'prod'
   */
  readonly stage?: string;
  /** IPv4 CIDRs the PBX sends SIP from. @default [] (no inbound SIP) */
  readonly pbxSignallingCidrs?: readonly string[];
  /** IPv4 CIDRs the PBX sends RTP from. @default pbxSignallingCidrs */
  readonly pbxMediaCidrs?: readonly string[];
  /** E-mail address for alarm notifications. @default none */
  readonly alarmEmail?: string;
  /** KMS key ARN of the SecureString settings. @default the AWS managed key `alias/aws/ssm` */
  readonly settingsKeyArn?: string;
  /** Removal policy of the tables. @default RemovalPolicy.RETAIN */
  readonly dataRemovalPolicy?: RemovalPolicy;
  /** Fewest media workers (0: none while idle; the first call then waits for a task). @default 2 */
  readonly minWorkers?: number;
  /** Most media workers. @default 10 */
  readonly maxWorkers?: number;
  /** Contact-centre hours: at least `minWorkers` between the `start` and `end` cron schedules (UTC). @default none */
  readonly peakHours?: MediaWorkersProps['peakHours'];
  /** Calls per worker (`MAX_CALLS_PER_WORKER`). @default 100 per vCPU of the worker task (200) */
  readonly maxCallsPerWorker?: number;
  /** CPU architecture of the worker tasks: `arm64` or `x86_64`. @default 'arm64' */
  readonly cpuArchitecture?: MediaWorkersProps['cpuArchitecture'];
  /** vCPUs of a worker task (one media thread each). @default 2 */
  readonly vcpus?: 1 | 2 | 4 | 8;
  /** IPv4 range of the VPC (pick one that does not overlap your networks). @default 10.0.0.0/16 */
  readonly vpcCidr?: string;
  /** What the SIP leg advertises: `public`, `private` (PBX over VPN/Direct Connect) or an IPv4. @default 'public' */
  readonly sipAdvertisedAddress?: string;
  /** Transit Gateway or virtual private gateway id routing to the PBX's ranges. @default none */
  readonly pbxRouteTarget?: string;
  /** An existing VPC: id, public subnets for the workers and their zones. @default a new VPC */
  readonly existingVpc?: MediaWorkersProps['existingVpc'];
  /** The worker image. @default built from the repository's Dockerfile */
  readonly workerImage?: ContainerImage;
  /**
   * SIP over TLS (5061) on the drachtio-server sidecar: a Secrets Manager secret ARN or name, or an
   * SSM SecureString name (`/…`) or ARN, holding the PEM certificate chain followed by the PEM key.
   * @default none — no TLS listener and no 5061 rule
   */
  readonly sipTlsSecret?: string;
  /**
   * Fixed-address mode (`-c staticAddresses=<n>`): a pool of n Elastic IPs the workers claim at
   * start, at least maxWorkers × 2, published as the output `PbxAllowList` and the SSM String
   * `/wa-sip-bridge/<stage>/stack/pbx-allow-list` for the PBX's allow-list.
   * @default none — each task has a changing public IP that no PBX can allow-list
   */
  readonly staticAddresses?: number;
  /** Fixed-address mode: the Route 53 hosted zone id holding {@link sipDomainName}. @default none */
  readonly sipDomainZoneId?: string;
  /**
   * Fixed-address mode: a DNS name (`-c sipDomainName=sip.example.com`) answering with the live
   * workers' pool addresses (health-checked multivalue A records), output as `SipDomainName`: the
   * target of PBX-started calls. Needs {@link sipDomainZoneId} and {@link healthCheckPrefixList}.
   * @default none
   */
  readonly sipDomainName?: string;
  /** The region's `com.amazonaws.<region>.route53-healthchecks` prefix list id (`pl-…`). @default none */
  readonly healthCheckPrefixList?: string;
}

/** The whole bridge in one stack. */
export class BridgeStack extends Stack {
  public readonly stage: string;
  public readonly settingsPrefix: string;
  public readonly data: CallData;
  public readonly api: BridgeApi;
  public readonly workers: MediaWorkers;
  public readonly observability: Observability;
  /** Pushes BUSINESS_HOURS / VOICEMAIL to Meta on deploy and hourly. */
  public readonly settingsSync: SettingsSync;

  constructor(scope: Construct, id: string, props: BridgeStackProps = {}) {
    super(scope, id, props);
    const stage = props.stage ?? 'prod';
    if (!/^[a-z0-9][a-z0-9-]{0,15}$/.test(stage)) {
      throw new TypeError(`stage must be 1-16 lower-case letters, digits or dashes, got ${JSON.stringify(stage)}`);
    }
    this.stage = stage;
    this.settingsPrefix = parameterPrefix(stage);
    const controlQueuePrefix = `wa-sip-bridge-${stage}-worker`;

    this.data = new CallData(this, 'Data', { removalPolicy: props.dataRemovalPolicy ?? RemovalPolicy.RETAIN });
    this.api = new BridgeApi(this, 'Api', {
      data: this.data,
      stage,
      settingsPrefix: this.settingsPrefix,
      controlQueuePrefix,
      ...(props.settingsKeyArn ? { settingsKeyArn: props.settingsKeyArn } : {}),
    });
    this.workers = new MediaWorkers(this, 'Workers', {
      data: this.data,
      stage,
      settingsPrefix: this.settingsPrefix,
      controlQueuePrefix,
      ...(props.settingsKeyArn ? { settingsKeyArn: props.settingsKeyArn } : {}),
      ...(props.pbxSignallingCidrs ? { pbxSignallingCidrs: props.pbxSignallingCidrs } : {}),
      ...(props.pbxMediaCidrs ? { pbxMediaCidrs: props.pbxMediaCidrs } : {}),
      ...(props.minWorkers === undefined ? {} : { minWorkers: props.minWorkers }),
      ...(props.maxWorkers === undefined ? {} : { maxWorkers: props.maxWorkers }),
      ...(props.peakHours === undefined ? {} : { peakHours: props.peakHours }),
      ...(props.maxCallsPerWorker === undefined ? {} : { maxCallsPerWorker: props.maxCallsPerWorker }),
      ...(props.vcpus === undefined ? {} : { vcpus: props.vcpus }),
      ...(props.cpuArchitecture === undefined ? {} : { cpuArchitecture: props.cpuArchitecture }),
      ...(props.vpcCidr === undefined ? {} : { vpcCidr: props.vpcCidr }),
      ...(props.sipAdvertisedAddress === undefined ? {} : { sipAdvertisedAddress: props.sipAdvertisedAddress }),
      ...(props.pbxRouteTarget === undefined ? {} : { pbxRouteTarget: props.pbxRouteTarget }),
      ...(props.existingVpc === undefined ? {} : { existingVpc: props.existingVpc }),
      ...(props.workerImage ? { image: props.workerImage } : {}),
      ...(props.sipTlsSecret ? { sipTls: sipTlsSource(props.sipTlsSecret) } : {}),
      ...(props.staticAddresses === undefined ? {} : { staticAddresses: props.staticAddresses }),
      ...(props.sipDomainZoneId === undefined ? {} : { sipDomainZoneId: props.sipDomainZoneId }),
      ...(props.sipDomainName === undefined ? {} : { sipDomainName: props.sipDomainName }),
      ...(props.healthCheckPrefixList === undefined ? {} : { healthCheckPrefixList: props.healthCheckPrefixList }),
    });
    this.settingsSync = new SettingsSync(this, 'SettingsSync', {
      settingsPrefix: this.settingsPrefix,
      environment: this.api.environment,
      ...(props.settingsKeyArn ? { settingsKeyArn: props.settingsKeyArn } : {}),
    });
    this.observability = new Observability(this, 'Observability', {
      stage,
      data: this.data,
      api: this.api,
      workers: this.workers,
      settingsSync: this.settingsSync.fn,
      ...(props.alarmEmail ? { alarmEmail: props.alarmEmail } : {}),
    });

    new CfnOutput(this, 'ApiUrl', {
      value: this.api.url,
      description: 'Base URL: Meta webhook at <ApiUrl>webhook; npm run smoke -- --url <ApiUrl>',
    });
    new CfnOutput(this, 'SettingsPrefix', {
      value: `${this.settingsPrefix}/`,
      description: 'SSM prefix of the settings',
    });
    new CfnOutput(this, 'Dashboard', { value: this.observability.dashboard.dashboardName });
    new CfnOutput(this, 'WorkerLogGroup', { value: this.workers.logs.logGroupName });
    if (this.workers.pbxAllowList.length > 0) {
      const allowList = Fn.join(',', [...this.workers.pbxAllowList]);
      new CfnOutput(this, 'PbxAllowList', {
        value: allowList,
        description:
          'The media workers’ fixed addresses (SIP and RTP, both ways): allow these on the PBX, SBC or firewall',
      });
      // Below the prefix, one level down: the settings read (GetParametersByPath, not recursive)
      // and preflight never take it for a setting, yet it sits with the stage's parameters.
      new StringParameter(this, 'PbxAllowListParameter', {
        parameterName: pbxAllowListParameterName(stage),
        stringValue: allowList,
        description: `wa-sip-bridge (${stage}): the media workers' fixed addresses, comma-separated (stack-owned)`,
        tier: ParameterTier.STANDARD,
      });
    }
    if (this.workers.sipDomainName) {
      new CfnOutput(this, 'SipDomainName', {
        value: this.workers.sipDomainName,
        description: 'Target of PBX-started calls: answers with the addresses of live workers (health-checked, TTL 60)',
      });
    }
  }
}
