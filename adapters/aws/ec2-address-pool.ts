/**
 * The Elastic IP pool of a stage as the address claim (media-worker/src/ops/address-claim.ts) uses
 * it: the task's ENI by its private address, the pool's addresses by their tag, and an association
 * that never takes an address from another ENI. Each request has its own deadline.
 *
 * IAM: `ec2:DescribeNetworkInterfaces` and `ec2:DescribeAddresses` (no resource-level
 * permissions), `ec2:AssociateAddress` on the pool's tagged allocations and the VPC's ENIs.
 */
import {
  AssociateAddressCommand,
  DescribeAddressesCommand,
  DescribeNetworkInterfacesCommand,
  type EC2Client,
  type Filter,
} from '@aws-sdk/client-ec2';

/** An EC2 call failed or answered something the claim cannot use. */
export class Ec2AddressPoolError extends Error {
  override readonly name = 'Ec2AddressPoolError';
}

/** EC2's error code when AssociateAddress (AllowReassociation=false) meets an associated address. */
export const ALREADY_ASSOCIATED = 'Resource.AlreadyAssociated';

/** Which addresses form the pool, and where the task's ENI lives. */
export interface AddressPoolSelector {
  /** Tag key of the pool, e.g. `wa-sip-bridge:pool`. */
  readonly tagKey: string;
  /** Tag value of the pool: the stage. */
  readonly tagValue: string;
  /** The VPC of the task's ENI (narrows the ENI lookup). */
  readonly vpcId?: string;
}

/** The pool, read and claimed through EC2. */
export class Ec2AddressPool {
  constructor(
    private readonly client: EC2Client,
    private readonly selector: AddressPoolSelector,
    private readonly timeoutMs = 5000,
  ) {}

  /** The id of the one ENI holding `privateIp` (in the VPC, when known). */
  async networkInterfaceOf(privateIp: string): Promise<string> {
    const filters: Filter[] = [{ Name: 'addresses.private-ip-address', Values: [privateIp] }];
    if (this.selector.vpcId) filters.push({ Name: 'vpc-id', Values: [this.selector.vpcId] });
    const out = await this.#call('DescribeNetworkInterfaces', (o) =>
      this.client.send(new DescribeNetworkInterfacesCommand({ Filters: filters }), o),
    );
    const ids = (out.NetworkInterfaces ?? []).flatMap((n) => (n.NetworkInterfaceId ? [n.NetworkInterfaceId] : []));
    if (ids.length !== 1) {
      throw new Ec2AddressPoolError(
        `DescribeNetworkInterfaces: ${ids.length} network interfaces hold ${privateIp}${this.selector.vpcId ? ` in ${this.selector.vpcId}` : ''}, expected 1`,
      );
    }
    return ids[0]!;
  }

  /** Every address tagged as the pool. */
  async poolAddresses(): Promise<
    Array<{ allocationId: string; publicIp: string; associationId?: string; networkInterfaceId?: string }>
  > {
    const filters: Filter[] = [
      { Name: `tag:${this.selector.tagKey}`, Values: [this.selector.tagValue] },
      { Name: 'domain', Values: ['vpc'] },
    ];
    const out = await this.#call('DescribeAddresses', (o) =>
      this.client.send(new DescribeAddressesCommand({ Filters: filters }), o),
    );
    return (out.Addresses ?? []).flatMap((a) =>
      a.AllocationId && a.PublicIp
        ? [
            {
              allocationId: a.AllocationId,
              publicIp: a.PublicIp,
              ...(a.AssociationId ? { associationId: a.AssociationId } : {}),
              ...(a.NetworkInterfaceId ? { networkInterfaceId: a.NetworkInterfaceId } : {}),
            },
          ]
        : [],
    );
  }

  /** Associates the address with the ENI unless it is associated already (then `taken`). */
  async associate(allocationId: string, networkInterfaceId: string): Promise<'associated' | 'taken'> {
    try {
      // No reassociation: an address another task holds is refused, never moved (its calls would drop).
      const input = { AllocationId: allocationId, NetworkInterfaceId: networkInterfaceId, AllowReassociation: false };
      await this.#call(`AssociateAddress ${allocationId}`, (o) =>
        this.client.send(new AssociateAddressCommand(input), o),
      );
      return 'associated';
    } catch (error) {
      if (error instanceof Ec2AddressPoolError && (error.cause as { name?: string })?.name === ALREADY_ASSOCIATED) {
        return 'taken';
      }
      throw error;
    }
  }

  /** Runs one EC2 call under its own deadline; failures name the call. */
  async #call<T>(call: string, run: (options: { abortSignal: AbortSignal }) => Promise<T>): Promise<T> {
    try {
      return await run({ abortSignal: AbortSignal.timeout(this.timeoutMs) });
    } catch (error) {
      const what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      throw new Ec2AddressPoolError(`${call}: ${what}`, { cause: error });
    }
  }
}
