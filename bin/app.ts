/**
 * CDK app entry: instantiates the stacks. Env-agnostic, so `cdk synth` needs no AWS credentials.
 */
import { App } from 'aws-cdk-lib';
import { BridgeStack } from '../lib/stacks/bridge-stack.ts';

const app = new App();
const stage = (app.node.tryGetContext('stage') as string | undefined) ?? 'prod';
new BridgeStack(app, `WaSipBridge-${stage}`, { stage });
