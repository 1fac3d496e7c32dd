/**
 * The AWS SDK clients both deployables use, built one way: bounded retries, connection and
 * request timeouts on every call, and endpoint overrides (with dummy credentials) for the local
 * emulators.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';

/** Where the clients connect. */
export interface AwsClientSettings {
  readonly region: string;
  /** Local mode: dynalite. */
  readonly dynamodbEndpoint?: string;
  /** Local mode: local-aws-sqs. */
  readonly sqsEndpoint?: string;
  /**
   * SQS request timeout. A long poll waits up to 20 s, so a worker that long-polls needs more.
   * @default 3000
   */
  readonly sqsRequestTimeoutMs?: number;
}

/** Builds the DynamoDB and SQS clients. */
export function createAwsClients(settings: AwsClientSettings): { dynamo: DynamoDBClient; sqs: SQSClient } {
  const local = settings.dynamodbEndpoint !== undefined || settings.sqsEndpoint !== undefined;
  const credentials = local ? { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } } : {};
  const dynamo = new DynamoDBClient({
    region: settings.region,
    maxAttempts: 3,
    requestHandler: { connectionTimeout: 1000, requestTimeout: 3000 },
    ...(settings.dynamodbEndpoint ? { endpoint: settings.dynamodbEndpoint } : {}),
    ...credentials,
  });
  const sqs = new SQSClient({
    region: settings.region,
    maxAttempts: 3,
    requestHandler: { connectionTimeout: 1000, requestTimeout: settings.sqsRequestTimeoutMs ?? 3000 },
    ...(settings.sqsEndpoint ? { endpoint: settings.sqsEndpoint } : {}),
    ...credentials,
  });
  return { dynamo, sqs };
}
