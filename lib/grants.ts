/**
 * Least-privilege grants shared by the functions and the media workers. Each names the exact
 * actions the code calls (see `adapters/aws/`, `adapters/aws/`) on the exact
 * resources, so a reviewer can check one file.
 */
import { Arn, ArnFormat, Stack } from 'aws-cdk-lib';
import type { ITableV2 } from 'aws-cdk-lib/aws-dynamodb';
import { type IGrantable, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';

/** How a principal uses a table. */
export type TableAccess = 'read' | 'readScan' | 'readWrite' | 'readWriteScan';

const TABLE_ACTIONS: Record<TableAccess, string[]> = {
  read: ['dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:DescribeTable'],
  readScan: ['dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:Scan', 'dynamodb:DescribeTable'],
  readWrite: [
    'dynamodb:GetItem',
    'dynamodb:Query',
    'dynamodb:PutItem',
    'dynamodb:UpdateItem',
    'dynamodb:DeleteItem',
    'dynamodb:ConditionCheckItem',
    'dynamodb:DescribeTable',
  ],
  readWriteScan: [
    'dynamodb:GetItem',
    'dynamodb:Query',
    'dynamodb:Scan',
    'dynamodb:PutItem',
    'dynamodb:UpdateItem',
    'dynamodb:DeleteItem',
    'dynamodb:ConditionCheckItem',
    'dynamodb:DescribeTable',
  ],
};

/** Grants item access to one table (the table only: the tables have no indexes). */
export function bindTable(grantee: IGrantable, table: ITableV2, access: TableAccess): void {
  grantee.grantPrincipal.addToPrincipalPolicy(
    new PolicyStatement({ actions: TABLE_ACTIONS[access], resources: [table.tableArn] }),
  );
}

/** ARN pattern of the per-worker control queues, `<prefix>-*` in this account and region. */
export function controlQueueArnPattern(scope: Construct, prefix: string): string {
  return Arn.format(
    { service: 'sqs', resource: `${prefix}-*`, arnFormat: ArnFormat.NO_RESOURCE_NAME },
    Stack.of(scope),
  );
}

/**
 * Grants reading the stage's settings: `GetParametersByPath` on the prefix and `GetParameter(s)`
 * below it, and `kms:Decrypt` for SecureStrings — only through SSM and only for parameters under
 * the prefix (the encryption context SSM sets names the parameter).
 *
 * @param keyArn - the KMS key of the SecureStrings; default: any key, narrowed by the conditions
 *   (the AWS managed `alias/aws/ssm` key has a different ARN in every account).
 */
export function bindSettings(grantee: IGrantable, scope: Construct, prefix: string, keyArn?: string): void {
  const stack = Stack.of(scope);
  const parameterArn = (name: string) =>
    Arn.format({ service: 'ssm', resource: 'parameter', resourceName: name.replace(/^\//, '') }, stack);
  grantee.grantPrincipal.addToPrincipalPolicy(
    new PolicyStatement({
      actions: ['ssm:GetParametersByPath'],
      resources: [parameterArn(prefix)],
    }),
  );
  grantee.grantPrincipal.addToPrincipalPolicy(
    new PolicyStatement({
      actions: ['ssm:GetParameter', 'ssm:GetParameters'],
      resources: [parameterArn(`${prefix}/*`)],
    }),
  );
  grantee.grantPrincipal.addToPrincipalPolicy(
    new PolicyStatement({
      actions: ['kms:Decrypt'],
      resources: [keyArn ?? Arn.format({ service: 'kms', resource: 'key', resourceName: '*' }, stack)],
      conditions: {
        StringEquals: { 'kms:ViaService': `ssm.${stack.region}.${stack.urlSuffix}` },
        StringLike: { 'kms:EncryptionContext:PARAMETER_ARN': parameterArn(`${prefix}/*`) },
      },
    }),
  );
}

/**
 * Grants claiming an address of the stage's Elastic IP pool (fixed-address mode): associating only
 * allocations tagged `<tagKey>` = `<tagValue>`, only with network interfaces in `vpcArn`, and the
 * two reads the claim needs (`ec2:DescribeAddresses`, `ec2:DescribeNetworkInterfaces`), which have
 * no resource-level permissions. No release, allocation or disassociation: the pool is the stack's.
 */
export function bindAddressPool(
  grantee: IGrantable,
  scope: Construct,
  tagKey: string,
  tagValue: string,
  vpcArn: string,
): void {
  const stack = Stack.of(scope);
  const ec2Arn = (resource: string) => Arn.format({ service: 'ec2', resource, resourceName: '*' }, stack);
  grantee.grantPrincipal.addToPrincipalPolicy(
    new PolicyStatement({
      actions: ['ec2:AssociateAddress'],
      resources: [ec2Arn('elastic-ip')],
      conditions: { StringEquals: { [`aws:ResourceTag/${tagKey}`]: tagValue } },
    }),
  );
  grantee.grantPrincipal.addToPrincipalPolicy(
    new PolicyStatement({
      actions: ['ec2:AssociateAddress'],
      resources: [ec2Arn('network-interface')],
      conditions: { StringEquals: { 'ec2:Vpc': vpcArn } },
    }),
  );
  grantee.grantPrincipal.addToPrincipalPolicy(
    new PolicyStatement({ actions: ['ec2:DescribeAddresses', 'ec2:DescribeNetworkInterfaces'], resources: ['*'] }),
  );
}

const ACCOUNT_ARN = 'arn:<AWS::Partition>:{service}:<AWS::Region>:<AWS::AccountId>:';
const iam5 = (service: string, resource: string) =>
  `AwsSolutions::AwsSolutions-IAM5[Resource::${ACCOUNT_ARN.replace('{service}', service)}${resource}]`;

/** cdk-nag IAM5 findings {@link bindSettings} causes, for acknowledgement beside the grant. */
export function settingsWildcardFindings(prefix: string, keyArn?: string): string[] {
  return [iam5('ssm', `parameter${prefix}/*`), ...(keyArn ? [] : [iam5('kms', 'key/*')])];
}

/** cdk-nag IAM5 findings {@link bindAddressPool} causes (the tag and VPC conditions narrow them). */
export function addressPoolWildcardFindings(): string[] {
  return [iam5('ec2', 'elastic-ip/*'), iam5('ec2', 'network-interface/*')];
}

/** cdk-nag IAM5 finding of the control-queue pattern. */
export function controlQueueWildcardFinding(prefix: string): string {
  return iam5('sqs', `${prefix}-*`);
}

/** cdk-nag IAM5 finding of a `Resource: *` statement (actions without resource-level permissions). */
export const ANY_RESOURCE_FINDING = 'AwsSolutions::AwsSolutions-IAM5[Resource::*]';

/** cdk-nag IAM5 finding of an ECS task-ARN pattern in the cluster with this logical id. */
export function clusterTasksWildcardFinding(clusterLogicalId: string): string {
  return iam5('ecs', `task/<${clusterLogicalId}>/*`);
}

/** cdk-nag IAM5 finding of an ECS service-ARN pattern in the cluster with this logical id. */
export function clusterServicesWildcardFinding(clusterLogicalId: string): string {
  return iam5('ecs', `service/<${clusterLogicalId}>/*`);
}
