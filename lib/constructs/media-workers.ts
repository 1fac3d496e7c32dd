/**
 * The media workers: Fargate tasks in public subnets, each with its own public IPv4 address, so
 * WebRTC (ICE, DTLS-SRTP) and SIP/RTP reach it straight from the internet without NAT or a load
 * balancer in the media path. The image entrypoint discovers the task's private address (bind) and
 * public address (advertised in SDP and ICE candidates) at start-up.
 *
 * Security groups: SIP only from the PBX's signalling ranges, RTP only from its media ranges.
 * WebRTC needs no inbound rule: Meta's relay is ICE-lite, so the worker (the controlling agent)
 * sends every connectivity check and the DTLS ClientHello first, and the stateful security group
 * admits the relay's answers and media on that same 5-tuple.
 *
 * SIP runs through a drachtio-server sidecar (issue 14): a second essential container in the task,
 * built from `media-worker/drachtio/Dockerfile` (a pinned drachtio-server release), owns the SIP
 * sockets (5060 UDP/TCP, and TLS on 5061 when a certificate is given); the worker connects to it
 * as a drachtio-srf application on the task's loopback (awsvpc: one network namespace), with a
 * shared secret the stack generates, and starts only once the sidecar is healthy.
 *
 * Fixed addresses (`staticAddresses`, issue 15 item 1): the stack allocates a pool of Elastic IPs
 * tagged `wa-sip-bridge:pool` = stage, and a third, non-essential container (`address-claim`, the
 * worker image) associates a free one with the task's ENI and waits until checkip sees it; drachtio
 * and the worker start only after it exited 0, so they discover the pool address as their public
 * one, and a task that got none never serves. The PBX allow-lists the pool (`pbxAllowList`).
 * With a SIP domain (`sipDomainName` in `sipDomainZoneId`), every pool address gets a Route 53 TCP
 * health check on the SIP port and a multivalue-answer A record gated by it: the name answers with
 * the addresses live workers hold (unassigned addresses fail their checks), the target of
 * PBX-started calls. Route 53's health checkers reach TCP 5060 through their managed prefix list.
 *
 * Scaling tracks the average number of active calls per worker; a worker with calls protects its
 * task from scale-in through the ECS agent (`$ECS_AGENT_URI/task-protection/v1/state`), and on
 * SIGTERM drains within the 120 s Fargate stop timeout.
 */
import { fileURLToPath } from 'node:url';
import { type CfnElement, Duration, RemovalPolicy, Size, Stack, Tags } from 'aws-cdk-lib';
import { Schedule } from 'aws-cdk-lib/aws-applicationautoscaling';
import { Metric } from 'aws-cdk-lib/aws-cloudwatch';
import {
  CfnEIP,
  CfnRoute,
  FlowLog,
  FlowLogDestination,
  type FlowLogOptions,
  FlowLogResourceType,
  FlowLogTrafficType,
  IpAddresses,
  type IVpc,
  Peer,
  Port,
  SecurityGroup,
  SubnetType,
  Vpc,
} from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import {
  AwsLogDriver,
  AwsLogDriverMode,
  type CfnService,
  Cluster,
  ContainerDefinition,
  ContainerDependencyCondition,
  ContainerImage,
  ContainerInsights,
  CpuArchitecture,
  Secret as EcsSecret,
  FargateService,
  FargateTaskDefinition,
  LinuxParameters,
  OperatingSystemFamily,
  Protocol,
} from 'aws-cdk-lib/aws-ecs';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { CfnHealthCheck, CfnRecordSet } from 'aws-cdk-lib/aws-route53';
import { type ISecret, Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { StringParameter } from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import { DIMENSION, METRIC, METRICS_NAMESPACE } from '#core/metrics.ts';
import { ADDRESS_POOL_TAG } from '#worker/ops/address-claim.ts';
import {
  ANY_RESOURCE_FINDING,
  addressPoolWildcardFindings,
  bindAddressPool,
  bindSettings,
  bindTable,
  clusterServicesWildcardFinding,
  clusterTasksWildcardFinding,
  controlQueueArnPattern,
  controlQueueWildcardFinding,
  settingsWildcardFindings,
} from '../grants.ts';
import { acknowledge } from '../nag.ts';
import type { SipTlsSource } from '../settings.ts';
import type { CallData } from './call-data.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Where the worker touches its heartbeat (HEALTH_FILE) in the container. */
export const WORKER_HEALTH_FILE = '/tmp/worker-heartbeat';
/** The container health check: the heartbeat file changed within the last 30 s (six heartbeats). */
export const WORKER_HEALTH_SCRIPT = `process.exit(Date.now()-require('fs').statSync('${WORKER_HEALTH_FILE}').mtimeMs<30000?0:1)`;
const DRACHTIO_CONTEXT = fileURLToPath(new URL('../../media-worker/drachtio', import.meta.url));
/** drachtio-server's application (admin) port, bound to the task's loopback. */
const DRACHTIO_ADMIN_PORT = 9022;
/** Memory reserved for the sidecar (soft limit), MiB, out of the task's memory. */
const DRACHTIO_MEMORY_RESERVATION_MIB = 256;

/** Properties of {@link MediaWorkers}. */
export interface MediaWorkersProps {
  /** Tables and queues the workers use. */
  readonly data: CallData;
  /** Deployment stage (metric dimension). */
  readonly stage: string;
  /** SSM prefix of the stage's settings. */
  readonly settingsPrefix: string;
  /** KMS key of the SecureString settings. @default the AWS managed key `alias/aws/ssm` */
  readonly settingsKeyArn?: string;
  /** Name prefix of the per-worker control queues. */
  readonly controlQueuePrefix: string;
  /**
   * IPv4 CIDRs the PBX sends SIP from (its proxies or SBC). Only these reach the SIP port.
   * @default [] — no inbound SIP; the worker's own INVITEs still get their answers (stateful rules)
   */
  readonly pbxSignallingCidrs?: readonly string[];
  /**
   * IPv4 CIDRs the PBX sends RTP from (media servers may differ from the SIP proxies).
   * @default pbxSignallingCidrs
   */
  readonly pbxMediaCidrs?: readonly string[];
  /** SIP port, UDP and TCP. @default 5060 */
  readonly sipPort?: number;
  /** RTP port range of the SIP leg. @default [20000, 30000] */
  readonly rtpPorts?: readonly [number, number];
  /**
   * vCPUs of a worker task. The worker runs one media thread per vCPU (`MEDIA_THREADS`), so a task
   * uses all of them; task memory is 2 GiB per vCPU (Fargate's minimum for the size). @default 2
   */
  readonly vcpus?: 1 | 2 | 4 | 8;
  /** Calls one media thread (one vCPU) bridges at once. @default 100 */
  readonly callsPerVcpu?: number;
  /** Calls one worker bridges at once (`MAX_CALLS_PER_WORKER`). @default callsPerVcpu × vcpus */
  readonly maxCallsPerWorker?: number;
  /**
   * Average active calls per worker the service scales to hold. Headroom absorbs a burst while
   * a new task starts (about a minute).
   * @default 60 % of maxCallsPerWorker
   */
  readonly targetCallsPerWorker?: number;
  /** Fewest running workers; two survive the loss of one task or AZ. @default 2 */
  readonly minWorkers?: number;
  /** Most running workers. @default 10 */
  readonly maxWorkers?: number;
  /**
   * Contact-centre hours: from `start` to `end` (cron expressions, UTC, e.g. `cron(0 7 ? * MON-FRI *)`)
   * at least `minWorkers` run, so the morning's first calls find warm workers; outside, the fleet's
   * own `minWorkers`. @default none
   */
  readonly peakHours?: { readonly minWorkers: number; readonly start: string; readonly end: string };
  /** Task memory, MiB. @default 2048 × vcpus */
  readonly memoryMiB?: number;
  /** Availability zones of the VPC. @default 2 */
  readonly maxAzs?: number;
  /**
   * What the SIP leg advertises (`SIP_ADVERTISED_ADDRESS` of worker and sidecar): `public` (the
   * task's public IPv4), `private` (its VPC address: a PBX over VPN / Direct Connect), or an IPv4.
   * @default 'public'
   */
  readonly sipAdvertisedAddress?: string;
  /**
   * A Transit Gateway (`tgw-…`) or virtual private gateway (`vgw-…`) that reaches the PBX's ranges
   * (`pbxSignallingCidrs` and `pbxMediaCidrs`): the workers' subnets route those ranges there.
   * @default none — the PBX is reached over the internet
   */
  readonly pbxRouteTarget?: string;
  /**
   * Run in an existing VPC instead of creating one: its id, the public subnets the workers use (a
   * route to an internet gateway: the WhatsApp leg needs a public IPv4) and their zones, in order.
   * Routing to the PBX is then yours (no `pbxRouteTarget`). @default a new VPC
   */
  readonly existingVpc?: {
    readonly vpcId: string;
    readonly publicSubnetIds: readonly string[];
    readonly availabilityZones: readonly string[];
  };
  /** IPv4 range of the VPC, /16 to /24 (one /24-or-smaller public subnet per zone). @default 10.0.0.0/16 */
  readonly vpcCidr?: string;
  /**
   * CPU architecture of the tasks and their images: `arm64` (Graviton, cheaper per vCPU) or `x86_64`.
   * The images build for either without emulation (every RUN runs on the build platform).
   * @default 'arm64'
   */
  readonly cpuArchitecture?: 'arm64' | 'x86_64';
  /** The worker image. @default built from this repository's Dockerfile (linux/arm64) */
  readonly image?: ContainerImage;
  /** The drachtio-server sidecar image. @default built from media-worker/drachtio/Dockerfile (linux/arm64) */
  readonly drachtioImage?: ContainerImage;
  /**
   * Certificate and key for SIP over TLS (one PEM value: certificate chain, then private key).
   * @default none — no TLS listener, no 5061 port or security-group rule
   */
  readonly sipTls?: SipTlsSource;
  /** SIP over TLS port (with {@link sipTls}). @default 5061 */
  readonly sipTlsPort?: number;
  /** Retention of the worker and flow logs. @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
  /**
   * Fixed-address mode: the number of Elastic IPs in the pool the tasks claim from, at least
   * maxWorkers × 2 (a deployment runs the new tasks beside the old: maxHealthyPercent 200).
   * @default none — each task keeps the public IP Fargate gives it (it changes with every task)
   */
  readonly staticAddresses?: number;
  /**
   * Fixed-address mode: the Route 53 hosted zone (`Z…`) that holds {@link sipDomainName}.
   * @default none — no DNS name
   */
  readonly sipDomainZoneId?: string;
  /**
   * Fixed-address mode: a DNS name (e.g. `sip.example.com`, inside {@link sipDomainZoneId}) that
   * answers with the pool addresses whose worker accepts SIP over TCP (one health-checked
   * multivalue A record per address, TTL 60): the stable target of PBX-started calls.
   * @default none — the PBX targets the pool addresses itself
   */
  readonly sipDomainName?: string;
  /**
   * With {@link sipDomainName}: the id (`pl-…`) of this region's AWS-managed prefix list
   * `com.amazonaws.<region>.route53-healthchecks`, admitted to SIP over TCP so the health checks
   * can pass. Regional, and CloudFormation cannot resolve it by name, so it is given (synth stays offline).
   */
  readonly healthCheckPrefixList?: string;
}

/** VPC, cluster, task definition, service, security group and scaling of the media workers. */
export class MediaWorkers extends Construct {
  public readonly vpc: IVpc;
  public readonly cluster: Cluster;
  public readonly securityGroup: SecurityGroup;
  public readonly taskDefinition: FargateTaskDefinition;
  public readonly service: FargateService;
  public readonly logs: LogGroup;
  /** Average active calls per worker (the scaling signal). */
  public readonly activeCallsPerWorker: Metric;
  /** The generated shared secret between the worker and its drachtio-server sidecar. */
  public readonly drachtioSecret: Secret;
  /** vCPUs of a task, and so its media threads (`MEDIA_THREADS`: `0` … `vcpus − 1`). */
  public readonly vcpus: number;
  /** Fixed-address mode: the pool's Elastic IPs. @default [] */
  public readonly addressPool: readonly CfnEIP[] = [];
  /** Fixed-address mode: the pool's public addresses (tokens), what the PBX allow-lists. @default [] */
  public readonly pbxAllowList: readonly string[] = [];
  /** The health-checked DNS name of the pool, when one was given. */
  public readonly sipDomainName?: string;

  constructor(scope: Construct, id: string, props: MediaWorkersProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const logRetention = props.logRetention ?? RetentionDays.ONE_MONTH;
    const sipPort = props.sipPort ?? 5060;
    const sipTlsPort = props.sipTlsPort ?? 5061;
    const [rtpMin, rtpMax] = props.rtpPorts ?? [20000, 30000];
    validateFleet(props);
    if (props.cpuArchitecture !== undefined && !['arm64', 'x86_64'].includes(props.cpuArchitecture)) {
      throw new TypeError(`cpuArchitecture must be arm64 or x86_64, got ${JSON.stringify(props.cpuArchitecture)}`);
    }
    const x86 = props.cpuArchitecture === 'x86_64';
    const platform = x86 ? Platform.LINUX_AMD64 : Platform.LINUX_ARM64;
    const sipAdvertised = props.sipAdvertisedAddress ?? 'public';
    if (!/^(public|private|(\d{1,3}\.){3}\d{1,3})$/.test(sipAdvertised)) {
      throw new TypeError(
        `sipAdvertisedAddress must be public, private or an IPv4, got ${JSON.stringify(sipAdvertised)}`,
      );
    }
    if (props.existingVpc) validateExistingVpc(props);
    if (props.pbxRouteTarget !== undefined && !/^(tgw|vgw)-[0-9a-f]{8,17}$/.test(props.pbxRouteTarget)) {
      throw new TypeError(
        `pbxRouteTarget must be a Transit Gateway (tgw-…) or virtual private gateway (vgw-…) id, got ${JSON.stringify(props.pbxRouteTarget)}`,
      );
    }
    const vcpus = props.vcpus ?? 2;
    this.vcpus = vcpus;
    // Admission is per core: each media thread takes its share of the task's calls.
    const maxCalls = props.maxCallsPerWorker ?? (props.callsPerVcpu ?? 100) * vcpus;
    const target = props.targetCallsPerWorker ?? Math.max(1, Math.floor(maxCalls * 0.6));
    const signalling = props.pbxSignallingCidrs ?? [];
    const media = props.pbxMediaCidrs ?? signalling;

    const flowLogs = new LogGroup(this, 'FlowLogs', { retention: logRetention, removalPolicy: RemovalPolicy.DESTROY });
    const rejected: FlowLogOptions = {
      destination: FlowLogDestination.toCloudWatchLogs(flowLogs),
      // Rejected packets only: who knocks on SIP/RTP without being allowed. Accepted media
      // would be a record per call per minute for nothing.
      trafficType: FlowLogTrafficType.REJECT,
    };
    const existing = props.existingVpc;
    if (existing) {
      this.vpc = Vpc.fromVpcAttributes(this, 'Vpc', {
        vpcId: existing.vpcId,
        availabilityZones: [...existing.availabilityZones],
        publicSubnetIds: [...existing.publicSubnetIds],
      });
      new FlowLog(this, 'RejectedFlows', { resourceType: FlowLogResourceType.fromVpc(this.vpc), ...rejected });
    } else {
      this.vpc = new Vpc(this, 'Vpc', {
        ...(props.vpcCidr ? { ipAddresses: IpAddresses.cidr(props.vpcCidr) } : {}),
        maxAzs: props.maxAzs ?? 2,
        natGateways: 0,
        subnetConfiguration: [{ name: 'public', subnetType: SubnetType.PUBLIC, cidrMask: subnetMask(props.vpcCidr) }],
        flowLogs: { rejected },
      });
    }

    this.securityGroup = new SecurityGroup(this, 'SecurityGroup', {
      vpc: this.vpc,
      description: 'wa-sip-bridge media workers: SIP and RTP from the PBX; WebRTC answers via stateful rules',
      allowAllOutbound: true,
    });
    for (const cidr of signalling) {
      this.securityGroup.addIngressRule(Peer.ipv4(cidr), Port.udp(sipPort), 'SIP over UDP from the PBX');
      this.securityGroup.addIngressRule(Peer.ipv4(cidr), Port.tcp(sipPort), 'SIP over TCP from the PBX');
      if (props.sipTls)
        this.securityGroup.addIngressRule(Peer.ipv4(cidr), Port.tcp(sipTlsPort), 'SIP over TLS from the PBX');
    }
    for (const cidr of media) {
      this.securityGroup.addIngressRule(Peer.ipv4(cidr), Port.udpRange(rtpMin, rtpMax), 'RTP from the PBX');
    }

    // Private connectivity: the PBX's ranges through a Transit or virtual private gateway, from every
    // subnet the workers run in (the WhatsApp leg keeps the internet gateway).
    if (props.pbxRouteTarget) {
      const target = props.pbxRouteTarget;
      const ranges = [...new Set([...signalling, ...media])];
      this.vpc.publicSubnets.forEach((subnet, i) => {
        ranges.forEach((cidr, j) => {
          new CfnRoute(this, `PbxRoute${i}x${j}`, {
            routeTableId: subnet.routeTable.routeTableId,
            destinationCidrBlock: cidr,
            ...(target.startsWith('tgw-') ? { transitGatewayId: target } : { gatewayId: target }),
          });
        });
      });
    }

    this.cluster = new Cluster(this, 'Cluster', { vpc: this.vpc, containerInsightsV2: ContainerInsights.ENHANCED });

    this.taskDefinition = new FargateTaskDefinition(this, 'Task', {
      cpu: 1024 * vcpus,
      memoryLimitMiB: props.memoryMiB ?? 2048 * vcpus,
      runtimePlatform: {
        cpuArchitecture: x86 ? CpuArchitecture.X86_64 : CpuArchitecture.ARM64,
        operatingSystemFamily: OperatingSystemFamily.LINUX,
      },
    });
    // Retained: when a first deploy fails (a missing setting stops the tasks and the circuit breaker
    // rolls the stack back), this log is where the reason is; DESTROY deleted it with the rollback.
    this.logs = new LogGroup(this, 'Logs', { retention: logRetention, removalPolicy: RemovalPolicy.RETAIN });
    const image = props.image ?? ContainerImage.fromAsset(REPO_ROOT, { file: 'Dockerfile', platform });
    // The shared secret drachtio-server expects from its application (the worker). It never leaves
    // the task's loopback; ECS hands it to both containers as a secret, never as plain environment.
    this.drachtioSecret = new Secret(this, 'DrachtioSecret', {
      description: 'wa-sip-bridge: shared secret between the media worker and its drachtio-server sidecar',
      generateSecretString: { passwordLength: 32, excludePunctuation: true },
    });
    const drachtioSecret = EcsSecret.fromSecretsManager(this.drachtioSecret);
    const worker = this.taskDefinition.addContainer('worker', {
      image,
      essential: true,
      // Non-blocking: a slow CloudWatch Logs must never block stdout, and so the media path's loop.
      logging: new AwsLogDriver({
        streamPrefix: 'worker',
        logGroup: this.logs,
        mode: AwsLogDriverMode.NON_BLOCKING,
        maxBufferSize: Size.mebibytes(25),
      }),
      // Healthy while the worker's heartbeat file is fresh: the heartbeat (every 5 s) runs on the
      // main loop and writes the registry, so a wedged loop or lost DynamoDB shows here.
      healthCheck: {
        command: ['CMD', 'node', '-e', WORKER_HEALTH_SCRIPT],
        interval: Duration.seconds(15),
        timeout: Duration.seconds(5),
        retries: 3,
        startPeriod: Duration.seconds(60),
      },
      // Fargate's maximum: SIGTERM, then at most 120 s before SIGKILL. The worker drains for up to
      // 110 s; calls longer than that are protected from scale-in and deployments instead.
      stopTimeout: Duration.seconds(120),
      // An init process as PID 1 forwards SIGTERM to node and reaps children.
      linuxParameters: new LinuxParameters(this, 'Linux', { initProcessEnabled: true }),
      environment: {
        SSM_PREFIX: props.settingsPrefix,
        // The entrypoint sets SIP/RTP_BIND_ADDRESS (task ENI) and PUBLIC_ADDRESS (its public IP).
        ADDRESS_DISCOVERY: 'ecs',
        CALLS_TABLE: props.data.tables.calls.tableName,
        WORKERS_TABLE: props.data.tables.workers.tableName,
        PERMISSIONS_TABLE: props.data.tables.permissions.tableName,
        CALL_JOBS_QUEUE_URL: props.data.callJobs.queueUrl,
        CONTROL_QUEUE_PREFIX: props.controlQueuePrefix,
        MAX_CALLS_PER_WORKER: String(maxCalls),
        // One media thread per vCPU: every core bridges calls (SIP stays on the main thread).
        MEDIA_THREADS: String(vcpus),
        SIP_PORT: String(sipPort),
        SIP_TRANSPORTS: 'udp,tcp',
        // The drachtio-server sidecar owns the SIP sockets; the worker is its application.
        SIP_STACK: 'drachtio',
        DRACHTIO_HOST: '127.0.0.1',
        DRACHTIO_PORT: String(DRACHTIO_ADMIN_PORT),
        RTP_PORT_MIN: String(rtpMin),
        RTP_PORT_MAX: String(rtpMax),
        METRICS_STAGE: props.stage,
        // Minutes each scale-in protection lasts (the worker sets it while it has calls).
        TASK_PROTECTION_MINUTES: '120',
        // Touched at every heartbeat the registry accepted; the container health check reads it.
        HEALTH_FILE: WORKER_HEALTH_FILE,
        // Public or private on the SIP leg; the WhatsApp leg always advertises the public address.
        SIP_ADVERTISED_ADDRESS: sipAdvertised,
      },
      secrets: { DRACHTIO_SECRET: drachtioSecret },
      portMappings: [
        {
          containerPort: ContainerDefinition.CONTAINER_PORT_USE_RANGE,
          containerPortRange: `${rtpMin}-${rtpMax}`,
          protocol: Protocol.UDP,
        },
      ],
    });

    const drachtio = this.taskDefinition.addContainer('drachtio', {
      image: props.drachtioImage ?? ContainerImage.fromAsset(DRACHTIO_CONTEXT, { file: 'Dockerfile', platform }),
      essential: true,
      // A soft reservation out of the task's memory; the worker keeps the rest (the task size is unchanged).
      memoryReservationMiB: DRACHTIO_MEMORY_RESERVATION_MIB,
      logging: new AwsLogDriver({
        streamPrefix: 'drachtio',
        logGroup: this.logs,
        mode: AwsLogDriverMode.NON_BLOCKING,
        maxBufferSize: Size.mebibytes(5),
      }),
      // ECS stops containers in reverse dependency order: the worker drains first, its calls' BYEs
      // still go out through drachtio-server, which stops after it.
      stopTimeout: Duration.seconds(120),
      environment: {
        // The entrypoint binds SIP to the task's private address and advertises its public one
        // (drachtio's --external-ip) in Via and Contact, as the worker does in SDP.
        ADDRESS_DISCOVERY: 'ecs',
        SIP_ADVERTISED_ADDRESS: sipAdvertised,
        DRACHTIO_SIP_PORT: String(sipPort),
        ...(props.sipTls ? { DRACHTIO_TLS_PORT: String(sipTlsPort) } : {}),
      },
      secrets: {
        DRACHTIO_SECRET: drachtioSecret,
        ...(props.sipTls ? { DRACHTIO_TLS_PEM: this.tlsSecret(props.sipTls) } : {}),
      },
      // Serving means the application port accepts connections (bash's /dev/tcp; no curl in the image).
      healthCheck: {
        command: ['CMD', 'bash', '-c', `exec 3<>/dev/tcp/127.0.0.1/${DRACHTIO_ADMIN_PORT}`],
        interval: Duration.seconds(10),
        timeout: Duration.seconds(5),
        retries: 3,
        startPeriod: Duration.seconds(30),
      },
      portMappings: [
        { name: 'sip-udp', containerPort: sipPort, protocol: Protocol.UDP },
        { name: 'sip-tcp', containerPort: sipPort, protocol: Protocol.TCP },
        ...(props.sipTls ? [{ name: 'sip-tls', containerPort: sipTlsPort, protocol: Protocol.TCP }] : []),
      ],
    });
    worker.addContainerDependencies({ container: drachtio, condition: ContainerDependencyCondition.HEALTHY });
    if (props.staticAddresses !== undefined) {
      this.addressPool = this.claimFromPool(props.staticAddresses, props.stage, image, [drachtio, worker]);
      this.pbxAllowList = this.addressPool.map((eip) => eip.ref);
      if (props.sipDomainName && props.sipDomainZoneId && props.healthCheckPrefixList) {
        this.sipDomainName = props.sipDomainName;
        this.publishSipDomain(props.sipDomainZoneId, props.sipDomainName, props.healthCheckPrefixList, sipPort);
      }
    }

    this.service = new FargateService(this, 'Service', {
      cluster: this.cluster,
      taskDefinition: this.taskDefinition,
      assignPublicIp: true,
      vpcSubnets: { subnetType: SubnetType.PUBLIC },
      securityGroups: [this.securityGroup],
      // No desiredCount: auto scaling owns it, so a deploy never resets a scaled-out fleet.
      // New tasks start before old ones stop; a failing image rolls back instead of looping.
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { enable: true, rollback: true },
    });
    // The service's tasks hold pool addresses: delete the service (its tasks, their ENIs and so the
    // associations) before the addresses, or releasing an associated address fails the delete.
    for (const eip of this.addressPool) this.service.node.addDependency(eip);
    // AZ rebalancing, on by default for new services, stops tasks to even out zones: mid-call.
    // Off, stated: scale-out already places tasks across zones, and retirement thins them.
    (this.service.node.defaultChild as CfnService).availabilityZoneRebalancing = 'DISABLED';

    const role = this.taskDefinition.taskRole;
    bindTable(role, props.data.tables.calls, 'readWrite');
    bindTable(role, props.data.tables.workers, 'readWriteScan');
    bindTable(role, props.data.tables.permissions, 'readWrite');
    props.data.callJobs.grantConsumeMessages(role);
    role.addToPrincipalPolicy(
      new PolicyStatement({
        actions: [
          'sqs:CreateQueue',
          'sqs:DeleteQueue',
          'sqs:GetQueueUrl',
          'sqs:GetQueueAttributes',
          'sqs:SendMessage',
          'sqs:ReceiveMessage',
          'sqs:DeleteMessage',
          'sqs:ChangeMessageVisibility',
        ],
        resources: [controlQueueArnPattern(this, props.controlQueuePrefix)],
      }),
    );
    bindSettings(role, this, props.settingsPrefix, props.settingsKeyArn);
    // Task scale-in protection through the ECS agent endpoint uses the task role's credentials.
    role.addToPrincipalPolicy(
      new PolicyStatement({
        actions: ['ecs:UpdateTaskProtection', 'ecs:GetTaskProtection', 'ecs:DescribeTasks'],
        resources: [
          stack.formatArn({ service: 'ecs', resource: 'task', resourceName: `${this.cluster.clusterName}/*` }),
        ],
      }),
    );
    // Retirement (media-worker/src/ops/retirement.ts): the worker reads its own task's service and
    // that service's primary deployment and desired count. (The service's own ARN would make the
    // task role's policy depend on the service: the cluster's services instead.)
    role.addToPrincipalPolicy(
      new PolicyStatement({
        actions: ['ecs:DescribeServices'],
        resources: [
          stack.formatArn({ service: 'ecs', resource: 'service', resourceName: `${this.cluster.clusterName}/*` }),
        ],
      }),
    );

    this.activeCallsPerWorker = new Metric({
      namespace: METRICS_NAMESPACE,
      metricName: METRIC.activeCalls,
      dimensionsMap: { [DIMENSION.stage]: props.stage },
      statistic: 'Average',
      period: Duration.minutes(1),
    });
    const scaling = this.service.autoScaleTaskCount({
      minCapacity: props.minWorkers ?? 2,
      maxCapacity: Math.max(props.maxWorkers ?? 10, props.minWorkers ?? 0, 1),
    });
    scaling.scaleToTrackCustomMetric('ActiveCallsPerWorker', {
      metric: this.activeCallsPerWorker,
      targetValue: target,
      scaleOutCooldown: Duration.seconds(60),
      // Scale-in only removes unprotected (idle) tasks; wait so a lull between calls does not churn.
      scaleInCooldown: Duration.minutes(5),
    });
    if (props.peakHours) {
      const { minWorkers, start, end } = props.peakHours;
      const max = Math.max(props.maxWorkers ?? 10, props.minWorkers ?? 0, 1);
      if (!Number.isInteger(minWorkers) || minWorkers < 0 || minWorkers > max) {
        throw new TypeError(`peakMinWorkers must be an integer from 0 to maxWorkers (${max}), got ${minWorkers}`);
      }
      const cron = (key: string, expression: string) => {
        const m = /^cron\((\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\)$/.exec(expression);
        if (!m)
          throw new TypeError(
            `${key} must be cron(minute hour day month weekday year), got ${JSON.stringify(expression)}`,
          );
        return Schedule.expression(expression);
      };
      scaling.scaleOnSchedule('PeakStart', { schedule: cron('peakStart', start), minCapacity: minWorkers });
      scaling.scaleOnSchedule('PeakEnd', { schedule: cron('peakEnd', end), minCapacity: props.minWorkers ?? 2 });
    }

    acknowledge(
      this.taskDefinition,
      ['AwsSolutions::AwsSolutions-ECS2'],
      'The environment holds wiring only (table names, queue URL, ports, the SSM prefix); no secret. Settings, SecureStrings included, are read from SSM under the stage prefix by the image entrypoint, so optional settings may be absent and changes apply to new tasks without a deploy.',
    );
    acknowledge(
      this.drachtioSecret,
      ['AwsSolutions::AwsSolutions-SMG4'],
      'The drachtio shared secret authenticates the worker to its sidecar on the task loopback only (drachtio-server listens on 127.0.0.1:9022); both containers read it at start, so a rotation would need a new deployment anyway.',
    );
    acknowledge(
      this.taskDefinition.obtainExecutionRole(),
      [ANY_RESOURCE_FINDING],
      'ecr:GetAuthorizationToken, which pulls the image, has no resource-level permissions.',
    );
    acknowledge(
      role,
      [controlQueueWildcardFinding(props.controlQueuePrefix)],
      "Each worker creates, reads and deletes its own control queue (<prefix>-<workerId>, named at run time) and the reaper deletes dead workers' queues; the pattern covers this stage's control queues only.",
    );
    acknowledge(
      role,
      settingsWildcardFindings(props.settingsPrefix, props.settingsKeyArn),
      "Settings are read by path: every parameter under this stage's prefix and none elsewhere. kms:Decrypt is limited by kms:ViaService=ssm and the PARAMETER_ARN encryption context to that prefix.",
    );
    acknowledge(
      role,
      [clusterTasksWildcardFinding(stack.getLogicalId(this.cluster.node.defaultChild as CfnElement))],
      'Task scale-in protection and retirement: a task protects itself while it has calls and reads its own task to find its service; task ids are only known at run time, so the grant covers the tasks of this cluster.',
    );
    acknowledge(
      role,
      [clusterServicesWildcardFinding(stack.getLogicalId(this.cluster.node.defaultChild as CfnElement))],
      "Retirement: a worker reads its service's primary deployment and desired count (ecs:DescribeServices, read only); naming the service's own ARN would make the task role depend on the service, so the grant covers this cluster's services.",
    );
  }

  /**
   * Fixed-address mode: allocates the pool and adds the `address-claim` container, which the
   * `dependents` wait on (SUCCESS). No release step: when a task stops, Fargate deletes its ENI and
   * the address's association goes with it, so the address is free for the next task.
   */
  private claimFromPool(
    count: number,
    stage: string,
    image: ContainerImage,
    dependents: readonly ContainerDefinition[],
  ): CfnEIP[] {
    const pool = Array.from({ length: count }, (_, i) => {
      const eip = new CfnEIP(this, `PoolAddress${i + 1}`, { domain: 'vpc' });
      Tags.of(eip).add(ADDRESS_POOL_TAG, stage);
      Tags.of(eip).add('Name', `wa-sip-bridge-${stage}-pool-${i + 1}`);
      return eip;
    });
    const claim = this.taskDefinition.addContainer('address-claim', {
      image,
      // Runs to completion; its exit code, not its life, is what the other containers wait on.
      essential: false,
      // The image's entrypoint runs the worker; this container runs the claim bundle beside it.
      entryPoint: ['node', '--enable-source-maps', 'dist/claim-address.mjs'],
      memoryReservationMiB: 64,
      logging: new AwsLogDriver({
        streamPrefix: 'address-claim',
        logGroup: this.logs,
        mode: AwsLogDriverMode.NON_BLOCKING,
        maxBufferSize: Size.mebibytes(1),
      }),
      environment: {
        ADDRESS_POOL: stage,
        ADDRESS_POOL_TAG,
        ADDRESS_POOL_VPC: this.vpc.vpcId,
      },
    });
    for (const container of dependents) {
      container.addContainerDependencies({ container: claim, condition: ContainerDependencyCondition.SUCCESS });
    }
    const role = this.taskDefinition.taskRole;
    const stack = Stack.of(this);
    bindAddressPool(
      role,
      this,
      ADDRESS_POOL_TAG,
      stage,
      stack.formatArn({ service: 'ec2', resource: 'vpc', resourceName: this.vpc.vpcId }),
    );
    acknowledge(
      role,
      addressPoolWildcardFindings(),
      "Address claim: ec2:AssociateAddress on any Elastic IP tagged with this stage's pool (aws:ResourceTag condition) and any network interface in this stack's VPC (ec2:Vpc condition); the task's ENI and the free address are only known at run time.",
    );
    acknowledge(
      role,
      [ANY_RESOURCE_FINDING],
      'Address claim: ec2:DescribeAddresses and ec2:DescribeNetworkInterfaces have no resource-level permissions (read only); the claim filters by the pool tag and by its own private address.',
    );
    return pool;
  }

  /**
   * One TCP health check and one multivalue-answer A record per pool address. An address no task
   * holds fails its check (nothing answers) and drops out of the answer; a task's address comes
   * back after three passing checks. The PBX resolves the name and, on a failed or 503-answered
   * INVITE, tries the next address (RFC 3263 §4.3); in-dialog requests go to the worker's Contact.
   */
  private publishSipDomain(zoneId: string, name: string, prefixList: string, sipPort: number): void {
    this.securityGroup.addIngressRule(
      Peer.prefixList(prefixList),
      Port.tcp(sipPort),
      'SIP over TCP from the Route 53 health checkers (connect only)',
    );
    this.addressPool.forEach((eip, i) => {
      const id = `pool-${i + 1}`;
      const check = new CfnHealthCheck(this, `PoolHealthCheck${i + 1}`, {
        healthCheckConfig: {
          type: 'TCP',
          ipAddress: eip.ref,
          port: sipPort,
          requestInterval: 30,
          failureThreshold: 3,
        },
        healthCheckTags: [{ key: 'Name', value: `${name} ${id}` }],
      });
      new CfnRecordSet(this, `PoolRecord${i + 1}`, {
        hostedZoneId: zoneId,
        name,
        type: 'A',
        ttl: '60',
        resourceRecords: [eip.ref],
        multiValueAnswer: true,
        setIdentifier: id,
        healthCheckId: check.ref,
      });
    });
  }

  /** The ECS secret carrying the TLS PEM, from Secrets Manager or an SSM SecureString. */
  private tlsSecret(source: SipTlsSource): EcsSecret {
    if (source.kind === 'ssm')
      return EcsSecret.fromSsmParameter(
        StringParameter.fromSecureStringParameterAttributes(this, 'SipTlsParameter', { parameterName: source.name }),
      );
    const secret: ISecret =
      'arn' in source
        ? /-[A-Za-z0-9]{6}$/.test(source.arn)
          ? Secret.fromSecretCompleteArn(this, 'SipTlsSecret', source.arn)
          : Secret.fromSecretPartialArn(this, 'SipTlsSecret', source.arn)
        : Secret.fromSecretNameV2(this, 'SipTlsSecret', source.name);
    return EcsSecret.fromSecretsManager(secret);
  }
}

/** Refuses fleet sizes that cannot work, naming the prop (and so the context key). */
function validateFleet(props: MediaWorkersProps): void {
  const int = (key: string, value: number | undefined, min: number) => {
    if (value !== undefined && (!Number.isInteger(value) || value < min)) {
      throw new TypeError(`${key} must be an integer ≥ ${min}, got ${JSON.stringify(value)}`);
    }
  };
  int('minWorkers', props.minWorkers, 0);
  int('maxWorkers', props.maxWorkers, 1);
  int('maxCallsPerWorker', props.maxCallsPerWorker, 1);
  int('callsPerVcpu', props.callsPerVcpu, 1);
  if (props.minWorkers !== undefined && props.maxWorkers !== undefined && props.maxWorkers < props.minWorkers) {
    throw new TypeError(`maxWorkers (${props.maxWorkers}) must be at least minWorkers (${props.minWorkers})`);
  }
  int('staticAddresses', props.staticAddresses, 1);
  const surge = (props.maxWorkers ?? 10) * 2;
  if (props.staticAddresses !== undefined && props.staticAddresses < surge) {
    throw new TypeError(
      `staticAddresses (${props.staticAddresses}) must be at least maxWorkers × 2 = ${surge}: every task holds one address, and a deployment starts the new tasks before it stops the old (maxHealthyPercent 200)`,
    );
  }
  validateSipDomain(props);
  if (props.vcpus !== undefined && ![1, 2, 4, 8].includes(props.vcpus)) {
    throw new TypeError(`vcpus must be 1, 2, 4 or 8 (a Fargate task size), got ${JSON.stringify(props.vcpus)}`);
  }
  subnetMask(props.vpcCidr);
}

/** A SIP domain needs the pool, its zone, its name and the health checkers' prefix list, all well formed. */
function validateSipDomain(props: MediaWorkersProps): void {
  const { sipDomainZoneId: zone, sipDomainName: name, healthCheckPrefixList: prefixList } = props;
  if (zone === undefined && name === undefined && prefixList === undefined) return;
  if (props.staticAddresses === undefined) {
    throw new TypeError(
      'sipDomainZoneId, sipDomainName and healthCheckPrefixList need staticAddresses: the name answers with the fixed-address pool',
    );
  }
  if (name !== undefined && zone === undefined)
    throw new TypeError('sipDomainName needs sipDomainZoneId (its hosted zone)');
  if (zone !== undefined && name === undefined) throw new TypeError('sipDomainZoneId needs sipDomainName');
  if (name !== undefined && prefixList === undefined) {
    throw new TypeError(
      'sipDomainName needs healthCheckPrefixList: the id of com.amazonaws.<region>.route53-healthchecks (aws ec2 describe-managed-prefix-lists)',
    );
  }
  if (prefixList !== undefined && name === undefined) throw new TypeError('healthCheckPrefixList needs sipDomainName');
  if (!/^Z[A-Z0-9]{4,31}$/.test(zone!)) {
    throw new TypeError(`sipDomainZoneId must be a Route 53 hosted zone id (Z…), got ${JSON.stringify(zone)}`);
  }
  if (!/^(?=.{1,253}\.?$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]\.?$/i.test(name!)) {
    throw new TypeError(`sipDomainName must be a DNS name such as sip.example.com, got ${JSON.stringify(name)}`);
  }
  if (!/^pl-[0-9a-f]{8,17}$/.test(prefixList!)) {
    throw new TypeError(`healthCheckPrefixList must be a prefix list id (pl-…), got ${JSON.stringify(prefixList)}`);
  }
}

/** The public subnets' mask: /24 in a /16–/22 VPC, half the VPC in a /23 or /24. */
function subnetMask(vpcCidr: string | undefined): number {
  if (vpcCidr === undefined) return 24;
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(vpcCidr);
  const prefix = Number(m?.[5]);
  if (!m || m.slice(1, 5).some((o) => Number(o) > 255) || prefix < 16 || prefix > 24) {
    throw new TypeError(`vpcCidr must be an IPv4 CIDR from /16 to /24, got ${JSON.stringify(vpcCidr)}`);
  }
  return prefix <= 22 ? 24 : prefix + 1;
}

/** An existing VPC needs its subnets and zones, one zone per subnet, and leaves routing and range to its owner. */
function validateExistingVpc(props: MediaWorkersProps): void {
  const v = props.existingVpc!;
  if (!/^vpc-[0-9a-f]{8,17}$/.test(v.vpcId))
    throw new TypeError(`existingVpcId must be a VPC id, got ${JSON.stringify(v.vpcId)}`);
  if (v.publicSubnetIds.length === 0 || v.publicSubnetIds.some((id) => !/^subnet-[0-9a-f]{8,17}$/.test(id))) {
    throw new TypeError(`existingSubnetIds must be subnet ids, got ${JSON.stringify(v.publicSubnetIds)}`);
  }
  if (v.availabilityZones.length !== v.publicSubnetIds.length) {
    throw new TypeError('existingSubnetAzs must name one availability zone per subnet of existingSubnetIds, in order');
  }
  if (props.vpcCidr !== undefined)
    throw new TypeError('vpcCidr cannot be set with an existing VPC (its range is its own)');
  if (props.pbxRouteTarget !== undefined) {
    throw new TypeError('pbxRouteTarget cannot be set with an existing VPC: route the PBX ranges in its route tables');
  }
}
