/**
 * A worker dies with a call in hand: its heartbeat stops. A live worker's reaper ends the call in
 * the store and at Meta, returns the concurrency slot, and removes the dead worker's entry; a live
 * worker is left alone.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoWorkerRegistry } from '#adapters/aws/dynamo-workers.ts';
import { createControlQueue } from '#adapters/aws/sqs-queues.ts';
import { MetaGraphClient } from '#core/meta/graph-client.ts';
import { metaEndAction, reapDeadWorkers } from '#worker/reaper.ts';
import { eventually, startTestStack, type TestStack } from '../helpers/test-stack.ts';

let stack: TestStack;
let registry: DynamoWorkerRegistry;
let sqs: SQSClient;
let dynamo: DynamoDBClient;

beforeAll(async () => {
  stack = await startTestStack();
  const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
  dynamo = new DynamoDBClient({ region: stack.aws.region, endpoint: stack.aws.dynamodbEndpoint, credentials });
  sqs = new SQSClient({ region: stack.aws.region, endpoint: stack.aws.sqsEndpoint, credentials });
  registry = new DynamoWorkerRegistry(dynamo, stack.aws.tables.workers);
});
afterAll(async () => {
  dynamo.destroy();
  sqs.destroy();
  await stack.stop();
});

describe('reapDeadWorkers', () => {
  it('ends the calls of a worker whose heartbeat stopped, at Meta and in the store, once', async () => {
    const { calls } = stack.runtime;
    const call = await stack.simulator!.placeUserCall({ user: { waId: '5511900000010' } });
    await eventually(async () => (await calls.get(call.id))?.state === 'queued', 5000, 'call queued');
    const ghostQueue = await createControlQueue(sqs, 'ghost-worker-control');
    expect(
      await calls.transition(
        call.id,
        { type: 'claimed' },
        { owner: { workerId: 'ghost', controlQueueUrl: ghostQueue } },
      ),
    ).toBeDefined();
    const now = Date.now();
    await registry.heartbeat({
      workerId: 'ghost',
      controlQueueUrl: ghostQueue,
      activeCalls: 1,
      callIds: [call.id],
      maxCalls: 10,
      draining: false,
      heartbeatAt: now - 60_000,
      startedAt: now - 120_000,
    });
    await registry.heartbeat({
      workerId: 'alive',
      controlQueueUrl: ghostQueue,
      activeCalls: 0,
      callIds: [],
      maxCalls: 10,
      draining: false,
      heartbeatAt: now,
      startedAt: now,
    });

    const deps = {
      selfId: 'survivor',
      registry,
      calls,
      meta: new MetaGraphClient({ baseUrl: stack.graphUrl, accessToken: 'local-simulator-token', timeoutMs: 3000 }),
      sqs,
      logger: pino({ level: 'silent' }),
      now: Date.now,
      graceMs: 30_000,
      finishedRetentionSeconds: 3600,
    };
    const [first, second] = await Promise.all([reapDeadWorkers(deps), reapDeadWorkers(deps)]);
    expect([...first, ...second]).toEqual([call.id]);

    expect(await calls.get(call.id)).toMatchObject({
      state: 'ended',
      // The record says what happened: the worker carrying the call vanished (not a handling error).
      endReason: 'worker-lost',
      endedBy: 'bridge',
      slotHeld: false,
    });
    await eventually(() => call.state === 'ended', 5000, 'the WhatsApp call to end');
    expect(call.record.endReason).toBe('business_reject');
    const workers = (await registry.list()).map((w) => w.workerId);
    expect(workers).toContain('alive');
    expect(workers).not.toContain('ghost');
  });
});

describe('metaEndAction', () => {
  it('rejects only a user call Meta has not heard of; terminates once pre-accepted, and every business call', () => {
    const uic = (state: 'queued' | 'claimed' | 'pre-accepted' | 'ringing' | 'answered') =>
      metaEndAction({ direction: 'user-initiated', state });
    expect([uic('queued'), uic('claimed'), uic('pre-accepted'), uic('ringing'), uic('answered')]).toEqual([
      'reject',
      'reject',
      'terminate',
      'terminate',
      'terminate',
    ]);
    expect(metaEndAction({ direction: 'business-initiated', state: 'ringing' })).toBe('terminate');
  });
});
