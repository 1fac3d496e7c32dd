/**
 * A live worker tells the workers table whether its PBX answers (issue 15 item 4): the local
 * stack's worker probes the built-in SIP agent with OPTIONS and its heartbeat carries the result.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, describe, expect, it } from 'vitest';
import { DynamoWorkerRegistry } from '#adapters/aws/dynamo-workers.ts';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';

let stack: TestStack | undefined;
let client: DynamoDBClient | undefined;
afterAll(async () => {
  client?.destroy();
  await stack?.stop();
});

describe('the worker heartbeat', () => {
  it('carries the last OPTIONS answer of each SIP target', async () => {
    stack = await startTestStack({}, { bridge: true });
    client = new DynamoDBClient({
      region: stack.aws.region,
      endpoint: stack.aws.dynamodbEndpoint,
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    const registry = new DynamoWorkerRegistry(client, stack.aws.tables.workers);
    const uri = stack.sipTargetUri;

    const targets = await eventually(
      async () => {
        const [worker] = await registry.list();
        return worker?.sipTargets?.[0]?.status === undefined ? false : worker.sipTargets;
      },
      20_000,
      'a heartbeat with the SIP target’s answer',
    );
    expect(targets).toEqual([{ uri, status: 200, rttMs: expect.any(Number), checkedAt: expect.any(Number) }]);
  }, 40_000);
});
