/**
 * The media worker image, rehearsed without a container engine (issue 15 item 3): no engine here
 * can pull `node:22-bookworm-slim`, so the test builds the image's file system by following the
 * Dockerfile itself (test/helpers/dockerfile.ts: its COPY lines through `.dockerignore`, its RUN
 * commands — the esbuild bundle and the production `npm ci`, which needs the npm registry — its
 * ENV and ENTRYPOINT), then starts the entrypoint as ECS would: in the image's WORKDIR, with the
 * environment the stack's task definition sets (read from a synthesized MediaWorkers construct)
 * and what ECS adds, against a fake ECS task (container metadata, credentials, checkip, the ECS
 * API), a fake SSM holding the operator's parameters, and dynalite and local SQS.
 *
 * What differs from AWS, and why: SIP_STACK=inprocess (no drachtio sidecar here), a free SIP_PORT
 * and a private HEALTH_FILE (other suites run beside this one), the task's private address is
 * loopback (the worker binds it), credentials come from a loopback full URI (ECS serves the same
 * body on 169.254.170.2), and each AWS API is reached through `AWS_ENDPOINT_URL_<SERVICE>`, which
 * the SDK honours without any code of ours. Node is this machine's (the test checks its major
 * matches the base image's), and it runs as this user, not `node`.
 *
 * It fails, never skips, when npm, the registry or anything else is missing.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoWorkerRegistry } from '#adapters/aws/dynamo-workers.ts';
import { type LocalAws, startLocalAws } from '#local/emulators.ts';
import { until } from '#test/helpers/async.ts';
import { directoryBytes, type RehearsedImage, rehearseDockerBuild } from '#test/helpers/dockerfile.ts';
import { type FakeEcsTask, startFakeEcsTask } from '#test/helpers/fake-ecs-task.ts';
import { type FakeSsm, startFakeSsm } from '#test/helpers/fake-ssm.ts';
import { freePort } from '#test/helpers/free-port.ts';
import { CallData } from '../../../lib/constructs/call-data.ts';
import { MediaWorkers } from '../../../lib/constructs/media-workers.ts';
import { parameterPrefix } from '../../../lib/settings.ts';

const REPO = new URL('../../../', import.meta.url).pathname;
const STAGE = 'dev';
const PREFIX = parameterPrefix(STAGE);
const TASK_ID = '5f3b9c2e8a7d4e6f9b1c0a2d3e4f5a6b';
const FAMILY = 'WaSipBridgedevWorkersTaskDefA1B2C3D4';
const ACCESS_TOKEN = 'EAAG-rehearsal-token-never-logged';
/** What an operator puts under the stage prefix before the first deploy (README § Deploy). */
const OPERATOR_PARAMETERS: FakeSsm['store'] = {
  [`${PREFIX}/SIP_TARGET_URI`]: { Type: 'String', Value: 'sip:agents@192.0.2.50:5060;transport=tcp' },
  [`${PREFIX}/META_GRAPH_URL`]: { Type: 'String', Value: 'https://graph.facebook.com/v23.0' },
  [`${PREFIX}/META_ACCESS_TOKEN`]: { Type: 'SecureString', Value: ACCESS_TOKEN },
  // How often the worker asks ECS whether it should retire (the default is 30 s; 5 s keeps this short).
  [`${PREFIX}/RETIREMENT_CHECK_SECONDS`]: { Type: 'String', Value: '5' },
};
/** A wide bound for anything the worker does on its own (start, a heartbeat, a drain): a loaded 2-core machine. */
const WIDE_MS = 60_000;

/** A started image: its output so far and how it ended. */
interface Container {
  readonly child: ChildProcess;
  output: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The worker container's environment in the synthesized task definition (`Ref`s filled from `refs`). */
function taskDefinitionEnvironment(refs: Record<string, string>): Record<string, string> {
  const stack = new Stack(new App(), 'Rehearsal');
  new MediaWorkers(stack, 'Workers', {
    data: new CallData(stack, 'Data'),
    stage: STAGE,
    settingsPrefix: PREFIX,
    controlQueuePrefix: `wa-sip-bridge-${STAGE}-worker`,
    image: ContainerImage.fromRegistry('public.ecr.aws/docker/library/node:22-bookworm-slim'),
  });
  const task = Object.values(Template.fromStack(stack).findResources('AWS::ECS::TaskDefinition'))[0] as {
    Properties: { ContainerDefinitions: Array<{ Name: string; Environment: Array<{ Name: string; Value: unknown }> }> };
  };
  const worker = task.Properties.ContainerDefinitions.find((c) => c.Name === 'worker');
  if (!worker) throw new Error('the task definition has no worker container');
  return Object.fromEntries(
    worker.Environment.map(({ Name, Value }) => {
      if (typeof Value === 'string') return [Name, Value];
      const filled = refs[Name];
      if (filled === undefined) throw new Error(`the rehearsal cannot fill ${Name} = ${JSON.stringify(Value)}`);
      return [Name, filled];
    }),
  );
}

/** Every container started, so none outlives the file. */
const containers: Container[] = [];

function startContainer(image: RehearsedImage, env: Record<string, string>): Container {
  const [command, ...args] = image.entrypoint;
  if (command !== 'node') throw new Error(`the entrypoint runs ${String(command)}, not node`);
  const child = spawn(process.execPath, args, { cwd: image.workdir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const container: Container = {
    child,
    output: '',
    exited: once(child, 'exit').then(([code, signal]) => ({ code, signal })) as Container['exited'],
  };
  const keep = (chunk: Buffer) => {
    container.output += chunk.toString();
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  containers.push(container);
  return container;
}

/** How the container ended, or `'still running'` after {@link WIDE_MS}. */
function ended(container: Container) {
  return Promise.race([
    container.exited,
    new Promise<'still running'>((r) => setTimeout(() => r('still running'), WIDE_MS).unref()),
  ]);
}

/** The JSON log lines whose `msg` is `msg`. */
function logLines(container: Container, msg: string): Array<Record<string, unknown>> {
  return container.output
    .split('\n')
    .filter((l) => l.startsWith('{') && l.includes(msg))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === msg);
}

describe('the worker image, rehearsed without a container engine', { timeout: 2 * WIDE_MS }, () => {
  let dir: string;
  let image: RehearsedImage;
  let buildMs: number;
  let aws: LocalAws;
  let ssm: FakeSsm;
  let task: FakeEcsTask;
  let env: Record<string, string>;
  let healthFile: string;
  let worker: Container;
  let registry: DynamoWorkerRegistry;
  let dynamo: DynamoDBClient;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'worker-image-'));
    const started = Date.now();
    image = await rehearseDockerBuild({
      context: REPO,
      into: join(dir, 'stages'),
      // The base image's PATH and HOME stand in; npm reuses this machine's cache (CI's `npm ci` filled it).
      runEnv: {
        PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
        HOME: process.env.HOME ?? dir,
        npm_config_prefer_offline: 'true',
        npm_config_update_notifier: 'false',
        ...Object.fromEntries(
          [
            'npm_config_registry',
            'npm_config_cafile',
            'NODE_EXTRA_CA_CERTS', // a registry behind a TLS-inspecting proxy (a CI machine's CA)
            'SSL_CERT_FILE',
            'HTTPS_PROXY',
            'HTTP_PROXY',
            'NO_PROXY',
            'https_proxy',
            'http_proxy',
            'no_proxy',
          ]
            .filter((k) => process.env[k] !== undefined)
            .map((k) => [k, process.env[k]!]),
        ),
      },
    });
    buildMs = Date.now() - started;

    aws = await startLocalAws({ prefix: `wa-sip-bridge-${STAGE}` });
    ssm = await startFakeSsm({ ...OPERATOR_PARAMETERS });
    task = await startFakeEcsTask({
      region: aws.region,
      account: '123456789012',
      clusterName: 'WaSipBridge-dev-WorkersCluster1A2B3C4D-x9y8z7w6v5u4',
      taskId: TASK_ID,
      family: FAMILY,
      revision: 7,
      serviceName: 'WaSipBridge-dev-WorkersService5E6F7A8B-a1b2c3d4e5f6',
      privateAddress: '127.0.0.1',
      publicAddress: '203.0.113.7',
    });
    // Retirement checks meet a service ECS cannot find (until the test has seen the warning and its stack trace).
    task.failDescribeServices = { type: 'ServiceNotFoundException', message: 'Service not found.' };
    healthFile = join(dir, 'worker-heartbeat');
    env = {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: dir,
      ...image.env,
      ...taskDefinitionEnvironment({
        CALLS_TABLE: aws.tables.calls,
        WORKERS_TABLE: aws.tables.workers,
        PERMISSIONS_TABLE: aws.tables.permissions,
        CALL_JOBS_QUEUE_URL: aws.queues.callJobs,
      }),
      // What ECS adds to every Fargate container.
      ECS_CONTAINER_METADATA_URI_V4: task.metadataUri,
      AWS_CONTAINER_CREDENTIALS_FULL_URI: task.credentialsUri,
      AWS_REGION: aws.region,
      AWS_DEFAULT_REGION: aws.region,
      AWS_EXECUTION_ENV: 'AWS_ECS_FARGATE',
      // What differs here (see the top of this file).
      SIP_STACK: 'inprocess',
      SIP_PORT: String(await freePort()),
      HEALTH_FILE: healthFile,
      PUBLIC_ADDRESS_URL: task.checkipUrl,
      AWS_ENDPOINT_URL_SSM: ssm.endpoint,
      AWS_ENDPOINT_URL_DYNAMODB: aws.dynamodbEndpoint,
      AWS_ENDPOINT_URL_SQS: aws.sqsEndpoint,
      AWS_ENDPOINT_URL_ECS: task.ecsEndpoint,
    };
    dynamo = new DynamoDBClient({
      region: aws.region,
      endpoint: aws.dynamodbEndpoint,
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    registry = new DynamoWorkerRegistry(dynamo, aws.tables.workers);
    worker = startContainer(image, env);
  }, 600_000);

  afterAll(async () => {
    for (const container of containers) {
      if (container.child.exitCode === null && container.child.signalCode === null) container.child.kill('SIGKILL');
      await container.exited;
    }
    dynamo?.destroy();
    await Promise.all([aws?.stop(), ssm?.close(), task?.close()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('holds the three bundles (worker, media thread, address claim) and production dependencies only, on the base image’s Node', async () => {
    const modules = await readdir(join(image.workdir, 'node_modules'));
    const dependencies = Object.keys(
      (JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { dependencies: object }).dependencies,
    );
    const bytes = await directoryBytes(image.workdir);
    console.log(
      `worker image rehearsal: built in ${(buildMs / 1000).toFixed(0)} s; /app holds ${(bytes / 2 ** 20).toFixed(0)} MiB`,
    );

    expect((await readdir(join(image.workdir, 'dist'))).sort()).toEqual([
      'claim-address.mjs',
      'claim-address.mjs.map',
      'media-thread.mjs',
      'media-thread.mjs.map',
      'worker.mjs',
      'worker.mjs.map',
    ]);
    for (const dev of ['tsx', 'vitest', 'aws-cdk-lib', 'aws-cdk', 'esbuild', 'typescript', 'dynalite', 'node']) {
      expect(modules, dev).not.toContain(dev);
    }
    expect(modules).not.toContain('@biomejs');
    for (const dependency of dependencies) {
      expect(existsSync(join(image.workdir, 'node_modules', dependency)), dependency).toBe(true);
    }
    expect(bytes).toBeLessThan(200 * 2 ** 20);
    expect(Number(process.versions.node.split('.')[0])).toBe(
      Number(/^node:(\d+)/.exec(image.stages.at(-1)!.image)?.[1]),
    );
  });

  it('starts as ECS starts it: registered under its task id, with its task definition as its deployment', async () => {
    const registered = await until(async () => (await registry.list()).find((w) => w.workerId === TASK_ID), WIDE_MS, {
      what: () => `the worker in the workers table; its output:\n${worker.output}`,
      everyMs: 250,
    });

    expect(registered).toMatchObject({ deployment: `${FAMILY}:7`, draining: false, activeCalls: 0, maxCalls: 200 });
    expect(registered.controlQueueUrl).toContain(`wa-sip-bridge-${STAGE}-worker-${TASK_ID}`);
  });

  it('takes its addresses from the task metadata and checkip, and its settings from SSM, decrypted', async () => {
    const [prepared] = logLines(worker, 'worker environment prepared');

    expect(prepared?.set).toEqual(
      expect.arrayContaining([
        'WORKER_ID',
        'ECS_TASK_ARN',
        'ECS_CLUSTER',
        'WORKER_DEPLOYMENT',
        'SIP_BIND_ADDRESS',
        'RTP_BIND_ADDRESS',
        'PUBLIC_ADDRESS',
        ...Object.keys(OPERATOR_PARAMETERS).map((name) => name.slice(PREFIX.length + 1)),
      ]),
    );
    expect(ssm.calls[0]?.body).toMatchObject({ Path: PREFIX, WithDecryption: true });
    expect(task.requests.map((r) => r.path)).toEqual(expect.arrayContaining([`/v4/${TASK_ID}`, '/checkip']));
    expect(worker.output).not.toContain(ACCESS_TOKEN);
  });

  it('runs the native libopus addon: the same image refuses to start on the WebAssembly build', async () => {
    // The worker above started without OPUS_ALLOW_WASM, so the addon loaded; forcing the fallback shows the check is live.
    const forced = startContainer(image, { ...env, OPUS_FORCE_WASM: '1' });

    expect(await ended(forced)).toMatchObject({ code: 1 });
    expect(worker.output).not.toMatch(/WebAssembly/);
    expect(forced.output).toMatch(/libopus: the native addon of @evan\/opus is not in use on linux-/);
  });

  it('touches its health file after each heartbeat the workers table accepted', async () => {
    const first = (await until(() => stat(healthFile).catch(() => undefined), WIDE_MS, { what: 'the health file' }))
      .mtimeMs;

    await until(async () => (await stat(healthFile)).mtimeMs > first, WIDE_MS, {
      what: 'a second heartbeat',
      everyMs: 250,
    });
  });

  it('logs stack traces that name the TypeScript sources, which the image does not ship', async () => {
    const failed = await until(
      () =>
        logLines(worker, 'retirement check failed; the worker keeps serving').find(
          (l) => (l.err as { type?: string } | undefined)?.type === 'EcsServiceError',
        ),
      WIDE_MS,
      { what: () => `the failed retirement check; output:\n${worker.output}`, everyMs: 250 },
    );
    delete task.failDescribeServices;
    const answered = task.requests.length;
    const stack = String((failed.err as { stack?: string }).stack);

    expect(stack).toMatch(/EcsServiceError: DescribeServices .*ServiceNotFoundException/);
    expect(stack).toMatch(/\/adapters\/aws\/ecs-service\.ts:\d+:\d+/);
    expect(existsSync(join(image.workdir, 'adapters'))).toBe(false);
    const map = JSON.parse(await readFile(join(image.workdir, 'dist', 'worker.mjs.map'), 'utf8')) as object;
    expect(map).not.toHaveProperty('sourcesContent');
    // The next check reads the service signed with the task role's credentials, and the worker stays.
    await until(() => task.requests.slice(answered).some((r) => r.target?.endsWith('.DescribeServices')), WIDE_MS, {
      what: 'a retirement check ECS answers',
      everyMs: 250,
    });
    const signed = task.requests.find((r) => r.target?.endsWith('.DescribeTasks'));
    expect(signed?.body).toMatchObject({ cluster: task.clusterArn, tasks: [task.taskArn] });
    expect(signed?.authorization).toContain(`Credential=${task.accessKeyId}/`);
    expect(worker.output).not.toMatch(/media worker retiring/);
  });

  it('drains on SIGTERM, leaves the workers table and exits 0', async () => {
    worker.child.kill('SIGTERM');

    expect(await ended(worker)).toEqual({ code: 0, signal: null });
    expect(logLines(worker, 'media worker stopped')).toHaveLength(1);
    expect((await registry.list()).map((w) => w.workerId)).not.toContain(TASK_ID);
  });

  it('exits non-zero naming the key when an operator parameter is missing (a first deploy)', async () => {
    delete ssm.store[`${PREFIX}/SIP_TARGET_URI`];

    const firstDeploy = startContainer(image, env);

    expect(await ended(firstDeploy)).toMatchObject({ code: 1 });
    expect(firstDeploy.output).toMatch(/^media-worker: .*SIP_TARGET_URI.*required but not set/m);
  });
});
