/**
 * CDK app entry: instantiates the stack of one stage and runs cdk-nag's AwsSolutions checks on it.
 * Env-agnostic, so `cdk synth` needs no AWS credentials and no lookups.
 *
 * Context (`-c key=value` or cdk.json):
 * - `stage` — default `prod`; the stack is `WaSipBridge-<stage>`, settings under `/wa-sip-bridge/<stage>/`
 * - `pbxCidrs` — comma-separated IPv4 CIDRs the PBX sends SIP from
 * - `pbxMediaCidrs` — comma-separated IPv4 CIDRs the PBX sends RTP from (default: `pbxCidrs`)
 * - `alarmEmail` — e-mail address subscribed to the alarms
 * - `settingsKeyArn` — KMS key of the SecureString settings (default: `alias/aws/ssm`)
 * - `minWorkers` (0 allowed), `maxWorkers`, `maxCallsPerWorker` — worker fleet size (integers;
 *   anything else stops the synth naming the key)
 * - `peakMinWorkers`, `peakStart`, `peakEnd` — contact-centre hours: at least `peakMinWorkers` between
 *   the two schedules, e.g. `cron(0 7 ? * MON-FRI *)` and `cron(0 19 ? * MON-FRI *)` (UTC)
 * - `cpuArchitecture` — `arm64` (default, Graviton) or `x86_64`, for the tasks and their images
 * - `vcpus` — vCPUs of a worker task, 1, 2, 4 or 8 (one media thread each; default 2)
 * - `vpcCidr` — the VPC's IPv4 range, /16 to /24 (default 10.0.0.0/16)
 * - `sipAdvertisedAddress` — `public` (default), `private` (a PBX over VPN/Direct Connect) or an IPv4
 * - `pbxRouteTarget` — a `tgw-…` or `vgw-…` id the PBX's ranges are routed to
 * - `existingVpcId`, `existingSubnetIds`, `existingSubnetAzs` — run in an existing VPC: its public
 *   subnets (comma-separated) and their zones in the same order (synth stays offline: no lookup)
 * - `staticAddresses` — fixed-address mode: a pool of this many Elastic IPs the workers claim, at
 *   least maxWorkers × 2; output `PbxAllowList` (default: none, each task's public IP changes)
 * - `sipDomainZoneId`, `sipDomainName`, `healthCheckPrefixList` — with `staticAddresses`: a DNS name
 *   (e.g. `sip.example.com`) in that Route 53 hosted zone answering with the live workers' pool
 *   addresses (a TCP health check per address), output `SipDomainName`; the prefix list is the
 *   region's `com.amazonaws.<region>.route53-healthchecks` (`pl-…`), admitted to SIP over TCP
 * - `sipTlsSecret` — SIP over TLS on 5061: a Secrets Manager secret (ARN or name) or an SSM
 *   SecureString (`/name` or ARN) holding the PEM certificate chain, then the PEM private key
 *   (default: no TLS listener)
 */
import { Annotations, App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { BridgeStack } from '../lib/stacks/bridge-stack.ts';

const app = new App();
const context = (key: string): string | undefined => {
  const value = app.node.tryGetContext(key) as unknown;
  return value === undefined || value === '' ? undefined : String(value);
};
const list = (key: string) =>
  context(key)
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
/** An integer context value; anything else stops the synth, naming the key. */
const count = (key: string): number | undefined => {
  const raw = context(key);
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw new TypeError(`context ${key} must be a whole number, got ${JSON.stringify(raw)}`);
  return Number(raw);
};

const stage = context('stage') ?? 'prod';
const pbxCidrs = list('pbxCidrs');
const stack = new BridgeStack(app, `WaSipBridge-${stage}`, {
  stage,
  description: `wa-sip-bridge (${stage}): WhatsApp Business calls to and from a SIP PBX`,
  ...(pbxCidrs ? { pbxSignallingCidrs: pbxCidrs } : {}),
  ...(list('pbxMediaCidrs') ? { pbxMediaCidrs: list('pbxMediaCidrs')! } : {}),
  ...(context('alarmEmail') ? { alarmEmail: context('alarmEmail')! } : {}),
  ...(context('settingsKeyArn') ? { settingsKeyArn: context('settingsKeyArn')! } : {}),
  ...(count('minWorkers') === undefined ? {} : { minWorkers: count('minWorkers')! }),
  ...(count('maxWorkers') === undefined ? {} : { maxWorkers: count('maxWorkers')! }),
  ...(count('peakMinWorkers') === undefined
    ? {}
    : {
        peakHours: {
          minWorkers: count('peakMinWorkers')!,
          start: context('peakStart') ?? 'cron(0 7 ? * MON-FRI *)',
          end: context('peakEnd') ?? 'cron(0 19 ? * MON-FRI *)',
        },
      }),
  ...(count('maxCallsPerWorker') === undefined ? {} : { maxCallsPerWorker: count('maxCallsPerWorker')! }),
  ...(count('vcpus') === undefined ? {} : { vcpus: count('vcpus') as 1 | 2 | 4 | 8 }),
  ...(context('cpuArchitecture') ? { cpuArchitecture: context('cpuArchitecture') as 'arm64' | 'x86_64' } : {}),
  ...(context('vpcCidr') ? { vpcCidr: context('vpcCidr')! } : {}),
  ...(context('sipAdvertisedAddress') ? { sipAdvertisedAddress: context('sipAdvertisedAddress')! } : {}),
  ...(context('pbxRouteTarget') ? { pbxRouteTarget: context('pbxRouteTarget')! } : {}),
  ...(context('existingVpcId')
    ? {
        existingVpc: {
          vpcId: context('existingVpcId')!,
          publicSubnetIds: list('existingSubnetIds') ?? [],
          availabilityZones: list('existingSubnetAzs') ?? [],
        },
      }
    : {}),
  ...(count('staticAddresses') === undefined ? {} : { staticAddresses: count('staticAddresses')! }),
  ...(context('sipDomainZoneId') ? { sipDomainZoneId: context('sipDomainZoneId')! } : {}),
  ...(context('sipDomainName') ? { sipDomainName: context('sipDomainName')! } : {}),
  ...(context('healthCheckPrefixList') ? { healthCheckPrefixList: context('healthCheckPrefixList')! } : {}),
  ...(context('sipTlsSecret') ? { sipTlsSecret: context('sipTlsSecret')! } : {}),
});
if (!pbxCidrs) {
  Annotations.of(stack).addWarningV2(
    'wa-sip-bridge:no-pbx-cidrs',
    'No pbxCidrs context: the media workers accept no inbound SIP or RTP. Deploy with -c pbxCidrs=<cidr,...>.',
  );
}
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
