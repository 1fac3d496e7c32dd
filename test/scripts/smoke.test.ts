import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoWorkerRegistry, type WorkerInfo } from '#adapters/aws/dynamo-workers.ts';
import { main, runSmoke } from '../../scripts/smoke.ts';
import {
  eventually,
  startTestStack,
  TEST_API_KEY,
  TEST_SECRET,
  TEST_VERIFY_TOKEN,
  type TestStack,
} from '../helpers/test-stack.ts';

const run = promisify(execFile);

describe('Script: smoke', () => {
  let stack: TestStack;
  let client: DynamoDBClient;
  let registry: DynamoWorkerRegistry;
  const secrets = { verifyToken: TEST_VERIFY_TOKEN, appSecret: TEST_SECRET, apiKey: TEST_API_KEY };
  beforeAll(async () => {
    // With its media worker and SIP agent: the worker's OPTIONS to the PBX is one of the checks.
    stack = await startTestStack({}, { bridge: true });
    client = new DynamoDBClient({
      region: stack.aws.region,
      endpoint: stack.aws.dynamodbEndpoint,
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    registry = new DynamoWorkerRegistry(client, stack.aws.tables.workers);
    await eventually(
      async () => (await registry.list()).some((w) => w.sipTargets?.some((t) => t.status !== undefined)),
      20_000,
      'the worker’s first heartbeat with its OPTIONS check',
    );
  }, 60_000);
  afterAll(async () => {
    client?.destroy();
    await stack?.stop();
  });

  /** A live worker (fresh heartbeat) as another task would register it. */
  const liveWorker = (workerId: string, sipTargets: WorkerInfo['sipTargets']): WorkerInfo => ({
    workerId,
    controlQueueUrl: `http://127.0.0.1:1/000/${workerId}`,
    activeCalls: 0,
    callIds: [],
    maxCalls: 10,
    draining: false,
    heartbeatAt: Date.now(),
    startedAt: Date.now() - 60_000,
    ...(sipTargets === undefined ? {} : { sipTargets }),
  });

  it('passes every check against the local stack when given the token, the secret and the API key', async () => {
    // Act
    const report = await runSmoke({ url: stack.url, ...secrets });

    // Assess
    expect(report.checks.map((c) => [c.name, c.ok, c.status])).toEqual([
      ['health', true, 200],
      ['handshake-right-token', true, 200],
      ['handshake-wrong-token', true, 403],
      ['post-unsigned', true, 401],
      ['post-mis-signed', true, 401],
      ['post-signed', true, 200],
      ['workers', true, 200],
      ['worker-sip:local-worker-1', true, undefined],
    ]);
    expect(report.ok).toBe(true);
    // The signed POST carried no entries: nothing was stored or enqueued.
    expect(await stack.callRecords()).toEqual([]);
    expect(await stack.jobCount()).toBe(0);
  });

  it('skips the checks that need secrets it was not given, and does not pass: a skipped check proves nothing', async () => {
    const report = await runSmoke({ url: `${stack.url}/` });

    expect(report.ok).toBe(false);
    expect(report.checks.filter((c) => !c.ok).every((c) => c.skipped)).toBe(true);
    expect(report.checks.filter((c) => c.skipped).map((c) => c.name)).toEqual([
      'handshake-right-token',
      'post-signed',
      'workers',
    ]);
  });

  it('fails a live worker whose PBX did not answer OPTIONS, or not within the last 90 s', async () => {
    const now = Date.now();
    await registry.heartbeat(
      liveWorker('smoke-silent-pbx', [{ uri: 'sip:agent@10.9.9.9:5060', error: 'timeout', checkedAt: now - 1000 }]),
    );
    await registry.heartbeat(
      liveWorker('smoke-stale-check', [
        { uri: 'sip:agent@10.9.9.8:5060', status: 200, rttMs: 3, checkedAt: now - 91_000 },
      ]),
    );
    try {
      const report = await runSmoke({ url: stack.url, ...secrets, now: () => now });

      expect(report.ok).toBe(false);
      expect(report.checks.filter((c) => !c.ok).map((c) => [c.name, c.detail])).toEqual([
        ['worker-sip:smoke-silent-pbx', 'sip:agent@10.9.9.9:5060: no answer (timeout)'],
        ['worker-sip:smoke-stale-check', 'sip:agent@10.9.9.8:5060: last answer 91 s ago (over 90 s)'],
      ]);
    } finally {
      await registry.remove('smoke-silent-pbx');
      await registry.remove('smoke-stale-check');
    }
  });

  it('fails when no worker is live', async () => {
    const server = createServer((req, res) =>
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(req.url === '/v1/workers' ? '{"workers":[]}' : '{"status":"ok"}'),
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const report = await runSmoke({ url, ...secrets });
    server.close();

    expect(report.checks.find((c) => c.name === 'workers')).toMatchObject({ ok: false, detail: 'no live worker' });
  });

  it('fails when the deployed verify token, app secret or API key is not the one given', async () => {
    const report = await runSmoke({
      url: stack.url,
      verifyToken: 'not-the-token',
      appSecret: 'not-the-secret',
      apiKey: 'not-the-api-key-0000',
    });

    expect(report.ok).toBe(false);
    expect(report.checks.filter((c) => !c.ok).map((c) => [c.name, c.status])).toEqual([
      ['handshake-right-token', 403],
      ['post-signed', 401],
      ['workers', 401],
    ]);
  });

  it('catches an endpoint that accepts unsigned webhooks', async () => {
    // Prepare: a server that answers 200 to everything, as a broken deployment might
    const server = createServer((_, res) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}'),
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    // Act
    const report = await runSmoke({ url });
    server.close();

    // Assess
    expect(report.ok).toBe(false);
    expect(report.checks.filter((c) => !c.ok && !c.skipped).map((c) => c.name)).toEqual([
      'handshake-wrong-token',
      'post-unsigned',
      'post-mis-signed',
    ]);
  });

  it('exits 0 with a JSON report from the command line, taking secrets from the environment', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'scripts/smoke.ts', '--url', stack.url], {
      env: {
        ...process.env,
        META_VERIFY_TOKEN: TEST_VERIFY_TOKEN,
        META_APP_SECRET: TEST_SECRET,
        CONTROL_API_KEY: TEST_API_KEY,
      },
    });

    const report = JSON.parse(stdout) as { ok: boolean; checks: Array<{ skipped?: boolean }> };
    expect(report.ok).toBe(true);
    expect(report.checks.some((c) => c.skipped)).toBe(false);
  });

  it('exits 1 when the API is unreachable and 2 without --url', async () => {
    const lines: string[] = [];
    const out = (l: string) => lines.push(l);

    expect(await main(['--url', 'http://127.0.0.1:9', '--timeout-ms', '2000'], {}, out)).toBe(1);
    expect(JSON.parse(lines[0]!).checks[0]).toMatchObject({ name: 'health', ok: false });
    expect(await main([], {}, out)).toBe(2);
    expect(await main(['--bogus'], {}, out)).toBe(2);
  });
});
