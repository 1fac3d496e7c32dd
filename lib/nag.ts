/**
 * cdk-nag acknowledgements. cdk-nag 3 uses CDK's own `Validations.of(scope).acknowledge()`; every
 * acknowledgement here names the exact finding (`Rule[Finding]` for multi-finding rules such as
 * IAM5) and carries its reason in code, next to the construct it concerns.
 */
import { Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/** Acknowledges `findings` (rule ids, or `Rule[Finding]` ids) on `scope` and its children. */
export function acknowledge(scope: IConstruct, findings: readonly string[], reason: string): void {
  Validations.of(scope).acknowledge(...findings.map((id) => ({ id, reason })));
}
