/**
 * The `address-claim` container (fixed-address mode) against local fakes over real HTTP: the ECS
 * container metadata endpoint, EC2's query API (form-encoded POST, XML answers) and checkip, which
 * answers the pool address once EC2 associated it with the task's ENI, as the internet gateway does.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EC2Client } from '@aws-sdk/client-ec2';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { realClock } from '#core/clock.ts';
import { claimOrder } from '#worker/ops/address-claim.ts';
import { claimPoolAddress } from '../../../media-worker/image/address-claim.ts';

const TASK_ID = '8f0e2c7a1b3d4e5f9a6b7c8d9e0f1a2b';
const PRIVATE_IP = '10.0.1.23';
const VPC = 'vpc-0abc';
const TASK_ENI = 'eni-0task';
const EPHEMERAL_IP = '198.51.100.77';

interface FakeAddress {
  allocationId: string;
  publicIp: string;
  pool: string;
  eni?: string;
}

/** EC2, ECS metadata and checkip in one fake; `requests` records every EC2 call's form parameters. */
class FakeAws {
  addresses: FakeAddress[] = [];
  /** Addresses another task associates just before this task's AssociateAddress reaches EC2. */
  takenFirst = new Set<string>();
  /** An error code EC2 answers every call with. */
  refuse: string | undefined;
  requests: Array<Record<string, string>> = [];
  readonly server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.method === 'GET' && req.url === '/v4/container') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          Networks: [{ NetworkMode: 'awsvpc', IPv4Addresses: [PRIVATE_IP] }],
          Labels: { 'com.amazonaws.ecs.task-arn': `arn:aws:ecs:eu-west-1:111122223333:task/wa-sip-bridge/${TASK_ID}` },
        }),
      );
    } else if (req.method === 'GET' && req.url === '/checkip') {
      res.end(`${this.addresses.find((a) => a.eni === TASK_ENI)?.publicIp ?? EPHEMERAL_IP}\n`);
    } else {
      const form = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString()));
      this.requests.push(form);
      const [status, xml] = this.#ec2(form);
      res.writeHead(status, { 'content-type': 'text/xml' });
      res.end(xml);
    }
  });

  #ec2(form: Record<string, string>): [number, string] {
    const error = (code: string, message: string): [number, string] => [
      400,
      `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>${code}</Code><Message>${message}</Message></Error></Errors><RequestID>r-1</RequestID></Response>`,
    ];
    const ok = (action: string, body: string): [number, string] => [
      200,
      `<?xml version="1.0" encoding="UTF-8"?><${action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r-1</requestId>${body}</${action}Response>`,
    ];
    if (this.refuse) return error(this.refuse, 'You are not authorized to perform this operation.');
    const filters = new Map<string, string>();
    for (let i = 1; form[`Filter.${i}.Name`]; i++) filters.set(form[`Filter.${i}.Name`]!, form[`Filter.${i}.Value.1`]!);
    switch (form.Action) {
      case 'DescribeNetworkInterfaces': {
        const match = filters.get('addresses.private-ip-address') === PRIVATE_IP && filters.get('vpc-id') === VPC;
        const item = `<item><networkInterfaceId>${TASK_ENI}</networkInterfaceId><vpcId>${VPC}</vpcId><privateIpAddress>${PRIVATE_IP}</privateIpAddress></item>`;
        return ok(form.Action, `<networkInterfaceSet>${match ? item : ''}</networkInterfaceSet>`);
      }
      case 'DescribeAddresses': {
        const pool = filters.get('tag:wa-sip-bridge:pool');
        const items = this.addresses
          .filter((a) => a.pool === pool && filters.get('domain') === 'vpc')
          .map(
            (a) =>
              `<item><publicIp>${a.publicIp}</publicIp><allocationId>${a.allocationId}</allocationId><domain>vpc</domain>` +
              (a.eni
                ? `<associationId>eipassoc-${a.allocationId}</associationId><networkInterfaceId>${a.eni}</networkInterfaceId>`
                : '') +
              `<tagSet><item><key>wa-sip-bridge:pool</key><value>${a.pool}</value></item></tagSet></item>`,
          );
        return ok(form.Action, `<addressesSet>${items.join('')}</addressesSet>`);
      }
      case 'AssociateAddress': {
        const address = this.addresses.find((a) => a.allocationId === form.AllocationId);
        if (!address)
          return error('InvalidAllocationID.NotFound', `The allocation ID '${form.AllocationId}' does not exist`);
        if (this.takenFirst.delete(address.allocationId)) address.eni = 'eni-0another';
        if (address.eni && form.AllowReassociation !== 'true')
          return error(
            'Resource.AlreadyAssociated',
            `resource ${address.allocationId} is already associated with associate-id eipassoc-x`,
          );
        address.eni = form.NetworkInterfaceId!;
        return ok(form.Action, `<return>true</return><associationId>eipassoc-${address.allocationId}</associationId>`);
      }
      default:
        return error('InvalidAction', String(form.Action));
    }
  }
}

describe('the address-claim container against fake ECS metadata, EC2 and checkip endpoints over HTTP', () => {
  const aws = new FakeAws();
  let endpoint: string;
  beforeAll(async () => {
    aws.server.listen(0, '127.0.0.1');
    await once(aws.server, 'listening');
    endpoint = `http://127.0.0.1:${(aws.server.address() as AddressInfo).port}`;
  });
  afterAll(() => aws.server.close());
  beforeEach(() => {
    aws.addresses = [
      { allocationId: 'eipalloc-1', publicIp: '203.0.113.1', pool: 'prod', eni: 'eni-0held' },
      { allocationId: 'eipalloc-2', publicIp: '203.0.113.2', pool: 'prod' },
      { allocationId: 'eipalloc-3', publicIp: '203.0.113.3', pool: 'prod' },
      { allocationId: 'eipalloc-9', publicIp: '203.0.113.9', pool: 'staging' },
    ];
    aws.takenFirst.clear();
    aws.refuse = undefined;
    aws.requests = [];
  });

  const env = () => ({
    ECS_CONTAINER_METADATA_URI_V4: `${endpoint}/v4/container`,
    ADDRESS_POOL: 'prod',
    ADDRESS_POOL_VPC: VPC,
    PUBLIC_ADDRESS_URL: `${endpoint}/checkip`,
  });
  const deps = () => ({
    ec2: new EC2Client({
      endpoint,
      region: 'eu-west-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      maxAttempts: 1,
    }),
    fetch,
    clock: realClock,
    pollEveryMs: 50,
  });
  const free = [
    { allocationId: 'eipalloc-2', publicIp: '203.0.113.2' },
    { allocationId: 'eipalloc-3', publicIp: '203.0.113.3' },
  ];
  const [first, second] = claimOrder(free, TASK_ID);

  it('finds its ENI by private address in the VPC, reads the pool by its tag, associates a free address without reassociation, and checkip confirms it', async () => {
    const claimed = await claimPoolAddress(env(), deps());

    expect(claimed).toMatchObject({
      allocationId: first!.allocationId,
      publicIp: first!.publicIp,
      networkInterfaceId: TASK_ENI,
    });
    expect(aws.requests.map((r) => r.Action)).toEqual([
      'DescribeNetworkInterfaces',
      'DescribeAddresses',
      'AssociateAddress',
    ]);
    expect(aws.requests[0]).toMatchObject({
      'Filter.1.Name': 'addresses.private-ip-address',
      'Filter.1.Value.1': PRIVATE_IP,
      'Filter.2.Name': 'vpc-id',
      'Filter.2.Value.1': VPC,
    });
    expect(aws.requests[1]).toMatchObject({ 'Filter.1.Name': 'tag:wa-sip-bridge:pool', 'Filter.1.Value.1': 'prod' });
    expect(aws.requests[2]).toMatchObject({
      AllocationId: first!.allocationId,
      NetworkInterfaceId: TASK_ENI,
      AllowReassociation: 'false',
    });
  });

  it('a race: another task associated its first choice meanwhile (Resource.AlreadyAssociated), so it takes the next', async () => {
    aws.takenFirst.add(first!.allocationId);

    const claimed = await claimPoolAddress(env(), deps());

    expect(claimed).toMatchObject({ allocationId: second!.allocationId, publicIp: second!.publicIp, raced: 1 });
    expect(aws.requests.filter((r) => r.Action === 'AssociateAddress').map((r) => r.AllocationId)).toEqual([
      first!.allocationId,
      second!.allocationId,
    ]);
  });

  it('fails closed when the whole pool is taken', async () => {
    aws.takenFirst.add('eipalloc-2').add('eipalloc-3');

    await expect(claimPoolAddress(env(), deps())).rejects.toThrow(/AddressClaimError|no free address in the pool/);
  });

  it('fails closed, naming the EC2 call and its error code, when EC2 refuses (no permission)', async () => {
    aws.refuse = 'UnauthorizedOperation';

    await expect(claimPoolAddress(env(), deps())).rejects.toThrow(
      /DescribeNetworkInterfaces: UnauthorizedOperation: You are not authorized/,
    );
  });
});
