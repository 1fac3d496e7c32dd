/** The media worker image's start-up environment (`media-worker/image/environment.ts`). */
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { WORKER_PARAMETER_KEYS } from '#worker/config.ts';
import { prepareWorkerEnvironment, WorkerEnvironmentError } from '../../../media-worker/image/environment.ts';

const METADATA = 'http://169.254.170.2/v4/abc';
const TASK_ID = '8f0e2c7a1b3d4e5f9a6b7c8d9e0f1a2b';
let metadata: Record<string, unknown>;
const ecsMetadata = () => ({
  Networks: [{ NetworkMode: 'awsvpc', IPv4Addresses: ['10.0.1.23'] }],
  Labels: {
    'com.amazonaws.ecs.cluster': 'arn:aws:ecs:eu-west-1:111122223333:cluster/wa-sip-bridge',
    'com.amazonaws.ecs.task-arn': `arn:aws:ecs:eu-west-1:111122223333:task/wa-sip-bridge/${TASK_ID}`,
    'com.amazonaws.ecs.task-definition-family': 'WaSipBridgeWorkers',
    'com.amazonaws.ecs.task-definition-version': '7',
  },
});

function fakeFetch(publicAnswer: () => Response) {
  return vi.fn(async (url: string | URL | Request) => {
    const u = String(url);
    if (u === METADATA) return Response.json(metadata);
    if (u.startsWith('https://checkip.amazonaws.com')) return publicAnswer();
    return new Response('not found', { status: 404 });
  }) as unknown as typeof fetch;
}

describe('Function: prepareWorkerEnvironment', () => {
  beforeEach(() => {
    metadata = ecsMetadata();
  });

  it('binds to the task ENI, advertises the public address, and fills settings under the stack wiring', async () => {
    // Prepare
    const env: Record<string, string | undefined> = {
      ADDRESS_DISCOVERY: 'ecs',
      ECS_CONTAINER_METADATA_URI_V4: METADATA,
      SSM_PREFIX: '/wa-sip-bridge/prod',
      SIP_PORT: '5060',
    };
    const ssmSettings = vi.fn(async () => ({ SIP_TARGET_URI: 'sip:agent@pbx.example.com', SIP_PASSWORD: 's3cret' }));

    // Act
    const set = await prepareWorkerEnvironment(env, {
      fetch: fakeFetch(() => new Response('203.0.113.7\n')),
      ssmSettings,
    });

    // Assess
    expect(env).toMatchObject({
      SIP_BIND_ADDRESS: '10.0.1.23',
      RTP_BIND_ADDRESS: '10.0.1.23',
      PUBLIC_ADDRESS: '203.0.113.7',
      SIP_TARGET_URI: 'sip:agent@pbx.example.com',
      SIP_PASSWORD: 's3cret',
      SIP_PORT: '5060',
      WORKER_ID: TASK_ID,
    });
    expect(set.sort()).toEqual([
      'ECS_CLUSTER',
      'ECS_TASK_ARN',
      'PUBLIC_ADDRESS',
      'RTP_BIND_ADDRESS',
      'SIP_BIND_ADDRESS',
      'SIP_PASSWORD',
      'SIP_TARGET_URI',
      'WORKER_DEPLOYMENT',
      'WORKER_ID',
    ]);
    expect(ssmSettings).toHaveBeenCalledWith('/wa-sip-bridge/prod', { keys: WORKER_PARAMETER_KEYS });
  });

  it('names the worker after its ECS task, unique for the cluster’s life (not hostname-pid, which repeats)', async () => {
    const env: Record<string, string | undefined> = { ECS_CONTAINER_METADATA_URI_V4: METADATA };

    expect(
      await prepareWorkerEnvironment(env, { fetch: fakeFetch(() => new Response('')), ssmSettings: vi.fn() }),
    ).toEqual(['WORKER_ID', 'ECS_TASK_ARN', 'ECS_CLUSTER', 'WORKER_DEPLOYMENT']);
    // …and knows its task, cluster and deployment, which the retirement check reads.
    expect(env).toMatchObject({
      WORKER_ID: TASK_ID,
      ECS_TASK_ARN: `arn:aws:ecs:eu-west-1:111122223333:task/wa-sip-bridge/${TASK_ID}`,
      ECS_CLUSTER: 'arn:aws:ecs:eu-west-1:111122223333:cluster/wa-sip-bridge',
      WORKER_DEPLOYMENT: 'WaSipBridgeWorkers:7',
    });
  });

  it('refuses to start in ECS when the metadata names no task ARN', async () => {
    metadata = { Networks: ecsMetadata().Networks };
    const env: Record<string, string | undefined> = { ECS_CONTAINER_METADATA_URI_V4: METADATA };

    await expect(
      prepareWorkerEnvironment(env, { fetch: fakeFetch(() => new Response('')), ssmSettings: vi.fn() }),
    ).rejects.toThrow(/names no task ARN/);
  });

  it('never lets a parameter override what the environment already sets', async () => {
    const env: Record<string, string | undefined> = { SSM_PREFIX: '/p/x', CALLS_TABLE: 'from-stack' };

    await prepareWorkerEnvironment(env, {
      fetch: fakeFetch(() => new Response('')),
      ssmSettings: async () => ({ CALLS_TABLE: 'from-ssm', LOG_LEVEL: 'debug' }),
    });

    expect(env).toMatchObject({ CALLS_TABLE: 'from-stack', LOG_LEVEL: 'debug' });
  });

  it('does nothing without ADDRESS_DISCOVERY and SSM_PREFIX (local mode)', async () => {
    const env: Record<string, string | undefined> = { RTP_BIND_ADDRESS: '127.0.0.1' };
    const fetchFn = fakeFetch(() => new Response(''));

    expect(await prepareWorkerEnvironment(env, { fetch: fetchFn, ssmSettings: vi.fn() })).toEqual([]);
    expect(fetchFn).not.toHaveBeenCalled();
  });

  it('refuses to start when the public address cannot be learned (calls would fail ICE)', async () => {
    const env: Record<string, string | undefined> = {
      ADDRESS_DISCOVERY: 'ecs',
      ECS_CONTAINER_METADATA_URI_V4: METADATA,
    };

    await expect(
      prepareWorkerEnvironment(env, {
        fetch: fakeFetch(() => new Response('<html>captive portal</html>')),
        ssmSettings: vi.fn(),
      }),
    ).rejects.toThrow(WorkerEnvironmentError);
    expect(env.PUBLIC_ADDRESS).toBeUndefined();
  });

  it('refuses to start when the settings cannot be read', async () => {
    await expect(
      prepareWorkerEnvironment(
        { SSM_PREFIX: '/wa-sip-bridge/prod' },
        {
          fetch: fakeFetch(() => new Response('')),
          ssmSettings: async () => {
            throw new Error('AccessDenied');
          },
        },
      ),
    ).rejects.toThrow(/reading settings: AccessDenied/);
  });
});
