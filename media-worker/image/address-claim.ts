/**
 * The `address-claim` container's work (fixed-address mode, `-c staticAddresses=<n>`): reads the
 * task's private address and id from the ECS container metadata, claims a free address of the
 * stage's Elastic IP pool for the task's ENI through EC2, and waits until checkip sees the task at
 * it (media-worker/src/ops/address-claim.ts). drachtio-server and the worker start only once this
 * container exited 0 (ECS `dependsOn` SUCCESS), and then discover the pool address as their public
 * one.
 *
 * Environment (set by the stack): `ECS_CONTAINER_METADATA_URI_V4` (ECS), `ADDRESS_POOL` (the
 * stage, the pool tag's value), `ADDRESS_POOL_TAG` (default `wa-sip-bridge:pool`),
 * `ADDRESS_POOL_VPC` (the VPC id), `PUBLIC_ADDRESS_URL` (default checkip), `AWS_REGION` (ECS).
 */
import { EC2Client } from '@aws-sdk/client-ec2';
import { Ec2AddressPool } from '#adapters/aws/ec2-address-pool.ts';
import type { Clock } from '#core/clock.ts';
import { ADDRESS_POOL_TAG, AddressClaimError, type ClaimedAddress, claimAddress } from '../src/ops/address-claim.ts';
import { containerMetadata, DEFAULT_PUBLIC_ADDRESS_URL, ecsTaskId, IPV4, privateIpv4 } from './environment.ts';

/** Collaborators, replaceable in tests. */
export interface AddressClaimDeps {
  readonly ec2: EC2Client;
  readonly fetch: typeof fetch;
  readonly clock?: Clock;
  /** Between two checkip reads. @default 2000 */
  readonly pollEveryMs?: number;
}

/** Claims a pool address for this task; throws a named error when it cannot (fail closed). */
export async function claimPoolAddress(
  env: Record<string, string | undefined>,
  deps: AddressClaimDeps = {
    ec2: new EC2Client({ maxAttempts: 3, requestHandler: { connectionTimeout: 2000, requestTimeout: 5000 } }),
    fetch,
  },
): Promise<ClaimedAddress> {
  const metadataUri = env.ECS_CONTAINER_METADATA_URI_V4;
  const pool = env.ADDRESS_POOL;
  if (!metadataUri) throw new AddressClaimError('ECS_CONTAINER_METADATA_URI_V4 is not set: not in an ECS task');
  if (!pool) throw new AddressClaimError('ADDRESS_POOL (the pool tag value) is not set');
  const metadata = await containerMetadata(metadataUri, deps.fetch);
  const checkip = env.PUBLIC_ADDRESS_URL ?? DEFAULT_PUBLIC_ADDRESS_URL;
  return claimAddress(
    new Ec2AddressPool(deps.ec2, {
      tagKey: env.ADDRESS_POOL_TAG ?? ADDRESS_POOL_TAG,
      tagValue: pool,
      ...(env.ADDRESS_POOL_VPC ? { vpcId: env.ADDRESS_POOL_VPC } : {}),
    }),
    { privateIp: privateIpv4(metadataUri, metadata), taskId: ecsTaskId(metadataUri, metadata) },
    {
      publicAddress: () => publicAddress(checkip, deps.fetch),
      ...(deps.clock ? { clock: deps.clock } : {}),
      ...(deps.pollEveryMs === undefined ? {} : { pollEveryMs: deps.pollEveryMs }),
    },
  );
}

/** One checkip read (3 s). */
async function publicAddress(url: string, fetchFn: typeof fetch): Promise<string> {
  const res = await fetchFn(url, { signal: AbortSignal.timeout(3000) });
  const text = (await res.text()).trim();
  if (!res.ok || !IPV4.test(text)) throw new Error(`HTTP ${res.status}: ${text.slice(0, 60)}`);
  return text;
}
