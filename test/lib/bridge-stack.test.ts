/**
 * The whole stack, synthesized once (esbuild bundling and the image asset staging happen here),
 * with cdk-nag's AwsSolutions pack: data, API, workers, settings wiring, observability.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { TABLES } from '#adapters/aws/tables.ts';
import { METRIC } from '#core/metrics.ts';
import { CONTROL_PLANE_SETTINGS } from '#functions/shared/config.ts';
import { WORKER_SETTINGS } from '#worker/config.ts';
import { WORKER_HEALTH_FILE, WORKER_HEALTH_SCRIPT } from '../../lib/constructs/media-workers.ts';
import { CONTROL_PLANE_PARAMETER_KEYS, WORKER_PARAMETER_KEYS } from '../../lib/settings.ts';
import { BridgeStack } from '../../lib/stacks/bridge-stack.ts';

// biome-ignore lint/suspicious/noExplicitAny: CloudFormation JSON is untyped; each assertion narrows what it reads.
type Cfn = any;
type Resource = { Type: string; Properties: Record<string, Cfn>; DeletionPolicy?: string };

const outdir = mkdtempSync(join(tmpdir(), 'cdk-test-'));
const app = new App({ outdir });
const stack = new BridgeStack(app, 'Test', {
  stage: 'test',
  pbxSignallingCidrs: ['198.51.100.0/24'],
  pbxMediaCidrs: ['203.0.113.0/24', '198.51.100.0/24'],
  alarmEmail: 'ops@example.com',
});
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
const assembly = app.synth();
const template = Template.fromJSON(assembly.getStackByName('Test').template);
const resources = (type: string) => Object.values(template.findResources(type)) as Resource[];
const only = (type: string) => {
  const all = resources(type);
  expect(all).toHaveLength(1);
  return all[0]!;
};
const fnByService = (service: string) =>
  resources('AWS::Lambda::Function').find(
    (f) => f.Properties.Environment.Variables.POWERTOOLS_SERVICE_NAME === service,
  )!;
const logicalIdOf = (type: string, predicate: (r: Resource) => boolean) =>
  Object.entries(template.findResources(type)).find(([, r]) => predicate(r as Resource))![0];
const statementsOf = (roleLogicalIdPrefix: string) =>
  Object.entries(template.findResources('AWS::IAM::Policy'))
    .filter(([id]) => id.startsWith(roleLogicalIdPrefix))
    .flatMap(([, p]) => (p as Resource).Properties.PolicyDocument.Statement as Array<Record<string, Cfn>>);
const actionsOf = (s: Record<string, Cfn>) => [s.Action].flat() as string[];
/** Every statement of the worker task role's policies. */
const workerTaskStatements = () =>
  Object.values(template.findResources('AWS::IAM::Policy'))
    .filter((p) => JSON.stringify((p as Resource).Properties.Roles).includes('WorkersTaskTaskRole'))
    .flatMap((p) => (p as Resource).Properties.PolicyDocument.Statement as Array<Record<string, Cfn>>);
type ContainerDef = {
  Name: string;
  Essential?: boolean;
  Image: Cfn;
  Environment?: Array<{ Name: string; Value: unknown }>;
  Secrets?: Array<{ Name: string; ValueFrom: Cfn }>;
  PortMappings?: Array<{ ContainerPort?: number; Protocol: string; Name?: string }>;
  DependsOn?: Array<{ ContainerName: string; Condition: string }>;
  HealthCheck?: { Command: string[]; Interval?: number; Retries?: number; StartPeriod?: number; Timeout?: number };
  MemoryReservation?: number;
  User?: string;
};
const container = (name: string) =>
  (only('AWS::ECS::TaskDefinition').Properties.ContainerDefinitions as ContainerDef[]).find((c) => c.Name === name)!;
const dockerImages = () =>
  Object.values(
    (
      JSON.parse(readFileSync(join(outdir, 'Test.assets.json'), 'utf8')) as {
        dockerImages: Record<string, { source: { directory: string; dockerFile?: string; platform?: string } }>;
      }
    ).dockerImages,
  );
const workerEnv = () =>
  Object.fromEntries(
    (
      only('AWS::ECS::TaskDefinition').Properties.ContainerDefinitions[0].Environment as Array<{
        Name: string;
        Value: unknown;
      }>
    ).map((e) => [e.Name, e.Value]),
  );

describe('BridgeStack: call data', () => {
  it('creates every table the local stack creates, keyed pk/sk, on demand, with PITR, TTL and retained', () => {
    const tables = resources('AWS::DynamoDB::GlobalTable');
    expect(tables).toHaveLength(Object.keys(TABLES).length);
    for (const table of tables) {
      expect(table.DeletionPolicy).toBe('Retain');
      expect(table.Properties).toMatchObject({
        BillingMode: 'PAY_PER_REQUEST',
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
        TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
        Replicas: [expect.objectContaining({ PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true } })],
      });
    }
  });

  it('sends call jobs that fail five receives to an encrypted dead-letter queue kept 14 days', () => {
    template.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: 30,
      SqsManagedSseEnabled: true,
      RedrivePolicy: { maxReceiveCount: 5, deadLetterTargetArn: Match.anyValue() },
    });
    template.hasResourceProperties('AWS::SQS::Queue', {
      MessageRetentionPeriod: 14 * 86_400,
      SqsManagedSseEnabled: true,
    });
  });

  it('refuses non-TLS access to both queues', () => {
    const policies = resources('AWS::SQS::QueuePolicy');
    expect(policies).toHaveLength(2);
    for (const p of policies) {
      expect(p.Properties.PolicyDocument.Statement).toContainEqual(
        expect.objectContaining({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
      );
    }
  });
});

describe('BridgeStack: API', () => {
  it('runs the three functions (webhook, control API, settings sync) on Node 22, arm64, traced, with source maps and Powertools settings', () => {
    const fns = resources('AWS::Lambda::Function');
    expect(fns.map((f) => f.Properties.Environment.Variables.POWERTOOLS_SERVICE_NAME).sort()).toEqual([
      'control-api',
      'settings-sync',
      'webhook',
    ]);
    for (const fn of fns) {
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs22.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        TracingConfig: { Mode: 'Active' },
        Environment: {
          Variables: expect.objectContaining({
            NODE_OPTIONS: '--enable-source-maps',
            POWERTOOLS_METRICS_NAMESPACE: 'WaSipBridge',
            SSM_PREFIX: '/wa-sip-bridge/test',
            METRICS_STAGE: 'test',
          }),
        },
      });
    }
    expect(fnByService('webhook').Properties.Timeout).toBe(15);
  });

  it('bundles each function as ESM with a source map', () => {
    const bundles = readdirSync(outdir).filter((d) => existsSync(join(outdir, d, 'index.mjs')));
    expect(bundles).toHaveLength(3);
    for (const dir of bundles) {
      expect(existsSync(join(outdir, dir, 'index.mjs.map'))).toBe(true);
      expect(readFileSync(join(outdir, dir, 'index.mjs'), 'utf8')).toMatch(/sourceMappingURL=index\.mjs\.map/);
    }
  });

  it('gives each function its own log group with retention, written only by its own role', () => {
    for (const service of ['webhook', 'control-api']) {
      const fn = fnByService(service);
      const group = fn.Properties.LoggingConfig.LogGroup.Ref as string;
      expect(template.toJSON().Resources[group].Properties.RetentionInDays).toBe(30);
      const role = fn.Properties.Role['Fn::GetAtt'][0] as string;
      const logStatements = statementsOf(role.replace(/[A-F0-9]{8}$/, '')).filter((s) =>
        actionsOf(s).some((a) => a.startsWith('logs:')),
      );
      expect(logStatements).toEqual([expect.objectContaining({ Resource: { 'Fn::GetAtt': [group, 'Arn'] } })]);
    }
    // No AWS managed policies on the function roles.
    for (const role of resources('AWS::IAM::Role').filter((r) =>
      JSON.stringify(r.Properties.AssumeRolePolicyDocument).includes('lambda.amazonaws.com'),
    )) {
      expect(role.Properties.ManagedPolicyArns).toBeUndefined();
    }
  });

  it('routes exactly the webhook, health, OpenAPI and control API paths (as the local gateway does), with no catch-all', () => {
    const routes = resources('AWS::ApiGatewayV2::Route').map((r) => r.Properties.RouteKey as string);
    expect(routes.sort()).toEqual([
      'ANY /v1/{proxy+}',
      'GET /healthz',
      'GET /openapi.json',
      'GET /webhook',
      'POST /webhook',
    ]);
  });

  it('throttles the API and writes access logs', () => {
    const stage = only('AWS::ApiGatewayV2::Stage');
    expect(stage.Properties).toMatchObject({
      StageName: '$default',
      AutoDeploy: true,
      DefaultRouteSettings: { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 },
      AccessLogSettings: { DestinationArn: expect.anything() },
    });
  });

  it('gives the functions their wiring and no setting an operator parameter should hold', () => {
    for (const fn of resources('AWS::Lambda::Function')) {
      const env = fn.Properties.Environment.Variables as Record<string, unknown>;
      expect(Object.keys(env)).toEqual(
        expect.arrayContaining(['CALLS_TABLE', 'PERMISSIONS_TABLE', 'WORKERS_TABLE', 'CALL_JOBS_QUEUE_URL']),
      );
      // The environment wins over SSM; an operator key here would silently shadow the parameter.
      for (const key of CONTROL_PLANE_PARAMETER_KEYS) expect(env).not.toHaveProperty(key);
    }
  });

  it('lets the functions read only their stage prefix, decrypting only through SSM for that prefix', () => {
    for (const service of ['webhook', 'control-api', 'settings-sync']) {
      const role = (fnByService(service).Properties.Role['Fn::GetAtt'][0] as string).replace(/[A-F0-9]{8}$/, '');
      const statements = statementsOf(role);
      const ssm = statements.filter((s) => actionsOf(s).some((a) => a.startsWith('ssm:')));
      expect(JSON.stringify(ssm)).toContain(':parameter/wa-sip-bridge/test"');
      expect(JSON.stringify(ssm)).toContain(':parameter/wa-sip-bridge/test/*"');
      expect(JSON.stringify(ssm)).not.toMatch(/parameter\/\*|parameter\/wa-sip-bridge\/\*/);
      const kms = statements.find((s) => actionsOf(s).includes('kms:Decrypt'))!;
      expect(kms.Condition.StringEquals['kms:ViaService']).toEqual({
        'Fn::Join': ['', ['ssm.', { Ref: 'AWS::Region' }, '.', { Ref: 'AWS::URLSuffix' }]],
      });
      expect(JSON.stringify(kms.Condition.StringLike['kms:EncryptionContext:PARAMETER_ARN'])).toContain(
        'parameter/wa-sip-bridge/test/*',
      );
    }
  });

  it('grants no wildcard actions to the functions, and a scan only of the workers table to the control API (GET /v1/workers)', () => {
    for (const service of ['webhook', 'control-api']) {
      const role = (fnByService(service).Properties.Role['Fn::GetAtt'][0] as string).replace(/[A-F0-9]{8}$/, '');
      const statements = statementsOf(role);
      const actions = statements.flatMap(actionsOf);
      expect(actions.filter((a) => a.includes('*'))).toEqual([]);
      expect(actions).toContain('sqs:SendMessage');
      const scans = statements.filter((s) => actionsOf(s).includes('dynamodb:Scan'));
      if (service === 'webhook') expect(scans).toEqual([]);
      else {
        expect(scans).toHaveLength(1);
        expect(JSON.stringify(scans[0]!.Resource)).toContain('WorkersTable');
        expect(actionsOf(scans[0]!)).not.toContain('dynamodb:PutItem');
      }
    }
  });
});

describe('BridgeStack: media workers', () => {
  it('runs a 2-vCPU Fargate arm64 task with the maximum stop timeout and an init process for SIGTERM', () => {
    const task = only('AWS::ECS::TaskDefinition');
    expect(task.Properties).toMatchObject({
      RequiresCompatibilities: ['FARGATE'],
      NetworkMode: 'awsvpc',
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
      Cpu: '2048',
      Memory: '4096',
    });
    // One media thread per vCPU, each taking 100 calls (issue 13 item 2: every core used).
    const env = (task.Properties.ContainerDefinitions[0] as { Environment: Array<{ Name: string; Value: string }> })
      .Environment;
    expect(Object.fromEntries(env.map((e) => [e.Name, e.Value]))).toMatchObject({
      MEDIA_THREADS: '2',
      MAX_CALLS_PER_WORKER: '200',
    });
    expect(task.Properties.ContainerDefinitions[0]).toMatchObject({
      StopTimeout: 120,
      LinuxParameters: { InitProcessEnabled: true },
      LogConfiguration: { LogDriver: 'awslogs' },
    });
  });

  it('builds the image from the repository Dockerfile for linux/arm64', () => {
    const images = dockerImages();
    expect(images).toHaveLength(2);
    const worker = images.find((i) => existsSync(join(outdir, i.source.directory, 'media-worker/src/main.ts')))!;
    expect(worker.source).toMatchObject({ dockerFile: 'Dockerfile', platform: 'linux/arm64' });
    const staged = join(outdir, worker.source.directory);
    expect(existsSync(join(staged, 'Dockerfile'))).toBe(true);
    // .dockerignore keeps the context small: no node_modules, tests or CDK output.
    expect(existsSync(join(staged, 'node_modules'))).toBe(false);
    expect(existsSync(join(staged, 'test'))).toBe(false);
    expect(existsSync(join(staged, 'media-worker/src/main.ts'))).toBe(true);
  });

  it('gives each task a public IPv4 in a public subnet, and rolls back failed deployments', () => {
    const service = only('AWS::ECS::Service');
    expect(service.Properties).toMatchObject({
      LaunchType: 'FARGATE',
      NetworkConfiguration: { AwsvpcConfiguration: { AssignPublicIp: 'ENABLED' } },
      DeploymentConfiguration: {
        MinimumHealthyPercent: 100,
        MaximumPercent: 200,
        DeploymentCircuitBreaker: { Enable: true, Rollback: true },
      },
    });
    // Auto scaling owns the task count; a deploy must not reset it.
    expect(service.Properties.DesiredCount).toBeUndefined();
    // Public subnets only, and no NAT gateway in the media path.
    expect(resources('AWS::EC2::NatGateway')).toHaveLength(0);
    for (const subnet of resources('AWS::EC2::Subnet')) expect(subnet.Properties.MapPublicIpOnLaunch).toBe(true);
  });

  it('lets task discovery set the addresses and keeps operator settings out of the task environment', () => {
    const env = workerEnv();
    expect(env).toMatchObject({
      SSM_PREFIX: '/wa-sip-bridge/test',
      ADDRESS_DISCOVERY: 'ecs',
      SIP_PORT: '5060',
      SIP_TRANSPORTS: 'udp,tcp',
      RTP_PORT_MIN: '20000',
      RTP_PORT_MAX: '30000',
      CONTROL_QUEUE_PREFIX: 'wa-sip-bridge-test-worker',
    });
    for (const key of ['SIP_BIND_ADDRESS', 'RTP_BIND_ADDRESS', 'PUBLIC_ADDRESS', 'WORKER_ID']) {
      expect(env).not.toHaveProperty(key);
    }
    for (const key of WORKER_PARAMETER_KEYS) expect(env).not.toHaveProperty(key);
    // The one secret a task gets from ECS is drachtio's shared secret (see the sidecar's stories below).
    expect(container('worker').Secrets?.map((s) => s.Name)).toEqual(['DRACHTIO_SECRET']);
  });

  it('admits SIP only from the PBX signalling ranges and RTP only from its media ranges', () => {
    const sg = only('AWS::EC2::SecurityGroup');
    const rules = (sg.Properties.SecurityGroupIngress as Array<Record<string, unknown>>).map((r) => [
      r.IpProtocol,
      r.FromPort,
      r.ToPort,
      r.CidrIp,
    ]);
    expect(rules.sort()).toEqual(
      [
        ['udp', 5060, 5060, '198.51.100.0/24'],
        ['tcp', 5060, 5060, '198.51.100.0/24'],
        ['udp', 20000, 30000, '203.0.113.0/24'],
        ['udp', 20000, 30000, '198.51.100.0/24'],
      ].sort(),
    );
  });

  it('scales on the average active calls per worker (60 % of its 200), between 2 and 10 tasks', () => {
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: 2,
      MaxCapacity: 10,
      ScalableDimension: 'ecs:service:DesiredCount',
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'TargetTrackingScaling',
      TargetTrackingScalingPolicyConfiguration: {
        TargetValue: 120,
        CustomizedMetricSpecification: {
          Namespace: 'WaSipBridge',
          MetricName: METRIC.activeCalls,
          Statistic: 'Average',
          Dimensions: [{ Name: 'Stage', Value: 'test' }],
        },
      },
    });
  });

  it('lets a task protect itself from scale-in, and touch only its stage queues and tables', () => {
    const statements = workerTaskStatements();
    const protection = statements.find((s) => actionsOf(s).includes('ecs:UpdateTaskProtection'))!;
    expect(JSON.stringify(protection.Resource)).toContain(':task/');
    const control = statements.find((s) => actionsOf(s).includes('sqs:CreateQueue'))!;
    expect(JSON.stringify(control.Resource)).toContain(':wa-sip-bridge-test-worker-*');
    const scans = statements.filter((s) => actionsOf(s).includes('dynamodb:Scan'));
    expect(scans).toHaveLength(1);
    expect(JSON.stringify(scans[0]!.Resource)).toContain('WorkersTable');
    expect(statements.flatMap(actionsOf).filter((a) => a.includes('*'))).toEqual([]);
  });

  it('lets a worker read its own task and its service, read only, in its cluster (retire instead of stall)', () => {
    const statements = workerTaskStatements();
    const tasks = statements.find((s) => actionsOf(s).includes('ecs:DescribeTasks'))!;
    expect(JSON.stringify(tasks.Resource)).toContain(':task/');
    const services = statements.find((s) => actionsOf(s).includes('ecs:DescribeServices'))!;
    expect(actionsOf(services)).toEqual(['ecs:DescribeServices']);
    expect(JSON.stringify(services.Resource)).toMatch(/:service\/.*WorkersCluster.*\/\*/);
  });
});

describe('BridgeStack: SIP through a drachtio-server sidecar', () => {
  it('runs drachtio-server as a second essential container, built from its own Dockerfile for linux/arm64', () => {
    const drachtio = container('drachtio');
    expect(drachtio.Essential).toBe(true);
    const image = dockerImages().find((i) => existsSync(join(outdir, i.source.directory, 'entrypoint.sh')))!;
    expect(image.source).toMatchObject({ dockerFile: 'Dockerfile', platform: 'linux/arm64' });
    const dockerfile = readFileSync(join(outdir, image.source.directory, 'Dockerfile'), 'utf8');
    // A pinned release, its commit checked, cross-compiled on the build platform.
    expect(dockerfile).toMatch(/DRACHTIO_VERSION=v0\.9\.4\b/);
    expect(dockerfile).toMatch(/DRACHTIO_COMMIT=a0ce11fe47c4109eaa3fec3ab4a47256cc4ab2df\b/);
    expect(dockerfile).toMatch(/FROM --platform=\$BUILDPLATFORM/);
    // The sidecar's image is not the worker's.
    expect(JSON.stringify(drachtio.Image)).not.toBe(JSON.stringify(container('worker').Image));
    // A small, stated reservation of the task's memory; logs in the worker's log group.
    expect(drachtio.MemoryReservation).toBe(256);
  });

  it('starts the worker only once drachtio-server is healthy: its admin port accepts a TCP connection', () => {
    expect(container('worker').DependsOn).toEqual([{ ContainerName: 'drachtio', Condition: 'HEALTHY' }]);
    const check = container('drachtio').HealthCheck!;
    expect(check.Command).toEqual(['CMD', 'bash', '-c', 'exec 3<>/dev/tcp/127.0.0.1/9022']);
    expect(check).toMatchObject({ Interval: 10, Timeout: 5, Retries: 3, StartPeriod: 30 });
  });

  it('points the worker at drachtio-server on the task loopback (awsvpc), with SIP_STACK=drachtio', () => {
    expect(workerEnv()).toMatchObject({ SIP_STACK: 'drachtio', DRACHTIO_HOST: '127.0.0.1', DRACHTIO_PORT: '9022' });
  });

  it('hands both containers the same generated shared secret as an ECS secret, never as plain environment', () => {
    const secretArn = (c: ContainerDef) => c.Secrets?.find((s) => s.Name === 'DRACHTIO_SECRET')?.ValueFrom;
    expect(secretArn(container('worker'))).toEqual({ Ref: expect.stringMatching(/DrachtioSecret/) });
    expect(secretArn(container('drachtio'))).toEqual(secretArn(container('worker')));
    for (const c of [container('worker'), container('drachtio')])
      expect(c.Environment?.map((e) => e.Name)).not.toContain('DRACHTIO_SECRET');
    template.hasResourceProperties('AWS::SecretsManager::Secret', {
      GenerateSecretString: Match.objectLike({ PasswordLength: 32, ExcludePunctuation: true }),
    });
  });

  it('moves the SIP ports to the sidecar, which owns the sockets; without a TLS certificate there is no 5061', () => {
    const drachtio = container('drachtio');
    expect(drachtio.PortMappings?.map((p) => [p.ContainerPort, p.Protocol])).toEqual([
      [5060, 'udp'],
      [5060, 'tcp'],
    ]);
    expect(container('worker').PortMappings?.some((p) => p.ContainerPort === 5060)).toBe(false);
    expect(drachtio.Secrets?.map((s) => s.Name)).toEqual(['DRACHTIO_SECRET']);
    expect(drachtio.Environment?.map((e) => e.Name)).not.toContain('DRACHTIO_TLS_PORT');
    const ingress = only('AWS::EC2::SecurityGroup').Properties.SecurityGroupIngress as Array<{ FromPort: number }>;
    expect(ingress.some((r) => r.FromPort === 5061)).toBe(false);
  });
});

describe('BridgeStack: observability', () => {
  const dashboard = JSON.stringify(only('AWS::CloudWatch::Dashboard').Properties.DashboardBody);

  it.each(Object.values(METRIC))('shows %s on the dashboard', (metric) => {
    expect(dashboard).toContain(metric);
  });

  it('shows queue and DLQ depth on the dashboard', () => {
    expect(dashboard.match(/ApproximateNumberOfMessagesVisible/g)?.length).toBeGreaterThanOrEqual(2);
    expect(dashboard).toContain('ApproximateAgeOfOldestMessage');
  });

  it('builds no alarm on a SEARCH expression (CloudWatch refuses those: the deploy would fail)', () => {
    const alarms = resources('AWS::CloudWatch::Alarm');
    const searching = alarms.filter((a) => JSON.stringify(a.Properties.Metrics ?? []).includes('SEARCH('));
    expect(searching.map((a) => a.Properties.AlarmDescription)).toEqual([]);
  });

  it('alarms on any Meta account alert and on a failed settings sync', () => {
    const alarms = resources('AWS::CloudWatch::Alarm');
    const accountAlarm = alarms.find((a) => JSON.stringify(a.Properties).includes('MetaAccountAlerts'));
    expect(accountAlarm?.Properties).toMatchObject({
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    });
    const syncFn = logicalIdOf(
      'AWS::Lambda::Function',
      (f) => f.Properties.Environment.Variables.POWERTOOLS_SERVICE_NAME === 'settings-sync',
    );
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'Errors',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: syncFn } }],
      Threshold: 1,
    });
  });

  it('runs the settings sync hourly and after every deploy of this stack', () => {
    const syncFn = logicalIdOf(
      'AWS::Lambda::Function',
      (f) => f.Properties.Environment.Variables.POWERTOOLS_SERVICE_NAME === 'settings-sync',
    );
    const rules = resources('AWS::Events::Rule').filter((r) => JSON.stringify(r.Properties.Targets).includes(syncFn));
    expect(rules.map((r) => r.Properties.ScheduleExpression).filter(Boolean)).toEqual(['rate(1 hour)']);
    expect(rules.map((r) => r.Properties.EventPattern).filter(Boolean)).toEqual([
      {
        source: ['aws.cloudformation'],
        'detail-type': ['CloudFormation Stack Status Change'],
        detail: {
          'stack-id': [{ Ref: 'AWS::StackId' }],
          'status-details': { status: ['CREATE_COMPLETE', 'UPDATE_COMPLETE'] },
        },
      },
    ]);
  });

  it('alarms when the DLQ holds a single job and when a job waits 10 s', () => {
    const dlq = logicalIdOf('AWS::SQS::Queue', (r) => r.Properties.MessageRetentionPeriod === 14 * 86_400);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [dlq, 'QueueName'] } }],
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'ApproximateAgeOfOldestMessage',
      Threshold: 10,
    });
  });

  it('alarms on the worst worker thread event-loop lag (main and each media thread, no SEARCH) and on task CPU', () => {
    const lag = Object.values(template.findResources('AWS::CloudWatch::Alarm')).find((a) =>
      String((a as Resource).Properties.AlarmDescription).includes('event-loop delay'),
    ) as Resource;
    const metrics = lag.Properties.Metrics as Array<{ Id: string; Expression?: string; MetricStat?: Cfn }>;
    expect(metrics.find((m) => m.Expression)?.Expression).toBe('MAX([lag0, lag1, lag2])');
    const threads = metrics
      .filter((m) => m.MetricStat)
      .map((m) => JSON.stringify(m.MetricStat).match(/"MediaThread","Value":"(\w+)"/)?.[1]);
    expect(threads).toEqual(['main', '0', '1']);
    expect(lag.Properties).toMatchObject({ Threshold: 50, EvaluationPeriods: 5 });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/ECS',
      MetricName: 'CPUUtilization',
      Statistic: 'Maximum',
      Threshold: 85,
    });
  });

  it('keeps the worker log group through a rollback, logs without blocking, and never rebalances zones mid-call', () => {
    const workerLogs = Object.keys(template.findResources('AWS::Logs::LogGroup')).find((id) =>
      id.startsWith('WorkersLogs'),
    )!;
    expect(template.toJSON().Resources[workerLogs]).toMatchObject({
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
    for (const name of ['worker', 'drachtio']) {
      expect(
        (container(name) as { LogConfiguration?: { Options: Record<string, string> } }).LogConfiguration?.Options,
      ).toMatchObject({
        mode: 'non-blocking',
      });
    }
    template.hasResourceProperties('AWS::ECS::Service', { AvailabilityZoneRebalancing: 'DISABLED' });
  });

  it('checks the worker container’s health on its heartbeat file', () => {
    const worker = container('worker');
    expect(worker.HealthCheck?.Command).toEqual(['CMD', 'node', '-e', WORKER_HEALTH_SCRIPT]);
    expect(workerEnv()).toMatchObject({ HEALTH_FILE: WORKER_HEALTH_FILE });
  });

  it('alarms when no worker runs, treating missing data as breaching', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'RunningTaskCount',
      ComparisonOperator: 'LessThanThreshold',
      Threshold: 1,
      TreatMissingData: 'breaching',
    });
  });

  it('notifies the alarm topic from every alarm, and subscribes the given address', () => {
    const topic = logicalIdOf('AWS::SNS::Topic', () => true);
    const alarms = resources('AWS::CloudWatch::Alarm');
    expect(alarms.length).toBeGreaterThanOrEqual(10);
    for (const a of alarms) expect(a.Properties.AlarmActions).toEqual([{ Ref: topic }]);
    template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com' });
  });
});

describe('BridgeStack: settings', () => {
  it('names every setting of both schemas either as stack wiring or as an operator parameter', () => {
    const wiredOrParameter = new Set([...CONTROL_PLANE_PARAMETER_KEYS, ...WORKER_PARAMETER_KEYS]);
    const lambdaEnv = fnByService('webhook').Properties.Environment.Variables as Record<string, unknown>;
    const taskEnv = workerEnv();
    for (const key of Object.keys(CONTROL_PLANE_SETTINGS)) {
      expect(
        wiredOrParameter.has(key) ||
          key in lambdaEnv ||
          ['AWS_REGION', 'DYNAMODB_ENDPOINT', 'SQS_ENDPOINT'].includes(key),
        key,
      ).toBe(true);
    }
    for (const key of Object.keys(WORKER_SETTINGS)) {
      expect(
        wiredOrParameter.has(key) ||
          key in taskEnv ||
          [
            'AWS_REGION',
            'DYNAMODB_ENDPOINT',
            'SQS_ENDPOINT',
            'WORKER_ID',
            'SIP_BIND_ADDRESS',
            'RTP_BIND_ADDRESS',
            'PUBLIC_ADDRESS',
            'SIP_TLS_PORT',
            'SIP_TLS_CERT_FILE',
            'SIP_TLS_KEY_FILE',
            'ECS_AGENT_URI', // set by ECS itself in every task
            'DRACHTIO_SECRET', // an ECS secret of the task, generated by the stack
            // set by the image from the task metadata (media-worker/image/environment.ts)
            'ECS_TASK_ARN',
            'ECS_CLUSTER',
            'WORKER_DEPLOYMENT',
          ].includes(key),
        key,
      ).toBe(true);
    }
  });

  it('outputs the API URL and the settings prefix', () => {
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(outputs.SettingsPrefix?.Value).toBe('/wa-sip-bridge/test/');
    expect(outputs.ApiUrl).toBeDefined();
  });
});

describe('BridgeStack: cdk-nag AwsSolutions', () => {
  const report = JSON.parse(readFileSync(join(outdir, 'validation-report.json'), 'utf8')) as {
    pluginReports: Array<{
      pluginName: string;
      violations: Array<{ ruleName: string; violatingConstructs: Array<{ constructPath: string }> }>;
      suppressedViolations: Array<{ ruleName: string; reason: string }>;
    }>;
  };
  const nag = report.pluginReports.find((p) => p.pluginName === 'AwsSolutions')!;

  it('reports no unacknowledged finding', () => {
    expect(nag.violations.map((v) => `${v.ruleName} ${v.violatingConstructs.map((c) => c.constructPath)}`)).toEqual([]);
  });

  it('acknowledges only the reviewed findings, each with its reason', () => {
    expect([...new Set(nag.suppressedViolations.map((v) => v.ruleName.replace(/\[.*$/, '')))].sort()).toEqual([
      'AwsSolutions-APIG4',
      'AwsSolutions-ECS2',
      'AwsSolutions-IAM5',
      'AwsSolutions-L1',
      'AwsSolutions-SMG4',
    ]);
    for (const v of nag.suppressedViolations) expect(v.reason.length).toBeGreaterThan(40);
  });
});

// Keeps the stack referenced for readers; the assertions use the synthesized template.
void stack;
