/**
 * SQS adapters of the media worker: the shared call-job queue and the worker's own control queue.
 */
import {
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageCommand,
  DeleteQueueCommand,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';

/** A received message with its acknowledgement actions. */
export interface Received<T> {
  readonly body: T | undefined;
  readonly raw: string;
  /** Deletes the message: done with it. */
  ack(): Promise<void>;
  /** Makes the message visible again at once, for another worker. */
  release(): Promise<void>;
}

/** Long-polls a queue. */
export class SqsQueueReader<T> {
  constructor(
    private readonly sqs: SQSClient,
    readonly queueUrl: string,
  ) {}

  /** Receives up to `max` messages, waiting up to `waitSeconds` for the first. */
  async receive(max: number, waitSeconds: number, signal?: AbortSignal): Promise<Array<Received<T>>> {
    const out = await this.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: this.queueUrl,
        MaxNumberOfMessages: Math.max(1, Math.min(10, max)),
        WaitTimeSeconds: waitSeconds,
      }),
      signal ? { abortSignal: signal } : {},
    );
    return (out.Messages ?? []).map((m) => {
      let body: T | undefined;
      try {
        body = JSON.parse(m.Body ?? '') as T;
      } catch {
        body = undefined;
      }
      return {
        body,
        raw: m.Body ?? '',
        ack: async () => {
          await this.sqs.send(new DeleteMessageCommand({ QueueUrl: this.queueUrl, ReceiptHandle: m.ReceiptHandle! }));
        },
        release: async () => {
          await this.sqs.send(
            new ChangeMessageVisibilityCommand({
              QueueUrl: this.queueUrl,
              ReceiptHandle: m.ReceiptHandle!,
              VisibilityTimeout: 0,
            }),
          );
        },
      };
    });
  }
}

/** Creates the worker's control queue (idempotent: CreateQueue returns the existing one). */
export async function createControlQueue(sqs: SQSClient, name: string): Promise<string> {
  const out = await sqs.send(
    new CreateQueueCommand({
      QueueName: name,
      Attributes: { MessageRetentionPeriod: '3600', VisibilityTimeout: '10' },
    }),
  );
  return out.QueueUrl!;
}

/** Deletes the worker's control queue at shutdown. */
export async function deleteControlQueue(sqs: SQSClient, url: string): Promise<void> {
  await sqs.send(new DeleteQueueCommand({ QueueUrl: url }));
}
