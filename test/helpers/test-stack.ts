/**
 * Starts the real local stack (dynalite, local-aws-sqs, HTTP gateway, Meta simulator) on free
 * loopback ports for a test, with helpers to look inside its table and queue.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient, ScanCommand } from '@aws-sdk/lib-dynamodb';
import pino from 'pino';
import { loadLocalConfig } from '#local/config.ts';
import { type LocalStack, type LocalStackOptions, startLocalStack } from '#local/stack.ts';
import { until } from './async.ts';
import { captureLogger, type LogEntry } from './capture-logger.ts';
import { type DrachtioServer, startDrachtioServer } from './drachtio-server.ts';
import { freePort } from './free-port.ts';

export const TEST_SECRET = 'test-app-secret';
export const TEST_VERIFY_TOKEN = 'test-verify-token';
export const TEST_API_KEY = 'test-control-api-key-0123';
export const TEST_BUSINESS = {
  wabaId: '366634483210360',
  phoneNumberId: '436666719526789',
  displayPhoneNumber: '447700900123',
};

/** A running test stack. */
export interface TestStack extends LocalStack {
  readonly logs: LogEntry[];
  /** Every item of the calls table with sort key RECORD (one per call). */
  callRecords(): Promise<Array<Record<string, unknown>>>;
  /** Messages waiting on the call-job queue (visible + in flight). */
  jobCount(): Promise<number>;
  /** Receives (and leaves in flight) up to 10 jobs. */
  receiveJobs(): Promise<Array<Record<string, unknown>>>;
  /** GET on the control API with the bearer key. */
  api(path: string, init?: RequestInit & { key?: string | null }): Promise<Response>;
}

/**
 * Starts a stack; `env` overrides local settings (e.g. BUSINESS_HOURS). By default no media worker
 * runs (calls stay queued); `{ bridge: true }` adds an in-process worker and the SIP agent on free
 * loopback ports. `sipStack: 'drachtio'` runs the worker's SIP leg on drachtio-srf over a
 * drachtio-server started here (DRACHTIO_SERVER_BIN) on the worker's SIP port.
 */
export async function startTestStack(
  env: Record<string, string> = {},
  options: Partial<LocalStackOptions> & { bridge?: boolean; sipStack?: 'inprocess' | 'drachtio' } = {},
): Promise<TestStack> {
  const { bridge, sipStack, ...stackOptions } = options;
  const workerSipPort = await freePort('127.0.0.1');
  const sipEnv: Record<string, string> = bridge
    ? { SIP_PORT: String(workerSipPort), LOCAL_SIP_AGENT_PORT: String(await freePort('127.0.0.2')) }
    : { SIP_TARGET_URI: 'sip:nobody@127.0.0.3:5999' };
  const drachtio: DrachtioServer | undefined =
    bridge && sipStack === 'drachtio' ? await startDrachtioServer('127.0.0.1', workerSipPort) : undefined;
  if (drachtio)
    stackOptions.workerEnv = {
      SIP_STACK: 'drachtio',
      DRACHTIO_HOST: drachtio.host,
      DRACHTIO_PORT: String(drachtio.port),
      DRACHTIO_SECRET: drachtio.secret,
      ...stackOptions.workerEnv,
    };
  const logs: LogEntry[] = [];
  const config = loadLocalConfig({
    PORT: '0',
    META_SIMULATOR_PORT: '0',
    META_APP_SECRET: TEST_SECRET,
    META_VERIFY_TOKEN: TEST_VERIFY_TOKEN,
    CONTROL_API_KEY: TEST_API_KEY,
    META_PHONE_NUMBER_ID: TEST_BUSINESS.phoneNumberId,
    META_BUSINESS_NUMBER: TEST_BUSINESS.displayPhoneNumber,
    META_WABA_ID: TEST_BUSINESS.wabaId,
    LOG_LEVEL: 'WARN',
    ...sipEnv,
    ...env,
  });
  const stack = await startLocalStack({
    config,
    logger: captureLogger(logs),
    worker: bridge ? 'in-process' : 'none',
    workerLogger: pino({ level: process.env.TEST_LOG ?? 'silent' }),
    ...stackOptions,
  }).catch(async (err: unknown) => {
    await drachtio?.stop();
    throw err;
  });
  const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
  const doc = DynamoDBDocumentClient.from(
    new DynamoDBClient({ region: stack.aws.region, endpoint: stack.aws.dynamodbEndpoint, credentials }),
  );
  const sqs = new SQSClient({ region: stack.aws.region, endpoint: stack.aws.sqsEndpoint, credentials });
  return {
    ...stack,
    logs,
    async callRecords() {
      const out = await doc.send(new ScanCommand({ TableName: stack.aws.tables.calls, ConsistentRead: true }));
      return (out.Items ?? []).filter((i) => i.sk === 'RECORD');
    },
    async jobCount() {
      const out = await sqs.send(
        new GetQueueAttributesCommand({
          QueueUrl: stack.aws.queues.callJobs,
          AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
        }),
      );
      return (
        Number(out.Attributes?.ApproximateNumberOfMessages ?? 0) +
        Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)
      );
    },
    async receiveJobs() {
      const out = await sqs.send(
        new ReceiveMessageCommand({ QueueUrl: stack.aws.queues.callJobs, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
      );
      return (out.Messages ?? []).map((m) => JSON.parse(m.Body ?? '{}') as Record<string, unknown>);
    },
    api(path, init = {}) {
      const { key = TEST_API_KEY, ...rest } = init;
      return fetch(`${stack.url}${path}`, {
        ...rest,
        headers: { ...(key === null ? {} : { authorization: `Bearer ${key}` }), ...(rest.headers ?? {}) },
        signal: AbortSignal.timeout(5000),
      });
    },
    async stop() {
      // A webhook the simulator is still delivering runs the bridge's handler, which writes to
      // dynalite; stopping the emulator under it throws "Database is closed" from inside dynalite.
      // So wait (bounded) for every delivery that has started to be answered. Held deliveries
      // have no attempt yet and run no handler.
      const emitter = stack.simulator?.emitter;
      if (emitter) {
        const inFlight = () => emitter.deliveries.filter((d) => d.outcome === 'pending' && d.attempts.length > 0);
        await until(() => inFlight().length === 0, 5000, { what: 'webhook deliveries in flight' }).catch(
          () => undefined,
        );
      }
      doc.destroy();
      sqs.destroy();
      await stack.stop();
      await drachtio?.stop();
    },
  };
}

/** Re-exported from the one poll module, where it lives with `until` and `sleep`. */
export { eventually } from './async.ts';
