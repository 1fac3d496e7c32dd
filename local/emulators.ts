/**
 * The AWS services of the local stack: DynamoDB (dynalite) and SQS (local-aws-sqs), in process,
 * on loopback ports, with the same tables and queues the CDK stack creates.
 *
 * Known gaps from AWS (dependency-notes.md §4): dynalite has no TTL API (expired records stay;
 * nothing depends on TTL) and no transactions; local-aws-sqs counts ChangeMessageVisibility as a
 * receive.
 */
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import dynalite from 'dynalite';
import { createSqsServer } from 'local-aws-sqs';
import { TABLES, type TableName } from '#adapters/aws/tables.ts';

/** Running emulators and the names of what they hold. */
export interface LocalAws {
  readonly region: string;
  readonly dynamodbEndpoint: string;
  readonly sqsEndpoint: string;
  readonly tables: Record<TableName, string>;
  readonly queues: { readonly callJobs: string; readonly callJobsDlq: string };
  stop(): Promise<void>;
}

/** Starts dynalite and local-aws-sqs on 127.0.0.1 (ports 0 = any free port) and creates tables and queues. */
export async function startLocalAws(options: { host?: string; prefix?: string } = {}): Promise<LocalAws> {
  const host = options.host ?? '127.0.0.1';
  const prefix = options.prefix ?? 'wa-sip-bridge-local';
  const region = 'us-east-1';
  const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };

  const dynamo: Server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  dynamo.listen(0, host);
  await once(dynamo, 'listening');
  const dynamodbEndpoint = `http://${host}:${(dynamo.address() as AddressInfo).port}`;

  const sqsServer = await createSqsServer({ port: 0, hostname: host } as Parameters<typeof createSqsServer>[0]);
  if (!sqsServer.listening) await once(sqsServer, 'listening');
  const sqsEndpoint = `http://${host}:${(sqsServer.address() as AddressInfo).port}`;

  const ddb = new DynamoDBClient({ region, endpoint: dynamodbEndpoint, credentials });
  const tables = {} as Record<TableName, string>;
  for (const name of Object.keys(TABLES) as TableName[]) {
    tables[name] = `${prefix}-${name}`;
    await ddb.send(
      new CreateTableCommand({
        TableName: tables[name],
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [
          { AttributeName: 'pk', AttributeType: 'S' },
          { AttributeName: 'sk', AttributeType: 'S' },
        ],
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
      }),
    );
  }
  ddb.destroy();

  const sqs = new SQSClient({ region, endpoint: sqsEndpoint, credentials });
  const dlq = await sqs.send(new CreateQueueCommand({ QueueName: `${prefix}-call-jobs-dlq` }));
  const dlqArn = (
    await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlq.QueueUrl!, AttributeNames: ['QueueArn'] }))
  ).Attributes?.QueueArn;
  const jobs = await sqs.send(
    new CreateQueueCommand({
      QueueName: `${prefix}-call-jobs`,
      Attributes: {
        VisibilityTimeout: '30',
        ...(dlqArn ? { RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 5 }) } : {}),
      },
    }),
  );
  sqs.destroy();

  let stopped = false;
  return {
    region,
    dynamodbEndpoint,
    sqsEndpoint,
    tables,
    queues: { callJobs: jobs.QueueUrl!, callJobsDlq: dlq.QueueUrl! },
    async stop() {
      if (stopped) return;
      stopped = true;
      await Promise.all([closeServer(dynamo), closeServer(sqsServer)]);
    },
  };
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections?.();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
