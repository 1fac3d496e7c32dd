/**
 * The wa-sip-bridge stack. So far it holds the call data; the API (Lambda + HTTP API) and the
 * media workers (ECS) join it in the deployment issue.
 */
import { Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { CallData } from '../constructs/call-data.ts';

/** Properties of {@link BridgeStack}. */
export interface BridgeStackProps extends StackProps {
  /** Deployment stage, used as the SSM parameter prefix `/wa-sip-bridge/<stage>/`. @default 'prod' */
  readonly stage?: string;
}

/** The whole bridge in one stack. */
export class BridgeStack extends Stack {
  public readonly data: CallData;

  constructor(scope: Construct, id: string, props: BridgeStackProps = {}) {
    super(scope, id, props);
    this.data = new CallData(this, 'Data');
  }
}
