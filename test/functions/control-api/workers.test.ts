/**
 * `GET /v1/workers` (issue 15 item 4): the live media workers as the workers table knows them —
 * load, drain state, deployment and the last SIP OPTIONS check of each target — for operators and
 * `npm run smoke`. On the real local stack with its in-process worker and SIP agent; a worker whose
 * heartbeat is older than WORKER_DEAD_AFTER_SECONDS is not live and is left out.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoWorkerRegistry } from '#adapters/aws/dynamo-workers.ts';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';
import { checkResponse } from './openapi-check.ts';

let stack: TestStack;
let client: DynamoDBClient;
let doc: Record<string, unknown>;

beforeAll(async () => {
  stack = await startTestStack({}, { bridge: true });
  client = new DynamoDBClient({
    region: stack.aws.region,
    endpoint: stack.aws.dynamodbEndpoint,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  doc = (await (await stack.api('/openapi.json', { key: null })).json()) as Record<string, unknown>;
}, 60_000);
afterAll(async () => {
  client?.destroy();
  await stack?.stop();
});

describe('GET /v1/workers', () => {
  it('needs the bearer key', async () => {
    const res = await stack.api('/v1/workers', { key: null });
    expect(res.status).toBe(401);
  });

  it('lists the live workers with their load and whether their PBX answered OPTIONS; a dead one is left out', async () => {
    // A worker that stopped beating ten minutes ago: the reaper's business, not a live worker.
    await new DynamoWorkerRegistry(client, stack.aws.tables.workers).heartbeat({
      workerId: 'gone-worker',
      controlQueueUrl: 'http://127.0.0.1:1/000/gone',
      activeCalls: 0,
      callIds: [],
      maxCalls: 10,
      draining: false,
      heartbeatAt: Date.now() - 600_000,
      startedAt: Date.now() - 900_000,
    });

    const body = await eventually(
      async () => {
        const res = await stack.api('/v1/workers');
        if (res.status !== 200) return false;
        const b = (await res.json()) as { workers: Array<{ sipTargets: Array<{ status?: number }> }> };
        return b.workers[0]?.sipTargets[0]?.status === undefined ? false : b;
      },
      20_000,
      'the worker listed with its SIP target’s answer',
    );
    expect(body).toEqual({
      workers: [
        {
          workerId: 'local-worker-1',
          activeCalls: 0,
          maxCalls: expect.any(Number),
          draining: false,
          startedAt: expect.any(Number),
          heartbeatAt: expect.any(Number),
          sipTargets: [
            { uri: stack.sipTargetUri, status: 200, rttMs: expect.any(Number), checkedAt: expect.any(Number) },
          ],
        },
      ],
    });
    expect(checkResponse(doc, 'GET', '/v1/workers', 200, body)).toEqual([]);
  }, 40_000);
});
