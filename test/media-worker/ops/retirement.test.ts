/**
 * Retire instead of stall (issue 15 item 5): a worker with calls holds scale-in protection, so
 * ECS waits for it; a worker that keeps taking jobs never runs dry. These stories decide who
 * retires, on an injected clock; the ECS side is read from a fake ECS endpoint over real HTTP.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ECSClient } from '@aws-sdk/client-ecs';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EcsServiceError, EcsServiceReader } from '#adapters/aws/ecs-service.ts';
import { ManualClock } from '#core/clock.ts';
import {
  type RegisteredWorker,
  type RetirementReason,
  RetirementWatch,
  retirementReason,
  type ServiceView,
} from '#worker/ops/retirement.ts';

const NOW = 1_000_000;
const worker = (workerId: string, activeCalls: number, extra: Partial<RegisteredWorker> = {}): RegisteredWorker => ({
  workerId,
  deployment: 'workers:7',
  activeCalls,
  draining: false,
  heartbeatAt: NOW - 1000,
  ...extra,
});
const service = (extra: Partial<ServiceView> = {}): ServiceView => ({
  ownDeployment: 'workers:7',
  primaryDeployment: 'workers:7',
  desiredCount: 3,
  ...extra,
});
const decide = (workerId: string, s: ServiceView, workers: RegisteredWorker[]) =>
  retirementReason({ workerId, service: s, workers, now: NOW, freshMs: 30_000 });

describe('who retires', () => {
  it('nobody, while the service runs as many workers as it wants', () => {
    const all = [worker('a', 40), worker('b', 2), worker('c', 10)];

    expect(all.map((w) => decide(w.workerId, service(), all))).toEqual([undefined, undefined, undefined]);
  });

  it('a worker of an older deployment, even with calls (it finishes them, takes no new ones)', () => {
    const all = [worker('old', 80, { deployment: 'workers:6' }), worker('new', 0)];

    expect(decide('old', service({ ownDeployment: 'workers:6' }), all)).toBe('superseded');
  });

  it('after a rollback, the workers of the deployment rolled away from', () => {
    expect(decide('n', service({ ownDeployment: 'workers:8', primaryDeployment: 'workers:7' }), [])).toBe('superseded');
  });

  it('after scale-in, the least loaded surplus workers, the same ones whoever decides', () => {
    const all = [worker('a', 40), worker('b', 2), worker('c', 10), worker('d', 2)];
    const s = service({ desiredCount: 2 });

    expect(all.map((w) => [w.workerId, decide(w.workerId, s, all)])).toEqual([
      ['a', undefined],
      ['b', 'surplus'],
      ['c', undefined],
      ['d', 'surplus'],
    ]);
  });

  it('counts neither draining workers, stale heartbeats nor other deployments as live', () => {
    const all = [
      worker('a', 5),
      worker('b', 9),
      worker('gone', 0, { heartbeatAt: NOW - 60_000 }),
      worker('leaving', 0, { draining: true }),
      worker('old', 0, { deployment: 'workers:6' }),
    ];

    expect(decide('a', service({ desiredCount: 2 }), all)).toBeUndefined();
    expect(decide('a', service({ desiredCount: 1 }), all)).toBe('surplus');
  });
});

describe('the retirement watch', () => {
  const logger = pino({ level: 'silent' });

  it('checks on its interval and retires the worker once', async () => {
    const clock = new ManualClock(NOW);
    let view = service();
    const retired: Array<[RetirementReason, Record<string, unknown>]> = [];
    const watch = new RetirementWatch({
      workerId: 'a',
      service: async () => view,
      workers: async () => [worker('a', 3)],
      retire: (reason, detail) => retired.push([reason, detail]),
      intervalMs: 30_000,
      freshMs: 30_000,
      logger,
      clock,
    });
    watch.start();

    await clock.run(60_000, 30_000, () => new Promise((r) => setImmediate(r)));
    expect(retired).toEqual([]);

    view = service({ primaryDeployment: 'workers:8' }); // a deployment started
    await clock.run(90_000, 30_000, () => new Promise((r) => setImmediate(r)));

    expect(retired).toEqual([
      ['superseded', { ownDeployment: 'workers:7', primaryDeployment: 'workers:8', desiredCount: 3 }],
    ]);
    await watch.close();
  });

  it('fails safe: an unreadable service retires nobody, and the next check tries again', async () => {
    let fail = true;
    const retired: RetirementReason[] = [];
    const watch = new RetirementWatch({
      workerId: 'a',
      service: async () => {
        if (fail) throw new EcsServiceError('AccessDenied');
        return service({ ownDeployment: 'workers:6' });
      },
      workers: async () => [],
      retire: (reason) => retired.push(reason),
      intervalMs: 30_000,
      freshMs: 30_000,
      logger,
      clock: new ManualClock(NOW),
    });

    expect(await watch.check()).toBe(false);
    fail = false;
    expect(await watch.check()).toBe(true);
    expect(await watch.check()).toBe(false); // closed once retired
    expect(retired).toEqual(['superseded']);
  });
});

describe('the ECS service as the worker reads it (fake ECS endpoint over HTTP)', () => {
  const CLUSTER = 'arn:aws:ecs:eu-west-1:111122223333:cluster/wa-sip-bridge';
  const TASK = 'arn:aws:ecs:eu-west-1:111122223333:task/wa-sip-bridge/8f0e2c7a';
  const TD = (rev: number) => `arn:aws:ecs:eu-west-1:111122223333:task-definition/WaSipBridgeWorkers:${rev}`;
  let server: Server;
  let endpoint: string;
  const requests: Array<{ target: string; body: Record<string, unknown> }> = [];
  let taskGroup = 'service:wa-sip-bridge-workers';

  beforeAll(async () => {
    server = createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const target = String(req.headers['x-amz-target']);
      const body = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>;
      requests.push({ target, body });
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
      if (target.endsWith('.DescribeTasks')) {
        res.end(
          JSON.stringify({ tasks: [{ taskArn: TASK, group: taskGroup, taskDefinitionArn: TD(7) }], failures: [] }),
        );
      } else if (target.endsWith('.DescribeServices')) {
        res.end(
          JSON.stringify({
            services: [
              {
                serviceName: 'wa-sip-bridge-workers',
                desiredCount: 4,
                deployments: [
                  { status: 'PRIMARY', taskDefinition: TD(8) },
                  { status: 'ACTIVE', taskDefinition: TD(7) },
                ],
              },
            ],
            failures: [],
          }),
        );
      } else {
        res.end('{}');
      }
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => server.close());

  const client = () =>
    new ECSClient({
      endpoint,
      region: 'eu-west-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      maxAttempts: 1,
    });

  it('finds its service from its own task once, then reads the primary deployment on every check', async () => {
    requests.length = 0;
    const reader = new EcsServiceReader(client(), CLUSTER, TASK);

    expect(await reader.view()).toEqual({
      ownDeployment: 'WaSipBridgeWorkers:7',
      primaryDeployment: 'WaSipBridgeWorkers:8',
      desiredCount: 4,
    });
    await reader.view();

    expect(requests.map((r) => r.target.split('.')[1])).toEqual([
      'DescribeTasks',
      'DescribeServices',
      'DescribeServices',
    ]);
    expect(requests[0]!.body).toEqual({ cluster: CLUSTER, tasks: [TASK] });
    expect(requests[1]!.body).toEqual({ cluster: CLUSTER, services: ['wa-sip-bridge-workers'] });
  });

  it('a task no service started (a one-off run-task) is an error, so nothing retires', async () => {
    taskGroup = 'family:WaSipBridgeWorkers';
    try {
      await expect(new EcsServiceReader(client(), CLUSTER, TASK).view()).rejects.toThrow(/belongs to no ECS service/);
    } finally {
      taskGroup = 'service:wa-sip-bridge-workers';
    }
  });
});
