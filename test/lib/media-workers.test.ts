/** The MediaWorkers construct alone (no Lambda bundling, a registry image): defaults and edges. */
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { describe, expect, it } from 'vitest';
import { CallData } from '../../lib/constructs/call-data.ts';
import { MediaWorkers } from '../../lib/constructs/media-workers.ts';
import { sipTlsSource } from '../../lib/settings.ts';
import { BridgeStack } from '../../lib/stacks/bridge-stack.ts';

function synth(props: Partial<ConstructorParameters<typeof MediaWorkers>[2]> = {}) {
  const stack = new Stack(new App(), 'Workers');
  new MediaWorkers(stack, 'Workers', {
    data: new CallData(stack, 'Data'),
    stage: 'dev',
    settingsPrefix: '/wa-sip-bridge/dev',
    controlQueuePrefix: 'wa-sip-bridge-dev-worker',
    image: ContainerImage.fromRegistry('public.ecr.aws/docker/library/node:22-bookworm-slim'),
    ...props,
  });
  return Template.fromStack(stack);
}

// The first synth of a file loads most of aws-cdk-lib (≈ 3 s idle, 14 s on a loaded 2-core machine): CPU, not a
// wall-clock rule, so the tests get room rather than the suite's 20 s default.
describe('Construct: MediaWorkers', { timeout: 60_000 }, () => {
  it('opens no inbound port at all without PBX ranges (WebRTC rides on stateful answers)', () => {
    const sg = Object.values(synth().findResources('AWS::EC2::SecurityGroup'))[0] as {
      Properties: Record<string, unknown>;
    };

    expect(sg.Properties.SecurityGroupIngress).toBeUndefined();
  });

  it('follows custom SIP and RTP ports in the security group and the task environment alike', () => {
    const t = synth({ pbxSignallingCidrs: ['192.0.2.10/32'], sipPort: 5080, rtpPorts: [40000, 40999] });

    t.hasResourceProperties('AWS::EC2::SecurityGroup', {
      SecurityGroupIngress: [
        { IpProtocol: 'udp', FromPort: 5080, ToPort: 5080, CidrIp: '192.0.2.10/32' },
        { IpProtocol: 'tcp', FromPort: 5080, ToPort: 5080, CidrIp: '192.0.2.10/32' },
        { IpProtocol: 'udp', FromPort: 40000, ToPort: 40999, CidrIp: '192.0.2.10/32' },
      ].map((r) => ({ ...r, Description: Match.anyValue() })),
    });
    const env = (
      Object.values(t.findResources('AWS::ECS::TaskDefinition'))[0] as {
        Properties: { ContainerDefinitions: Array<{ Environment: Array<{ Name: string; Value: string }> }> };
      }
    ).Properties.ContainerDefinitions[0]!.Environment;
    expect(Object.fromEntries(env.map((e) => [e.Name, e.Value]))).toMatchObject({
      SIP_PORT: '5080',
      RTP_PORT_MIN: '40000',
      RTP_PORT_MAX: '40999',
    });
  });

  it('sizes the task by its vCPUs: one media thread per vCPU, calls and memory per vCPU', () => {
    const t = synth({ vcpus: 4, callsPerVcpu: 80 });

    const task = Object.values(t.findResources('AWS::ECS::TaskDefinition'))[0] as {
      Properties: {
        Cpu: string;
        Memory: string;
        ContainerDefinitions: Array<{ Environment: Array<{ Name: string; Value: string }> }>;
      };
    };
    expect(task.Properties).toMatchObject({ Cpu: '4096', Memory: '8192' });
    expect(
      Object.fromEntries(task.Properties.ContainerDefinitions[0]!.Environment.map((e) => [e.Name, e.Value])),
    ).toMatchObject({
      MEDIA_THREADS: '4',
      MAX_CALLS_PER_WORKER: '320',
    });
    t.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: { TargetValue: 192 },
    });
  });

  it('scales to the target calls per worker derived from the per-worker maximum', () => {
    synth({ maxCallsPerWorker: 50, minWorkers: 1, maxWorkers: 4 }).hasResourceProperties(
      'AWS::ApplicationAutoScaling::ScalingPolicy',
      { TargetTrackingScalingPolicyConfiguration: { TargetValue: 30 } },
    );
  });
});

type Container = {
  Name: string;
  Environment?: Array<{ Name: string; Value: unknown }>;
  Secrets?: Array<{ Name: string; ValueFrom: unknown }>;
  PortMappings?: Array<{ ContainerPort?: number; Protocol: string }>;
};
const containerOf = (t: Template, name: string) =>
  (
    Object.values(t.findResources('AWS::ECS::TaskDefinition'))[0] as {
      Properties: { ContainerDefinitions: Container[] };
    }
  ).Properties.ContainerDefinitions.find((c) => c.Name === name)!;
const tlsRules = (t: Template) =>
  (
    (
      Object.values(t.findResources('AWS::EC2::SecurityGroup'))[0] as {
        Properties: { SecurityGroupIngress?: Array<{ IpProtocol: string; FromPort: number; CidrIp: string }> };
      }
    ).Properties.SecurityGroupIngress ?? []
  )
    .filter((r) => r.FromPort === 5061)
    .map((r) => [r.IpProtocol, r.FromPort, r.CidrIp]);

describe('Construct: MediaWorkers, SIP over TLS on the drachtio sidecar', { timeout: 60_000 }, () => {
  const pem = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:wa-sip-tls-AbCdEf';

  it('listens on 5061/tcp with the certificate from a Secrets Manager secret, open only to the PBX signalling ranges', () => {
    const t = synth({
      pbxSignallingCidrs: ['192.0.2.10/32', '192.0.2.11/32'],
      pbxMediaCidrs: ['203.0.113.0/24'],
      sipTls: sipTlsSource(pem),
    });

    const drachtio = containerOf(t, 'drachtio');
    expect(drachtio.PortMappings?.map((p) => [p.ContainerPort, p.Protocol])).toContainEqual([5061, 'tcp']);
    expect(drachtio.Secrets).toContainEqual({ Name: 'DRACHTIO_TLS_PEM', ValueFrom: pem });
    expect(drachtio.Environment).toContainEqual({ Name: 'DRACHTIO_TLS_PORT', Value: '5061' });
    expect(tlsRules(t)).toEqual([
      ['tcp', 5061, '192.0.2.10/32'],
      ['tcp', 5061, '192.0.2.11/32'],
    ]);
    // The PEM is the sidecar's alone: the worker never sees the private key.
    expect(containerOf(t, 'worker').Secrets?.map((s) => s.Name)).toEqual(['DRACHTIO_SECRET']);
  });

  it('takes the certificate from an SSM SecureString parameter as well', () => {
    const t = synth({ pbxSignallingCidrs: ['192.0.2.10/32'], sipTls: sipTlsSource('/pki/wa-sip-bridge/tls.pem') });

    const from = containerOf(t, 'drachtio').Secrets?.find((s) => s.Name === 'DRACHTIO_TLS_PEM')?.ValueFrom;
    expect(JSON.stringify(from)).toContain(':parameter/pki/wa-sip-bridge/tls.pem');
    expect(tlsRules(t)).toEqual([['tcp', 5061, '192.0.2.10/32']]);
  });

  it('opens no 5061 and maps no TLS port without a certificate', () => {
    const t = synth({ pbxSignallingCidrs: ['192.0.2.10/32'] });

    expect(tlsRules(t)).toEqual([]);
    expect(containerOf(t, 'drachtio').PortMappings?.map((p) => p.ContainerPort)).not.toContain(5061);
    expect(containerOf(t, 'drachtio').Secrets?.map((s) => s.Name)).toEqual(['DRACHTIO_SECRET']);
  });
});

describe('Stack: BridgeStack props', () => {
  it.each(['Prod', 'prod_1', '', 'a-very-long-stage-name-x'])('rejects the stage %j', (stage) => {
    expect(() => new BridgeStack(new App(), 'Bad', { stage })).toThrow(/stage must be/);
  });
});

describe('Construct: MediaWorkers fleet settings (context keys minWorkers, maxWorkers, vcpus, vpcCidr)', {
  timeout: 60_000,
}, () => {
  it('honours minWorkers=0: no worker runs while idle', () => {
    synth({ minWorkers: 0, maxWorkers: 4 }).hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: 0,
      MaxCapacity: 4,
    });
  });

  it.each([
    [{ minWorkers: -1 }, /minWorkers must be an integer ≥ 0/],
    [{ maxWorkers: 0 }, /maxWorkers must be an integer ≥ 1/],
    [{ minWorkers: 5, maxWorkers: 2 }, /maxWorkers \(2\) must be at least minWorkers \(5\)/],
    [{ maxCallsPerWorker: 1.5 }, /maxCallsPerWorker must be an integer/],
    [{ vcpus: 3 as 2 }, /vcpus must be 1, 2, 4 or 8/],
    [{ vpcCidr: '10.0.0.0/8' }, /vpcCidr must be an IPv4 CIDR from \/16 to \/24/],
    [{ vpcCidr: '10.300.0.0/16' }, /vpcCidr/],
  ])('refuses %j, naming the key', (props, message) => {
    expect(() => synth(props)).toThrow(message);
  });

  it('puts the VPC in the range given (one that does not overlap the contact centre’s networks)', () => {
    const t = synth({ vpcCidr: '172.31.200.0/23' });

    t.hasResourceProperties('AWS::EC2::VPC', { CidrBlock: '172.31.200.0/23' });
    const subnets = Object.values(t.findResources('AWS::EC2::Subnet')).map(
      (r) => (r as { Properties: { CidrBlock: string } }).Properties.CidrBlock,
    );
    expect(subnets).toEqual(['172.31.200.0/24', '172.31.201.0/24']);
  });
});

describe('Construct: MediaWorkers on a private path to the PBX (context keys sipAdvertisedAddress, pbxRouteTarget)', {
  timeout: 60_000,
}, () => {
  const env = (t: ReturnType<typeof synth>, name: string) => {
    const defs = (
      Object.values(t.findResources('AWS::ECS::TaskDefinition'))[0] as {
        Properties: {
          ContainerDefinitions: Array<{ Name: string; Environment: Array<{ Name: string; Value: string }> }>;
        };
      }
    ).Properties.ContainerDefinitions;
    return Object.fromEntries(defs.find((d) => d.Name === name)!.Environment.map((e) => [e.Name, e.Value]));
  };

  it('advertises the public address on the SIP leg by default, in the worker and the sidecar alike', () => {
    const t = synth();
    expect(env(t, 'worker').SIP_ADVERTISED_ADDRESS).toBe('public');
    expect(env(t, 'drachtio').SIP_ADVERTISED_ADDRESS).toBe('public');
    expect(Object.keys(t.findResources('AWS::EC2::Route')).filter((id) => id.includes('PbxRoute'))).toEqual([]);
  });

  it('routes the PBX ranges to a Transit Gateway from every worker subnet and advertises the private address', () => {
    const t = synth({
      pbxSignallingCidrs: ['10.20.0.0/24'],
      pbxMediaCidrs: ['10.20.0.0/24', '10.21.0.0/24'],
      sipAdvertisedAddress: 'private',
      pbxRouteTarget: 'tgw-0123456789abcdef0',
    });

    expect(env(t, 'worker').SIP_ADVERTISED_ADDRESS).toBe('private');
    expect(env(t, 'drachtio').SIP_ADVERTISED_ADDRESS).toBe('private');
    const routes = Object.values(t.findResources('AWS::EC2::Route'))
      .map((r) => (r as { Properties: Record<string, unknown> }).Properties)
      .filter((p) => p.TransitGatewayId);
    expect(routes.map((p) => p.DestinationCidrBlock).sort()).toEqual([
      '10.20.0.0/24',
      '10.20.0.0/24',
      '10.21.0.0/24',
      '10.21.0.0/24',
    ]);
    expect(new Set(routes.map((p) => p.TransitGatewayId))).toEqual(new Set(['tgw-0123456789abcdef0']));
  });

  it('routes through a virtual private gateway too, and refuses what is neither', () => {
    const t = synth({ pbxSignallingCidrs: ['192.168.50.0/24'], pbxRouteTarget: 'vgw-0abc1234' });
    t.hasResourceProperties('AWS::EC2::Route', { DestinationCidrBlock: '192.168.50.0/24', GatewayId: 'vgw-0abc1234' });

    expect(() => synth({ pbxRouteTarget: 'igw-0abc1234' })).toThrow(/pbxRouteTarget must be a Transit Gateway/);
    expect(() => synth({ sipAdvertisedAddress: 'pbx.example' })).toThrow(/sipAdvertisedAddress must be public/);
  });
});

describe('Construct: MediaWorkers in an existing VPC (context keys existingVpcId, existingSubnetIds, existingSubnetAzs)', {
  timeout: 60_000,
}, () => {
  const existingVpc = {
    vpcId: 'vpc-0123456789abcdef0',
    publicSubnetIds: ['subnet-0aaaaaaaaaaaaaaa1', 'subnet-0bbbbbbbbbbbbbbb2'],
    availabilityZones: ['eu-west-1a', 'eu-west-1b'],
  };

  it('creates no VPC, runs the service in the given subnets, and still logs rejected flows', () => {
    const t = synth({ existingVpc });

    expect(Object.keys(t.findResources('AWS::EC2::VPC'))).toEqual([]);
    t.hasResourceProperties('AWS::ECS::Service', {
      NetworkConfiguration: {
        AwsvpcConfiguration: Match.objectLike({ Subnets: existingVpc.publicSubnetIds, AssignPublicIp: 'ENABLED' }),
      },
    });
    t.hasResourceProperties('AWS::EC2::SecurityGroup', { VpcId: existingVpc.vpcId });
    t.hasResourceProperties('AWS::EC2::FlowLog', { ResourceId: existingVpc.vpcId, TrafficType: 'REJECT' });
  });

  it.each([
    [{ existingVpc: { ...existingVpc, vpcId: 'my-vpc' } }, /existingVpcId must be a VPC id/],
    [{ existingVpc: { ...existingVpc, availabilityZones: ['eu-west-1a'] } }, /one availability zone per subnet/],
    [{ existingVpc, vpcCidr: '10.9.0.0/16' }, /vpcCidr cannot be set with an existing VPC/],
    [{ existingVpc, pbxRouteTarget: 'tgw-0123456789abcdef0' }, /route the PBX ranges in its route tables/],
  ])('refuses %j', (props, message) => {
    expect(() => synth(props)).toThrow(message);
  });
});

describe('Construct: MediaWorkers contact-centre hours (context keys peakMinWorkers, peakStart, peakEnd)', {
  timeout: 60_000,
}, () => {
  it('keeps at least peakMinWorkers warm between the two schedules, the fleet minimum outside', () => {
    const t = synth({
      minWorkers: 1,
      maxWorkers: 12,
      peakHours: { minWorkers: 6, start: 'cron(0 7 ? * MON-FRI *)', end: 'cron(0 19 ? * MON-FRI *)' },
    });

    const target = Object.values(t.findResources('AWS::ApplicationAutoScaling::ScalableTarget'))[0] as {
      Properties: { ScheduledActions: Array<{ Schedule: string; ScalableTargetAction: { MinCapacity: number } }> };
    };
    expect(target.Properties.ScheduledActions.map((a) => [a.Schedule, a.ScalableTargetAction.MinCapacity])).toEqual([
      ['cron(0 7 ? * MON-FRI *)', 6],
      ['cron(0 19 ? * MON-FRI *)', 1],
    ]);
  });

  it('refuses a peak above maxWorkers and a schedule that is not cron(…)', () => {
    expect(() =>
      synth({ maxWorkers: 4, peakHours: { minWorkers: 5, start: 'cron(0 7 ? * * *)', end: 'cron(0 19 ? * * *)' } }),
    ).toThrow(/peakMinWorkers must be an integer from 0 to maxWorkers \(4\)/);
    expect(() => synth({ peakHours: { minWorkers: 2, start: '07:00', end: 'cron(0 19 ? * * *)' } })).toThrow(
      /peakStart must be cron/,
    );
  });
});

describe('Construct: MediaWorkers CPU architecture (context key cpuArchitecture)', { timeout: 60_000 }, () => {
  it('runs Graviton (arm64) by default and x86_64 when asked', () => {
    const platformOf = (t: ReturnType<typeof synth>) =>
      (Object.values(t.findResources('AWS::ECS::TaskDefinition'))[0] as { Properties: { RuntimePlatform: unknown } })
        .Properties.RuntimePlatform;

    expect(platformOf(synth())).toEqual({ CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' });
    expect(platformOf(synth({ cpuArchitecture: 'x86_64' }))).toEqual({
      CpuArchitecture: 'X86_64',
      OperatingSystemFamily: 'LINUX',
    });
    expect(() => synth({ cpuArchitecture: 'riscv64' as 'arm64' })).toThrow(/cpuArchitecture must be arm64 or x86_64/);
  });
});
