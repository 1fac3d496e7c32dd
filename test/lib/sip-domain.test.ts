/**
 * A health-checked DNS name for PBX-started calls in fixed-address mode (issue 15 item 1,
 * `-c sipDomainZoneId=… -c sipDomainName=… -c healthCheckPrefixList=pl-…`): one Route 53 TCP health
 * check and one multivalue-answer A record per pool address, so the name answers with the
 * addresses of live workers only; Route 53's health checkers may reach SIP over TCP.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Stack, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { CallData } from '../../lib/constructs/call-data.ts';
import { MediaWorkers } from '../../lib/constructs/media-workers.ts';
import { BridgeStack } from '../../lib/stacks/bridge-stack.ts';

// biome-ignore lint/suspicious/noExplicitAny: CloudFormation JSON is untyped; each assertion narrows what it reads.
type Cfn = any;
const IMAGE = ContainerImage.fromRegistry('public.ecr.aws/docker/library/node:22-bookworm-slim');
const ZONE = 'Z0123456789ABCDEFGHIJ';
const PREFIX_LIST = 'pl-0123456789abcdef0';
const DOMAIN = {
  sipDomainZoneId: ZONE,
  sipDomainName: 'sip.example.com',
  healthCheckPrefixList: PREFIX_LIST,
};

function synth(props: Partial<ConstructorParameters<typeof MediaWorkers>[2]> = {}) {
  const stack = new Stack(new App(), 'Workers');
  new MediaWorkers(stack, 'Workers', {
    data: new CallData(stack, 'Data'),
    stage: 'dev',
    settingsPrefix: '/wa-sip-bridge/dev',
    controlQueuePrefix: 'wa-sip-bridge-dev-worker',
    image: IMAGE,
    ...props,
  });
  return Template.fromStack(stack);
}
const resources = (t: Template, type: string) =>
  Object.entries(t.findResources(type)) as Array<[string, { Properties: Cfn }]>;
/** Inbound rules, inline in the group or standalone (CDK puts prefix-list rules in their own resource). */
const ingress = (t: Template): Cfn[] => [
  ...resources(t, 'AWS::EC2::SecurityGroup').flatMap(([, sg]) => sg.Properties.SecurityGroupIngress ?? []),
  ...resources(t, 'AWS::EC2::SecurityGroupIngress').map(([, rule]) => rule.Properties),
];

// Synths load most of aws-cdk-lib (CPU, slow on a loaded 2-core machine): room, not a wall-clock rule.
describe('Construct: MediaWorkers with a SIP domain name over the fixed-address pool', { timeout: 60_000 }, () => {
  const t = synth({ staticAddresses: 4, maxWorkers: 2, ...DOMAIN });
  const eipIds = resources(t, 'AWS::EC2::EIP').map(([id]) => id);

  it('health-checks every pool address over TCP on the SIP port, every 30 s, unhealthy after 3 failures', () => {
    const checks = resources(t, 'AWS::Route53::HealthCheck').map(([, c]) => c.Properties.HealthCheckConfig);

    expect(eipIds).toHaveLength(4);
    expect(checks).toHaveLength(4);
    expect(checks.map((c) => c.IPAddress)).toEqual(eipIds.map((id) => ({ Ref: id })));
    for (const check of checks) {
      expect(check).toMatchObject({ Type: 'TCP', Port: 5060, RequestInterval: 30, FailureThreshold: 3 });
    }
  });

  it('answers the name with one multivalue A record per address (TTL 60), each gated by that address’s health check', () => {
    const checkOf = Object.fromEntries(
      resources(t, 'AWS::Route53::HealthCheck').map(([id, c]) => [
        (c.Properties.HealthCheckConfig.IPAddress as { Ref: string }).Ref,
        id,
      ]),
    );
    const records = resources(t, 'AWS::Route53::RecordSet').map(([, r]) => r.Properties);

    expect(records).toHaveLength(4);
    expect(new Set(records.map((r) => r.SetIdentifier)).size).toBe(4);
    for (const record of records) {
      expect(record).toMatchObject({
        HostedZoneId: ZONE,
        Name: 'sip.example.com',
        Type: 'A',
        TTL: '60',
        MultiValueAnswer: true,
      });
      expect(record.ResourceRecords).toHaveLength(1);
      const address = (record.ResourceRecords[0] as { Ref: string }).Ref;
      expect(eipIds).toContain(address);
      expect(record.HealthCheckId).toEqual({ Ref: checkOf[address] });
    }
    expect(records.map((r) => r.ResourceRecords[0].Ref).sort()).toEqual([...eipIds].sort());
  });

  it('lets the Route 53 health checkers (the managed prefix list) reach SIP over TCP, and nothing else', () => {
    const fromPrefixList = ingress(t).filter((r) => r.SourcePrefixListId !== undefined);

    expect(fromPrefixList).toEqual([
      expect.objectContaining({ SourcePrefixListId: PREFIX_LIST, IpProtocol: 'tcp', FromPort: 5060, ToPort: 5060 }),
    ]);
  });

  it.each([
    [{ ...DOMAIN }, /sipDomainZoneId, sipDomainName and healthCheckPrefixList need staticAddresses/],
    [
      { staticAddresses: 4, maxWorkers: 2, sipDomainName: 'sip.example.com', healthCheckPrefixList: PREFIX_LIST },
      /sipDomainName needs sipDomainZoneId/,
    ],
    [
      { staticAddresses: 4, maxWorkers: 2, sipDomainZoneId: ZONE, healthCheckPrefixList: PREFIX_LIST },
      /sipDomainZoneId needs sipDomainName/,
    ],
    [
      { staticAddresses: 4, maxWorkers: 2, sipDomainZoneId: ZONE, sipDomainName: 'sip.example.com' },
      /sipDomainName needs healthCheckPrefixList/,
    ],
    [
      { staticAddresses: 4, maxWorkers: 2, healthCheckPrefixList: PREFIX_LIST },
      /healthCheckPrefixList needs sipDomainName/,
    ],
    [{ staticAddresses: 4, maxWorkers: 2, ...DOMAIN, sipDomainZoneId: 'example.com' }, /sipDomainZoneId must be/],
    [{ staticAddresses: 4, maxWorkers: 2, ...DOMAIN, sipDomainName: 'sip_example' }, /sipDomainName must be/],
    [
      { staticAddresses: 4, maxWorkers: 2, ...DOMAIN, healthCheckPrefixList: 'sg-0123' },
      /healthCheckPrefixList must be/,
    ],
  ])('refuses %j, naming the context keys', (props, message) => {
    expect(() => synth(props)).toThrow(message);
  });

  it('leaves both modes without a name as they were: no health check, no record, no prefix-list rule', () => {
    for (const plain of [synth(), synth({ staticAddresses: 4, maxWorkers: 2 })]) {
      expect(plain.findResources('AWS::Route53::HealthCheck')).toEqual({});
      expect(plain.findResources('AWS::Route53::RecordSet')).toEqual({});
      expect(ingress(plain).filter((r) => r.SourcePrefixListId !== undefined)).toEqual([]);
    }
  });
});

describe('Stack: BridgeStack with a SIP domain name outputs it for the PBX', { timeout: 120_000 }, () => {
  const outdir = mkdtempSync(join(tmpdir(), 'cdk-sip-domain-'));
  const app = new App({ outdir });
  new BridgeStack(app, 'Named', { stage: 'test', staticAddresses: 4, maxWorkers: 2, workerImage: IMAGE, ...DOMAIN });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  const template = Template.fromJSON(app.synth().getStackByName('Named').template);

  it('outputs SipDomainName, the target of PBX-started calls', () => {
    const outputs = template.toJSON().Outputs as Record<string, { Value: Cfn }>;

    expect(outputs.SipDomainName?.Value).toBe('sip.example.com');
    expect(template.findResources('AWS::Route53::RecordSet')).not.toEqual({});
  });

  it('passes cdk-nag', () => {
    const report = JSON.parse(readFileSync(join(outdir, 'validation-report.json'), 'utf8')) as {
      pluginReports: Array<{
        pluginName: string;
        violations: Array<{ ruleName: string; violatingConstructs: Array<{ constructPath: string }> }>;
      }>;
    };
    const nag = report.pluginReports.find((p) => p.pluginName === 'AwsSolutions')!;

    expect(nag.violations.map((v) => `${v.ruleName} ${v.violatingConstructs.map((c) => c.constructPath)}`)).toEqual([]);
  });
});
