/**
 * Fixed addresses (issue 15 item 1, `-c staticAddresses=<n>`): a pool of Elastic IPs tagged with the
 * stage, claimed by each task before it serves, published for the PBX's allow-list (output
 * `PbxAllowList` and an SSM parameter), with IAM scoped to the tagged allocations.
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
type Container = {
  Name: string;
  Essential?: boolean;
  Image: Cfn;
  EntryPoint?: string[];
  Command?: string[];
  Environment?: Array<{ Name: string; Value: Cfn }>;
  DependsOn?: Array<{ ContainerName: string; Condition: string }>;
};
const containers = (t: Template) =>
  (
    Object.values(t.findResources('AWS::ECS::TaskDefinition'))[0] as {
      Properties: { ContainerDefinitions: Container[] };
    }
  ).Properties.ContainerDefinitions;
const statements = (t: Template) =>
  Object.values(t.findResources('AWS::IAM::Policy')).flatMap(
    (p) =>
      (p as { Properties: { PolicyDocument: { Statement: Array<Record<string, Cfn>> } } }).Properties.PolicyDocument
        .Statement,
  );
const ec2Statements = (t: Template) =>
  statements(t).filter((s) => [s.Action].flat().some((a: string) => a.startsWith('ec2:')));

// Synths load most of aws-cdk-lib (CPU, slow on a loaded 2-core machine): room, not a wall-clock rule.
describe('Construct: MediaWorkers with a fixed-address pool (staticAddresses)', { timeout: 60_000 }, () => {
  const t = synth({ staticAddresses: 6, maxWorkers: 3 });

  it('allocates one Elastic IP per address in the VPC, each tagged wa-sip-bridge:pool = the stage', () => {
    const eips = Object.values(t.findResources('AWS::EC2::EIP')) as Array<{ Properties: Cfn }>;

    expect(eips).toHaveLength(6);
    for (const eip of eips) {
      expect(eip.Properties.Domain).toBe('vpc');
      expect(eip.Properties.Tags).toContainEqual({ Key: 'wa-sip-bridge:pool', Value: 'dev' });
    }
  });

  it('claims an address in a third, non-essential container of the worker image that drachtio-server and the worker wait on (SUCCESS)', () => {
    const all = containers(t);
    const claim = all.find((c) => c.Name === 'address-claim')!;
    const byName = (name: string) => all.find((c) => c.Name === name)!;

    expect(all.map((c) => c.Name).sort()).toEqual(['address-claim', 'drachtio', 'worker']);
    expect(claim.Essential).toBe(false);
    expect(claim.Image).toEqual(byName('worker').Image);
    expect([...(claim.EntryPoint ?? []), ...(claim.Command ?? [])].join(' ')).toMatch(
      /^node .*dist\/claim-address\.mjs$/,
    );
    expect(Object.fromEntries((claim.Environment ?? []).map((e) => [e.Name, e.Value]))).toMatchObject({
      ADDRESS_POOL: 'dev',
      ADDRESS_POOL_TAG: 'wa-sip-bridge:pool',
      ADDRESS_POOL_VPC: { Ref: expect.stringMatching(/^WorkersVpc/) },
    });
    for (const name of ['drachtio', 'worker']) {
      expect(byName(name).DependsOn, name).toContainEqual({ ContainerName: 'address-claim', Condition: 'SUCCESS' });
    }
  });

  it('lets the task associate only addresses tagged with its pool, and only with ENIs of its own VPC', () => {
    const associate = ec2Statements(t).filter((s) => [s.Action].flat().includes('ec2:AssociateAddress'));

    expect(associate).toHaveLength(2);
    const eip = associate.find((s) => JSON.stringify(s.Resource).includes(':elastic-ip/*'))!;
    const eni = associate.find((s) => JSON.stringify(s.Resource).includes(':network-interface/*'))!;
    expect(eip.Action).toBe('ec2:AssociateAddress');
    expect(eip.Condition).toEqual({ StringEquals: { 'aws:ResourceTag/wa-sip-bridge:pool': 'dev' } });
    expect(eni.Action).toBe('ec2:AssociateAddress');
    expect(JSON.stringify(eni.Condition.StringEquals['ec2:Vpc'])).toMatch(/:vpc\/.*WorkersVpc/);
    // The two reads have no resource-level permissions; nothing else of EC2 (no release, no allocation).
    const reads = ec2Statements(t).filter((s) => s !== eip && s !== eni);
    expect(reads).toEqual([
      { Effect: 'Allow', Action: ['ec2:DescribeAddresses', 'ec2:DescribeNetworkInterfaces'], Resource: '*' },
    ]);
  });

  it.each([
    [{ staticAddresses: 5, maxWorkers: 3 }, /staticAddresses \(5\) must be at least maxWorkers × 2 = 6/],
    [{ staticAddresses: 19 }, /staticAddresses \(19\) must be at least maxWorkers × 2 = 20/],
    [{ staticAddresses: 0 }, /staticAddresses must be an integer ≥ 1/],
  ])('refuses %j: a deployment runs up to twice maxWorkers tasks (maxHealthyPercent 200)', (props, message) => {
    expect(() => synth(props)).toThrow(message);
  });

  it('leaves the default mode as it was: no pool, no claim container, no EC2 permission', () => {
    const d = synth();

    expect(d.findResources('AWS::EC2::EIP')).toEqual({});
    expect(containers(d).map((c) => c.Name)).toEqual(['worker', 'drachtio']);
    expect(containers(d).flatMap((c) => c.DependsOn ?? [])).toEqual([
      { ContainerName: 'drachtio', Condition: 'HEALTHY' },
    ]);
    expect(ec2Statements(d)).toEqual([]);
  });
});

describe('Stack: BridgeStack in fixed-address mode publishes the pool for the PBX allow-list', {
  timeout: 120_000,
}, () => {
  const outdir = mkdtempSync(join(tmpdir(), 'cdk-static-'));
  const app = new App({ outdir });
  new BridgeStack(app, 'Static', { stage: 'test', staticAddresses: 4, maxWorkers: 2, workerImage: IMAGE });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  const template = Template.fromJSON(app.synth().getStackByName('Static').template);
  const eipIds = Object.keys(template.findResources('AWS::EC2::EIP')).sort();

  it('outputs PbxAllowList: the pool addresses, comma-separated', () => {
    const outputs = template.toJSON().Outputs as Record<string, { Value: Cfn }>;

    expect(eipIds).toHaveLength(4);
    expect(outputs.PbxAllowList?.Value).toEqual({ 'Fn::Join': [',', eipIds.map((id) => ({ Ref: id }))] });
  });

  it('keeps the list in a stack-owned SSM String below the prefix, where the settings read (one level) never sees it', () => {
    template.hasResourceProperties('AWS::SSM::Parameter', {
      Name: '/wa-sip-bridge/test/stack/pbx-allow-list',
      Type: 'String',
      Value: { 'Fn::Join': [',', eipIds.map((id) => ({ Ref: id }))] },
    });
  });

  it('passes cdk-nag: the EC2 grants carry their reviewed reasons', () => {
    const report = JSON.parse(readFileSync(join(outdir, 'validation-report.json'), 'utf8')) as {
      pluginReports: Array<{
        pluginName: string;
        violations: Array<{ ruleName: string; violatingConstructs: Array<{ constructPath: string }> }>;
        suppressedViolations: Array<{ ruleName: string; reason: string }>;
      }>;
    };
    const nag = report.pluginReports.find((p) => p.pluginName === 'AwsSolutions')!;

    expect(nag.violations.map((v) => `${v.ruleName} ${v.violatingConstructs.map((c) => c.constructPath)}`)).toEqual([]);
    expect(nag.suppressedViolations.map((v) => v.ruleName).filter((r) => /ec2|Resource::\*/.test(r))).toEqual(
      expect.arrayContaining([
        expect.stringContaining(':elastic-ip/*'),
        expect.stringContaining(':network-interface/*'),
      ]),
    );
  });
});
