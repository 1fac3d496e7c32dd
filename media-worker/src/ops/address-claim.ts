/**
 * Fixed addresses (issue 15 item 1): in `staticAddresses` mode the stack allocates a pool of
 * Elastic IPs tagged with the stage, and every task claims one for its own ENI before drachtio-server
 * and the worker start (the `address-claim` container; see docs/architecture.md, "Fixed addresses").
 * The PBX then allow-lists the pool, and the task's INVITEs, RTP and Contact all use a pool address.
 *
 * The claim, fail closed — a task without a pool address must not serve:
 * 1. find the task's ENI by its private address;
 * 2. read the pool; an address already on this ENI (a repeated claim) is kept;
 * 3. try the free addresses in an order of their own per task (a hash of task id and allocation
 *    id), so tasks starting together mostly try different addresses first; an address another task
 *    took meanwhile (EC2 refuses the association: no reassociation) moves on to the next;
 * 4. confirm: the address the internet sees the task at (checkip) becomes the claimed one, within a
 *    bound, since drachtio-server and the worker learn their advertised address the same way.
 *
 * No release step: when the task stops, Fargate deletes its ENI and the association goes with it,
 * so the address is free for the next task.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { type Clock, realClock } from '#core/clock.ts';

/** Tag key of the pool's addresses (the value is the stage); the stack tags, the claim filters. */
export const ADDRESS_POOL_TAG = 'wa-sip-bridge:pool';

/** One address of the pool as EC2 describes it. */
export interface PoolAddress {
  readonly allocationId: string;
  readonly publicIp: string;
  /** Set while the address is associated (with any ENI). */
  readonly associationId?: string;
  readonly networkInterfaceId?: string;
}

/** What {@link claimAddress} needs of EC2 (adapters/aws/ec2-address-pool.ts). */
export interface AddressPoolPort {
  /** The id of the ENI holding `privateIp`. */
  networkInterfaceOf(privateIp: string): Promise<string>;
  /** Every address of the pool, associated or not. */
  poolAddresses(): Promise<PoolAddress[]>;
  /** Associates without reassociation: `taken` when the address is already associated elsewhere. */
  associate(allocationId: string, networkInterfaceId: string): Promise<'associated' | 'taken'>;
}

/** The task could not claim a pool address; it must not serve. */
export class AddressClaimError extends Error {
  override readonly name = 'AddressClaimError';
}

/** The task claiming. */
export interface ClaimingTask {
  /** The task ENI's private IPv4 (container metadata). */
  readonly privateIp: string;
  /** The ECS task id: orders the pool for this task. */
  readonly taskId: string;
}

/** How {@link claimAddress} confirms. */
export interface ClaimOptions {
  /** The address the internet sees this task at now (checkip); may throw. */
  readonly publicAddress: () => Promise<string>;
  /** Time allowed from the association until checkip names the address. @default 60000 */
  readonly confirmWithinMs?: number;
  /** Between two checkip reads. @default 2000 */
  readonly pollEveryMs?: number;
  readonly clock?: Clock;
}

/** The claimed address and how it came to the task. */
export interface ClaimedAddress extends PoolAddress {
  readonly networkInterfaceId: string;
  /** `kept`: it was already on this ENI. */
  readonly how: 'associated' | 'kept';
  /** Addresses another task took between the read and the association. */
  readonly raced: number;
}

/**
 * The order in which `taskId` tries the free addresses: each address ranked by a hash of the task
 * id and its allocation id (rendezvous hashing), so concurrent tasks spread over the pool instead
 * of all racing for its first address, and one task always tries in the same order.
 */
export function claimOrder(addresses: readonly PoolAddress[], taskId: string): PoolAddress[] {
  const rank = (a: PoolAddress) => createHash('sha256').update(`${taskId}/${a.allocationId}`).digest('hex');
  return addresses
    .map((a) => ({ a, r: rank(a) }))
    .sort((x, y) => (x.r < y.r ? -1 : x.r > y.r ? 1 : 0))
    .map(({ a }) => a);
}

/**
 * Claims a pool address for the task's ENI and waits until the internet sees the task at it.
 * @throws {@link AddressClaimError} when no address could be claimed or confirmed; errors of the
 *   port propagate as they are (each names its EC2 call)
 */
export async function claimAddress(
  pool: AddressPoolPort,
  task: ClaimingTask,
  options: ClaimOptions,
): Promise<ClaimedAddress> {
  const clock = options.clock ?? realClock;
  const eni = await pool.networkInterfaceOf(task.privateIp);
  const addresses = await pool.poolAddresses();
  if (addresses.length === 0) throw new AddressClaimError('the address pool holds no address');
  let claimed: ClaimedAddress | undefined;
  const mine = addresses.find((a) => a.networkInterfaceId === eni);
  let raced = 0;
  if (mine) claimed = { ...mine, networkInterfaceId: eni, how: 'kept', raced };
  for (const candidate of mine
    ? []
    : claimOrder(
        addresses.filter((a) => !a.associationId),
        task.taskId,
      )) {
    if ((await pool.associate(candidate.allocationId, eni)) === 'associated') {
      claimed = { ...candidate, networkInterfaceId: eni, how: 'associated', raced };
      break;
    }
    raced++;
  }
  if (!claimed) {
    const free = addresses.filter((a) => !a.associationId).length;
    throw new AddressClaimError(
      `no free address in the pool for ${eni} (task ${task.taskId}): ${addresses.length} addresses, ${free} free when read, ${raced} taken by other tasks meanwhile; the pool must hold maxWorkers × 2`,
    );
  }
  await confirm(claimed.publicIp, options, clock);
  return claimed;
}

/** Polls checkip until it answers `publicIp`, at most `confirmWithinMs` on the clock. */
async function confirm(publicIp: string, options: ClaimOptions, clock: Clock): Promise<void> {
  const within = options.confirmWithinMs ?? 60_000;
  const every = options.pollEveryMs ?? 2000;
  const deadline = clock.now() + within;
  let last = 'no answer';
  for (;;) {
    try {
      const seen = await options.publicAddress();
      if (seen === publicIp) return;
      last = `answered ${seen}`;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    if (clock.now() >= deadline) {
      throw new AddressClaimError(
        `the internet does not see the task at ${publicIp} ${within} ms after the association (checkip ${last})`,
      );
    }
    await new Promise<void>((resolve) => clock.setTimeout(resolve, Math.min(every, deadline - clock.now())));
  }
}
