import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { workerMetrics } from '#worker/ops/metrics.ts';
import { TaskProtection } from '#worker/ops/task-protection.ts';

/** Stands in for the ECS agent's task-protection endpoint, recording what the worker asks. */
const requests: Array<{ method: string; url: string; body: unknown }> = [];
const agent = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => {
    body += c;
  });
  req.on('end', () => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', body: JSON.parse(body || '{}') });
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"protection":{}}');
  });
});
let agentUri = '';
beforeAll(async () => {
  agent.listen(0, '127.0.0.1');
  await once(agent, 'listening');
  agentUri = `http://127.0.0.1:${(agent.address() as AddressInfo).port}/v1`;
});
afterAll(() => new Promise<void>((r) => agent.close(() => r())));

describe('TaskProtection', () => {
  it('protects the task when the first call starts and releases it when the last ends, once each', async () => {
    requests.length = 0;
    const protection = new TaskProtection({ agentUri, minutes: 120, logger: pino({ level: 'silent' }) });
    protection.update(1);
    protection.update(2);
    protection.update(1);
    protection.update(0);
    await protection.close();
    expect(requests).toEqual([
      { method: 'PUT', url: '/v1/task-protection/v1/state', body: { ProtectionEnabled: true, ExpiresInMinutes: 120 } },
      { method: 'PUT', url: '/v1/task-protection/v1/state', body: { ProtectionEnabled: false } },
    ]);
  });

  it('never throws when the agent is unreachable', async () => {
    const protection = new TaskProtection({
      agentUri: 'http://127.0.0.1:9',
      minutes: 10,
      logger: pino({ level: 'silent' }),
      timeoutMs: 200,
    });
    protection.update(1);
    await expect(protection.close()).resolves.toBeUndefined();
  });
});

describe('workerMetrics', () => {
  it('writes CloudWatch EMF lines with the stage dimension, and nothing without a stage', () => {
    const lines: string[] = [];
    workerMetrics('prod', (l) => lines.push(l)).emit({ CallsEnded: 1 }, { EndReason: 'agent-hung-up' });
    workerMetrics(undefined, (l) => lines.push(l)).emit({ CallsEnded: 1 });
    expect(lines).toHaveLength(1);
    const record = JSON.parse(lines[0]!) as Record<string, unknown> & {
      _aws: { CloudWatchMetrics: Array<{ Namespace: string; Dimensions: string[][]; Metrics: unknown[] }> };
    };
    expect(record).toMatchObject({ Stage: 'prod', EndReason: 'agent-hung-up', CallsEnded: 1 });
    expect(record._aws.CloudWatchMetrics[0]).toEqual({
      Namespace: 'WaSipBridge',
      Dimensions: [['Stage', 'EndReason']],
      Metrics: [{ Name: 'CallsEnded', Unit: 'Count' }],
    });
  });
});
