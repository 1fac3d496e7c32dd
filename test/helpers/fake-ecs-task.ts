/**
 * What a Fargate task sees around its container, faked on one loopback HTTP server for the worker
 * image's rehearsal (test/interop/image/worker-image.test.ts):
 *
 * - the container metadata endpoint v4 (`ECS_CONTAINER_METADATA_URI_V4`), with `Networks` and
 *   `Labels` as ECS gives them (task ARN, cluster ARN, task definition family and revision);
 * - container credentials (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, which the SDK accepts on
 *   loopback; in ECS the relative URI on 169.254.170.2 serves the same body);
 * - AWS's checkip (`PUBLIC_ADDRESS_URL`): the address the internet sees the task at;
 * - the ECS API (`AWS_ENDPOINT_URL_ECS`, JSON 1.1): DescribeTasks and DescribeServices for the
 *   worker's retirement check.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/** The task this fake describes. */
export interface FakeTaskOptions {
  readonly region: string;
  readonly account: string;
  readonly clusterName: string;
  /** The ECS task id (a task ARN's last segment). */
  readonly taskId: string;
  readonly family: string;
  readonly revision: number;
  readonly serviceName: string;
  /** The task ENI's private IPv4 (loopback here: the worker binds it). */
  readonly privateAddress: string;
  /** What checkip answers. */
  readonly publicAddress: string;
}

/** A request the fake received. */
export interface FakeTaskRequest {
  readonly method: string;
  readonly path: string;
  /** `X-Amz-Target` of ECS API calls. */
  readonly target?: string;
  readonly body?: Record<string, unknown>;
  readonly authorization?: string;
}

/** A running fake. */
export interface FakeEcsTask {
  /** `ECS_CONTAINER_METADATA_URI_V4`. */
  readonly metadataUri: string;
  /** `AWS_CONTAINER_CREDENTIALS_FULL_URI`. */
  readonly credentialsUri: string;
  /** `PUBLIC_ADDRESS_URL`. */
  readonly checkipUrl: string;
  /** `AWS_ENDPOINT_URL_ECS`. */
  readonly ecsEndpoint: string;
  readonly taskArn: string;
  readonly clusterArn: string;
  /** The access key the credentials endpoint hands out (seen in the Authorization of signed calls). */
  readonly accessKeyId: string;
  readonly requests: FakeTaskRequest[];
  /** While set, DescribeServices answers this ECS error. */
  failDescribeServices?: { type: string; message: string };
  close(): Promise<void>;
}

/** Starts the fake on 127.0.0.1. */
export async function startFakeEcsTask(o: FakeTaskOptions): Promise<FakeEcsTask> {
  const clusterArn = `arn:aws:ecs:${o.region}:${o.account}:cluster/${o.clusterName}`;
  const taskArn = `arn:aws:ecs:${o.region}:${o.account}:task/${o.clusterName}/${o.taskId}`;
  const taskDefinitionArn = `arn:aws:ecs:${o.region}:${o.account}:task-definition/${o.family}:${o.revision}`;
  const containerMetadata = {
    DockerId: `${o.taskId}-1234567890`,
    Name: 'worker',
    DockerName: 'worker',
    Image: `${o.account}.dkr.ecr.${o.region}.amazonaws.com/cdk-hnb659fds-container-assets:latest`,
    Labels: {
      'com.amazonaws.ecs.cluster': clusterArn,
      'com.amazonaws.ecs.container-name': 'worker',
      'com.amazonaws.ecs.task-arn': taskArn,
      'com.amazonaws.ecs.task-definition-family': o.family,
      'com.amazonaws.ecs.task-definition-version': String(o.revision),
    },
    DesiredStatus: 'RUNNING',
    KnownStatus: 'RUNNING',
    Limits: { CPU: 2 },
    Type: 'NORMAL',
    ContainerARN: `arn:aws:ecs:${o.region}:${o.account}:container/${o.clusterName}/${o.taskId}/0f1e2d3c`,
    Networks: [
      {
        NetworkMode: 'awsvpc',
        IPv4Addresses: [o.privateAddress],
        AttachmentIndex: 0,
        MACAddress: '0a:1b:2c:3d:4e:5f',
        IPv4SubnetCIDRBlock: '10.0.0.0/24',
        PrivateDNSName: `ip-10-0-0-17.${o.region}.compute.internal`,
        SubnetGatewayIpv4Address: '10.0.0.1/24',
      },
    ],
  };
  const accessKeyId = 'ASIAFAKEECSTASKROLE1';
  const fake: FakeEcsTask = {
    metadataUri: '',
    credentialsUri: '',
    checkipUrl: '',
    ecsEndpoint: '',
    taskArn,
    clusterArn,
    accessKeyId,
    requests: [],
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
  const json = (res: import('node:http').ServerResponse, status: number, body: unknown, type = 'application/json') => {
    res.writeHead(status, { 'content-type': type });
    res.end(JSON.stringify(body));
  };
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString();
    const target = req.headers['x-amz-target'] as string | undefined;
    const path = req.url ?? '/';
    fake.requests.push({
      method: req.method ?? 'GET',
      path,
      ...(target ? { target, body: JSON.parse(text || '{}') } : {}),
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
    });
    if (req.method === 'GET' && path === `/v4/${o.taskId}`) return json(res, 200, containerMetadata);
    if (req.method === 'GET' && path === '/credentials') {
      return json(res, 200, {
        AccessKeyId: accessKeyId,
        SecretAccessKey: 'fake-secret-key',
        Token: 'fake-session-token',
        Expiration: new Date(Date.now() + 6 * 3600_000).toISOString(),
        RoleArn: `arn:aws:iam::${o.account}:role/worker-task-role`,
      });
    }
    if (req.method === 'GET' && path === '/checkip') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`${o.publicAddress}\n`);
      return;
    }
    const ecsJson = 'application/x-amz-json-1.1';
    if (req.method === 'POST' && target === 'AmazonEC2ContainerServiceV20141113.DescribeTasks') {
      return json(
        res,
        200,
        {
          tasks: [{ taskArn, clusterArn, taskDefinitionArn, group: `service:${o.serviceName}`, lastStatus: 'RUNNING' }],
          failures: [],
        },
        ecsJson,
      );
    }
    if (req.method === 'POST' && target === 'AmazonEC2ContainerServiceV20141113.DescribeServices') {
      const failure = fake.failDescribeServices;
      if (failure) return json(res, 400, { __type: failure.type, message: failure.message }, ecsJson);
      return json(
        res,
        200,
        {
          services: [
            {
              serviceName: o.serviceName,
              clusterArn,
              desiredCount: 1,
              runningCount: 1,
              deployments: [{ status: 'PRIMARY', taskDefinition: taskDefinitionArn, desiredCount: 1, runningCount: 1 }],
            },
          ],
          failures: [],
        },
        ecsJson,
      );
    }
    json(res, 404, { message: `fake ECS task: nothing at ${req.method} ${path}` });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  Object.assign(fake, {
    metadataUri: `${base}/v4/${o.taskId}`,
    credentialsUri: `${base}/credentials`,
    checkipUrl: `${base}/checkip`,
    ecsEndpoint: base,
  });
  return fake;
}
