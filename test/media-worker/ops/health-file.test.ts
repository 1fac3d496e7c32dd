/**
 * The worker container's ECS health check (issue 15 item 5): the worker touches HEALTH_FILE after
 * every heartbeat the workers table accepted, and the check — the same `node -e` script the task
 * definition runs — passes while the file is under 30 s old and fails once it is older.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { WORKER_HEALTH_FILE, WORKER_HEALTH_SCRIPT } from '../../../lib/constructs/media-workers.ts';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';

const dir = mkdtempSync(join(tmpdir(), 'worker-health-'));
let stack: TestStack | undefined;
afterAll(async () => {
  await stack?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the task definition's health check command against `file`; resolves its exit code. */
async function healthCheck(file: string): Promise<number> {
  const script = WORKER_HEALTH_SCRIPT.replace(WORKER_HEALTH_FILE, file);
  try {
    await promisify(execFile)(process.execPath, ['-e', script]);
    return 0;
  } catch (error) {
    return (error as { code?: number }).code ?? -1;
  }
}

describe('the worker’s container health check', () => {
  it('passes on a fresh heartbeat file, fails on a stale or missing one', async () => {
    const file = join(dir, 'fresh');
    writeFileSync(file, '');
    expect(await healthCheck(file)).toBe(0);

    const old = new Date(Date.now() - 31_000);
    utimesSync(file, old, old);
    expect(await healthCheck(file)).toBe(1);
    expect(await healthCheck(join(dir, 'never-written'))).not.toBe(0);
  });

  it('the worker keeps its file fresh while its heartbeats reach the workers table', async () => {
    const file = join(dir, 'heartbeat');
    stack = await startTestStack({}, { bridge: true, workerEnv: { HEALTH_FILE: file } });

    const first = await eventually(
      () => {
        try {
          return statSync(file).mtimeMs;
        } catch {
          return false;
        }
      },
      10_000,
      'the worker to write its health file',
    );
    await eventually(() => statSync(file).mtimeMs > first, 15_000, 'the next heartbeat to touch it');
    expect(await healthCheck(file)).toBe(0);
  });
});
