/**
 * SQS adapters: the call-job queue and per-worker control queues for in-call events.
 */
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { CallJob, CallJobQueue, CallOwner, WorkerSignal, WorkerSignals } from '#core/calls/call-record.ts';
import { JobQueueError } from '#core/errors.ts';

/** Sends call jobs to the shared job queue. */
export class SqsCallJobQueue implements CallJobQueue {
  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async enqueue(job: CallJob): Promise<void> {
    try {
      await this.client.send(
        new SendMessageCommand({
          QueueUrl: this.queueUrl,
          MessageBody: JSON.stringify(job),
          MessageAttributes: {
            type: { DataType: 'String', StringValue: job.type },
            callId: { DataType: 'String', StringValue: job.type === 'bridge-user-call' ? job.callId : job.requestId },
          },
        }),
      );
    } catch (cause) {
      throw new JobQueueError('SendMessage to the call-job queue failed', {
        callId: job.type === 'bridge-user-call' ? job.callId : job.requestId,
        cause,
      });
    }
  }
}

/** Sends in-call events to the owning worker's control queue. */
export class SqsWorkerSignals implements WorkerSignals {
  constructor(private readonly client: SQSClient) {}

  async notify(owner: CallOwner, signal: WorkerSignal): Promise<void> {
    await this.client.send(
      new SendMessageCommand({ QueueUrl: owner.controlQueueUrl, MessageBody: JSON.stringify(signal) }),
    );
  }
}
