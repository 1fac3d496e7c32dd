/**
 * Start-up environment of the media worker in ECS, prepared by the image's entrypoint before the
 * worker's own config module reads `process.env`:
 *
 * 1. **Addresses** (`ADDRESS_DISCOVERY=ecs`): the task's private IPv4 from the ECS task metadata
 *    endpoint v4 becomes `SIP_BIND_ADDRESS` and `RTP_BIND_ADDRESS` (the WebRTC leg's one host
 *    candidate is its bind address), and the task's public IPv4 becomes `PUBLIC_ADDRESS`, which the
 *    worker advertises in SDP `c=` lines, ICE candidates and SIP Via/Contact. A Fargate task in a
 *    public subnet with a public IP egresses through the internet gateway's 1:1 NAT, so the
 *    address AWS's `checkip` service sees is exactly the one Meta's relay and the PBX must reach.
 *    Without a public address every call would fail ICE, so discovery failing stops the task.
 * 2. **Identity** (in ECS): `WORKER_ID` is the ECS task id, from the task ARN in the container
 *    metadata, so it is unique per task for the cluster's life (a `hostname-pid` id repeats when a
 *    new task gets an old task's private address).
 * 3. **Settings** (`SSM_PREFIX`): every worker parameter under the prefix, SecureStrings
 *    decrypted, fills the keys the environment does not set (the stack's wiring wins).
 */
import { ssmSettings } from '#adapters/aws/ssm-parameters.ts';
import { WORKER_PARAMETER_KEYS } from '../src/config.ts';

/** Collaborators, replaceable in tests. */
export interface EnvironmentDeps {
  readonly fetch: typeof fetch;
  readonly ssmSettings: typeof ssmSettings;
}

/** The worker could not learn its addresses or settings; it must not start. */
export class WorkerEnvironmentError extends Error {
  override readonly name = 'WorkerEnvironmentError';
}

/** A dotted-quad IPv4 address. */
export const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** AWS's checkip service: the address the internet sees the task at. */
export const DEFAULT_PUBLIC_ADDRESS_URL = 'https://checkip.amazonaws.com';

/**
 * Fills `env` in place (addresses, then settings) and returns the keys it set.
 * @throws {@link WorkerEnvironmentError} when discovery or the settings read fails
 */
export async function prepareWorkerEnvironment(
  env: Record<string, string | undefined>,
  deps: EnvironmentDeps = { fetch, ssmSettings },
): Promise<string[]> {
  const set: string[] = [];
  const fill = (key: string, value: string) => {
    if (env[key] === undefined || env[key] === '') {
      env[key] = value;
      set.push(key);
    }
  };
  const metadataUri = env.ECS_CONTAINER_METADATA_URI_V4;
  const metadata = metadataUri ? await containerMetadata(metadataUri, deps.fetch) : undefined;
  if (metadataUri && metadata) {
    fill('WORKER_ID', ecsTaskId(metadataUri, metadata));
    // What the retirement check reads (ops/retirement.ts): the task, its cluster and its deployment.
    const labels = metadata.Labels ?? {};
    const [arn, cluster] = [labels['com.amazonaws.ecs.task-arn'], labels['com.amazonaws.ecs.cluster']];
    const [family, revision] = [
      labels['com.amazonaws.ecs.task-definition-family'],
      labels['com.amazonaws.ecs.task-definition-version'],
    ];
    if (arn) fill('ECS_TASK_ARN', arn);
    if (cluster?.startsWith('arn:')) fill('ECS_CLUSTER', cluster);
    if (family && revision && /^\d+$/.test(revision)) fill('WORKER_DEPLOYMENT', `${family}:${revision}`);
  }
  if (env.ADDRESS_DISCOVERY === 'ecs') {
    if (!metadataUri || !metadata)
      throw new WorkerEnvironmentError('ADDRESS_DISCOVERY=ecs but ECS_CONTAINER_METADATA_URI_V4 is not set');
    const privateAddress = privateIpv4(metadataUri, metadata);
    fill('SIP_BIND_ADDRESS', privateAddress);
    fill('RTP_BIND_ADDRESS', privateAddress);
    if (!env.PUBLIC_ADDRESS) {
      fill('PUBLIC_ADDRESS', await publicIpv4(env.PUBLIC_ADDRESS_URL ?? DEFAULT_PUBLIC_ADDRESS_URL, deps.fetch));
    }
  }
  if (env.SSM_PREFIX) {
    let settings: Record<string, string>;
    try {
      settings = await deps.ssmSettings(env.SSM_PREFIX, { keys: WORKER_PARAMETER_KEYS });
    } catch (error) {
      throw new WorkerEnvironmentError(`reading settings: ${error instanceof Error ? error.message : String(error)}`, {
        cause: error,
      });
    }
    for (const [key, value] of Object.entries(settings)) fill(key, value);
  }
  return set;
}

/** What this module reads of the container metadata endpoint v4's answer. */
export interface ContainerMetadata {
  Networks?: Array<{ IPv4Addresses?: string[] }>;
  Labels?: Record<string, string>;
}

/** The container metadata endpoint v4's answer (3 s). */
export async function containerMetadata(metadataUri: string, fetchFn: typeof fetch): Promise<ContainerMetadata> {
  return (await getJson(metadataUri, fetchFn)) as ContainerMetadata;
}

/** The ECS task id: the last segment of the task ARN the container metadata labels carry. */
export function ecsTaskId(metadataUri: string, metadata: ContainerMetadata): string {
  const arn = metadata.Labels?.['com.amazonaws.ecs.task-arn'];
  const id = arn?.split('/').at(-1);
  if (!arn?.startsWith('arn:') || !id || !/^[\w-]{1,64}$/.test(id)) {
    throw new WorkerEnvironmentError(`task metadata at ${metadataUri} names no task ARN`);
  }
  return id;
}

/** The task's private IPv4 (awsvpc ENI) from the container metadata. */
export function privateIpv4(metadataUri: string, body: ContainerMetadata): string {
  const address = body.Networks?.[0]?.IPv4Addresses?.[0];
  if (!address || !IPV4.test(address)) {
    throw new WorkerEnvironmentError(`task metadata at ${metadataUri} names no IPv4 address`);
  }
  return address;
}

/** The address the internet sees this task at; three attempts, 3 s each. */
async function publicIpv4(url: string, fetchFn: typeof fetch): Promise<string> {
  let last = '';
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      const res = await fetchFn(url, { signal: AbortSignal.timeout(3000) });
      const text = (await res.text()).trim();
      if (res.ok && IPV4.test(text)) return text;
      last = `HTTP ${res.status}: ${text.slice(0, 60)}`;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    if (attempt < 3) await new Promise((r) => setTimeout(r, 100 * attempt));
  }
  throw new WorkerEnvironmentError(
    `public address discovery at ${url} failed (${last}); is the task's public IP assigned?`,
  );
}

async function getJson(url: string, fetchFn: typeof fetch): Promise<unknown> {
  let res: Response;
  try {
    res = await fetchFn(url, { signal: AbortSignal.timeout(3000) });
  } catch (error) {
    throw new WorkerEnvironmentError(`GET ${url}: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (!res.ok) throw new WorkerEnvironmentError(`GET ${url}: HTTP ${res.status}`);
  return res.json();
}
