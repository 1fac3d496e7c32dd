/**
 * Fixed addresses (issue 15 item 1): each task claims an Elastic IP of the stage's pool for its own
 * ENI before it serves, and fails closed without one. The rule on a fake pool and an injected clock.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '#core/clock.ts';
import { until } from '#test/helpers/async.ts';
import {
  AddressClaimError,
  type AddressPoolPort,
  claimAddress,
  claimOrder,
  type PoolAddress,
} from '#worker/ops/address-claim.ts';

const ENI = 'eni-0task';
const TASK = { privateIp: '10.0.1.23', taskId: '8f0e2c7a1b3d4e5f9a6b7c8d9e0f1a2b' };
const address = (n: number, extra: Partial<PoolAddress> = {}): PoolAddress => ({
  allocationId: `eipalloc-${n}`,
  publicIp: `203.0.113.${n}`,
  ...extra,
});

/** A pool in memory: `stolen` addresses are taken by another task between the read and the association. */
function fakePool(addresses: PoolAddress[], stolen: string[] = []) {
  const associations: string[] = [];
  const pool: AddressPoolPort & { associations: string[]; onEni: () => string | undefined } = {
    associations,
    onEni: () => addresses.find((a) => a.networkInterfaceId === ENI)?.publicIp,
    async networkInterfaceOf(ip) {
      if (ip !== TASK.privateIp) throw new Error(`no ENI holds ${ip}`);
      return ENI;
    },
    async poolAddresses() {
      return addresses.map((a) => ({ ...a }));
    },
    async associate(allocationId, eni) {
      associations.push(allocationId);
      const i = addresses.findIndex((a) => a.allocationId === allocationId);
      if (stolen.includes(allocationId) || addresses[i]!.associationId) return 'taken';
      addresses[i] = { ...addresses[i]!, associationId: `eipassoc-${allocationId}`, networkInterfaceId: eni };
      return 'associated';
    },
  };
  return pool;
}

describe('claiming a pool address', () => {
  it('associates a free address with its own ENI, passing over those other tasks hold, and confirms it through checkip', async () => {
    const held = { associationId: 'eipassoc-x', networkInterfaceId: 'eni-other' };
    const pool = fakePool([address(1, held), address(2), address(3, held)]);

    const claimed = await claimAddress(pool, TASK, { publicAddress: async () => pool.onEni() ?? '198.51.100.9' });

    expect(claimed).toMatchObject({ allocationId: 'eipalloc-2', publicIp: '203.0.113.2', how: 'associated' });
    expect(pool.associations).toEqual(['eipalloc-2']);
  });

  it('spreads tasks starting together over the pool: each task tries the addresses in its own order', () => {
    const free = Array.from({ length: 10 }, (_, i) => address(i + 1));
    const firsts = new Set(Array.from({ length: 20 }, (_, i) => claimOrder(free, `task-${i}`)[0]!.allocationId));

    expect(firsts.size).toBeGreaterThan(5);
    // …and one task always tries in the same order.
    expect(claimOrder(free, 'task-1')).toEqual(claimOrder([...free].reverse(), 'task-1'));
  });

  it('moves to the next address when another task associated one first (EC2 refuses: no reassociation)', async () => {
    const free = [address(1), address(2), address(3)];
    const [first, second] = claimOrder(free, TASK.taskId);
    const pool = fakePool(free, [first!.allocationId]);

    const claimed = await claimAddress(pool, TASK, { publicAddress: async () => pool.onEni() ?? '198.51.100.9' });

    expect(pool.associations).toEqual([first!.allocationId, second!.allocationId]);
    expect(claimed).toMatchObject({ allocationId: second!.allocationId, raced: 1 });
  });

  it('keeps the address already on its ENI (a repeated claim) without associating another', async () => {
    const pool = fakePool([address(1), address(2, { associationId: 'eipassoc-2', networkInterfaceId: ENI })]);

    const claimed = await claimAddress(pool, TASK, { publicAddress: async () => '203.0.113.2' });

    expect(claimed).toMatchObject({ allocationId: 'eipalloc-2', how: 'kept' });
    expect(pool.associations).toEqual([]);
  });

  it('fails closed when every address is taken, saying how big the pool must be', async () => {
    const free = [address(1), address(2)];
    const pool = fakePool(
      [...free, address(3, { associationId: 'a', networkInterfaceId: 'eni-other' })],
      ['eipalloc-1', 'eipalloc-2'],
    );

    const claim = claimAddress(pool, TASK, { publicAddress: async () => '198.51.100.9' });

    await expect(claim).rejects.toThrow(AddressClaimError);
    await expect(claim).rejects.toThrow(
      /no free address in the pool for eni-0task .*3 addresses, 2 free when read, 2 taken by other tasks meanwhile.*maxWorkers × 2/,
    );
  });

  it('fails closed when the pool is empty', async () => {
    await expect(claimAddress(fakePool([]), TASK, { publicAddress: async () => '' })).rejects.toThrow(
      /the address pool holds no address/,
    );
  });

  it('waits, polling checkip, until the internet sees the task at the claimed address', async () => {
    const clock = new ManualClock();
    const pool = fakePool([address(1)]);
    const answers = ['198.51.100.9', '198.51.100.9'];
    let reads = 0;
    const publicAddress = async () => {
      reads++;
      const answer = answers.shift();
      if (answer) return answer;
      return pool.onEni()!;
    };

    const claim = claimAddress(pool, TASK, { publicAddress, clock, pollEveryMs: 2000 });
    await until(() => clock.pendingTimers === 1);
    clock.advance(2000);
    await until(() => reads === 2 && clock.pendingTimers === 1);
    clock.advance(2000);

    expect(await claim).toMatchObject({ publicIp: '203.0.113.1' });
    expect(reads).toBe(3);
    expect(clock.now()).toBe(4000);
  });

  it('fails closed when checkip still names another address 60 s after the association', async () => {
    const clock = new ManualClock();
    let reads = 0;
    const claim = claimAddress(fakePool([address(1)]), TASK, {
      publicAddress: async () => {
        reads++;
        if (reads % 2) return '198.51.100.9';
        throw new Error('connect ETIMEDOUT');
      },
      clock,
    });
    const failed = claim.catch((error: unknown) => error);

    for (let t = 0; t < 60_000; t += 2000) {
      await until(() => clock.pendingTimers === 1);
      clock.advance(2000);
    }

    const error = await failed;
    expect(error).toBeInstanceOf(AddressClaimError);
    expect(String(error)).toMatch(
      /does not see the task at 203\.0\.113\.1 60000 ms after the association \(checkip answered 198\.51\.100\.9\)/,
    );
    expect(reads).toBe(31); // at 0, 2 s, … 60 s
  });
});
