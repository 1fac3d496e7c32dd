/**
 * The bridge's durable state: the DynamoDB tables and SQS queues the control plane and the media
 * workers share. Keys and TTL attributes come from `adapters/aws/tables.ts`, the same
 * definition the local stack uses, so AWS and local mode cannot disagree.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { AttributeType, Billing, TableV2 } from 'aws-cdk-lib/aws-dynamodb';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { TABLES, type TableName } from '#adapters/aws/tables.ts';

/** Properties of {@link CallData}. */
export interface CallDataProps {
  /**
   * What happens to tables when the stack is deleted.
   * @default RemovalPolicy.RETAIN — call records and permissions outlive a mistaken `cdk destroy`.
   */
  readonly removalPolicy?: RemovalPolicy;
}

/** Tables (calls, permissions, workers) and the call-job queue with its dead-letter queue. */
export class CallData extends Construct {
  /** One table per entry of {@link TABLES}. */
  public readonly tables: Record<TableName, TableV2>;
  /** Call jobs for the media workers. */
  public readonly callJobs: Queue;
  /** Jobs that failed five receives. */
  public readonly callJobsDlq: Queue;

  constructor(scope: Construct, id: string, props: CallDataProps = {}) {
    super(scope, id);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    this.tables = {} as Record<TableName, TableV2>;
    for (const [name, spec] of Object.entries(TABLES) as Array<[TableName, (typeof TABLES)[TableName]]>) {
      this.tables[name] = new TableV2(this, `${name[0]!.toUpperCase()}${name.slice(1)}Table`, {
        partitionKey: { name: 'pk', type: AttributeType.STRING },
        sortKey: { name: 'sk', type: AttributeType.STRING },
        billing: Billing.onDemand(),
        pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
        timeToLiveAttribute: spec.ttlAttribute,
        removalPolicy,
      });
    }
    this.callJobsDlq = new Queue(this, 'CallJobsDlq', {
      retentionPeriod: Duration.days(14),
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    this.callJobs = new Queue(this, 'CallJobs', {
      // A job is claimed within seconds; a longer timeout would delay a retry after a worker dies.
      visibilityTimeout: Duration.seconds(30),
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      deadLetterQueue: { queue: this.callJobsDlq, maxReceiveCount: 5 },
    });
  }
}
