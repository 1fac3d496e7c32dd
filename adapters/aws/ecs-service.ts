/**
 * The worker's ECS service as ECS sees it, for the retirement rule (media-worker/src/ops/retirement.ts):
 * the worker's own task definition and the service it belongs to (DescribeTasks on its own task,
 * once: a service's tasks carry `group: service:<name>`), then the service's PRIMARY deployment
 * and desired count (DescribeServices, every check). Each request has its own deadline.
 *
 * IAM: `ecs:DescribeTasks` on the cluster's tasks and `ecs:DescribeServices` on its services.
 */
import { DescribeServicesCommand, DescribeTasksCommand, type ECSClient } from '@aws-sdk/client-ecs';

/** The service could not be read, or the task belongs to none. */
export class EcsServiceError extends Error {
  override readonly name = 'EcsServiceError';
}

/** `arn:aws:ecs:…:task-definition/family:3` → `family:3`. */
export function deploymentOf(taskDefinitionArn: string): string {
  return taskDefinitionArn.slice(taskDefinitionArn.lastIndexOf('/') + 1);
}

/** Reads the service view of one task. */
export class EcsServiceReader {
  #own: Promise<{ service: string; deployment: string }> | undefined;

  constructor(
    private readonly client: ECSClient,
    private readonly cluster: string,
    private readonly taskArn: string,
    private readonly timeoutMs = 5000,
  ) {}

  /** The own task's definition and the service's primary deployment and desired count. */
  async view(): Promise<{ ownDeployment: string; primaryDeployment: string; desiredCount: number }> {
    this.#own ??= this.#describeOwnTask();
    let own: { service: string; deployment: string };
    try {
      own = await this.#own;
    } catch (error) {
      this.#own = undefined; // try again next time
      throw error;
    }
    const out = await this.client
      .send(new DescribeServicesCommand({ cluster: this.cluster, services: [own.service] }), {
        abortSignal: AbortSignal.timeout(this.timeoutMs),
      })
      .catch((error: unknown) => {
        throw new EcsServiceError(`DescribeServices ${own.service}: ${String(error)}`, { cause: error });
      });
    const service = out.services?.[0];
    const primary = service?.deployments?.find((d) => d.status === 'PRIMARY');
    if (!service || !primary?.taskDefinition || service.desiredCount === undefined) {
      throw new EcsServiceError(`service ${own.service} has no PRIMARY deployment in ${this.cluster}`);
    }
    return {
      ownDeployment: own.deployment,
      primaryDeployment: deploymentOf(primary.taskDefinition),
      desiredCount: service.desiredCount,
    };
  }

  async #describeOwnTask(): Promise<{ service: string; deployment: string }> {
    const out = await this.client
      .send(new DescribeTasksCommand({ cluster: this.cluster, tasks: [this.taskArn] }), {
        abortSignal: AbortSignal.timeout(this.timeoutMs),
      })
      .catch((error: unknown) => {
        throw new EcsServiceError(`DescribeTasks ${this.taskArn}: ${String(error)}`, { cause: error });
      });
    const task = out.tasks?.[0];
    const group = task?.group ?? '';
    if (!task?.taskDefinitionArn || !group.startsWith('service:')) {
      throw new EcsServiceError(`task ${this.taskArn} belongs to no ECS service (group ${JSON.stringify(group)})`);
    }
    return { service: group.slice('service:'.length), deployment: deploymentOf(task.taskDefinitionArn) };
  }
}
