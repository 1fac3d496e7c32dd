import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main, runSmoke } from '../../scripts/smoke.ts';
import { startTestStack, TEST_SECRET, TEST_VERIFY_TOKEN, type TestStack } from '../helpers/test-stack.ts';

const run = promisify(execFile);

describe('Script: smoke', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('passes every check against the local stack when given the token and the secret', async () => {
    // Act
    const report = await runSmoke({ url: stack.url, verifyToken: TEST_VERIFY_TOKEN, appSecret: TEST_SECRET });

    // Assess
    expect(report.checks.map((c) => [c.name, c.ok, c.status])).toEqual([
      ['health', true, 200],
      ['handshake-right-token', true, 200],
      ['handshake-wrong-token', true, 403],
      ['post-unsigned', true, 401],
      ['post-mis-signed', true, 401],
      ['post-signed', true, 200],
    ]);
    expect(report.ok).toBe(true);
    // The signed POST carried no entries: nothing was stored or enqueued.
    expect(await stack.callRecords()).toEqual([]);
    expect(await stack.jobCount()).toBe(0);
  });

  it('skips the checks that need secrets it was not given, and does not pass: a skipped check proves nothing', async () => {
    const report = await runSmoke({ url: `${stack.url}/` });

    expect(report.ok).toBe(false);
    expect(report.checks.filter((c) => !c.ok).every((c) => c.skipped)).toBe(true);
    expect(report.checks.filter((c) => c.skipped).map((c) => c.name)).toEqual(['handshake-right-token', 'post-signed']);
  });

  it('fails when the deployed verify token or app secret is not the one given', async () => {
    const report = await runSmoke({ url: stack.url, verifyToken: 'not-the-token', appSecret: 'not-the-secret' });

    expect(report.ok).toBe(false);
    expect(report.checks.filter((c) => !c.ok).map((c) => [c.name, c.status])).toEqual([
      ['handshake-right-token', 403],
      ['post-signed', 401],
    ]);
  });

  it('catches an endpoint that accepts unsigned webhooks', async () => {
    // Prepare: a server that answers 200 to everything, as a broken deployment might
    const server = createServer((_, res) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}'),
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    // Act
    const report = await runSmoke({ url });
    server.close();

    // Assess
    expect(report.ok).toBe(false);
    expect(report.checks.filter((c) => !c.ok && !c.skipped).map((c) => c.name)).toEqual([
      'handshake-wrong-token',
      'post-unsigned',
      'post-mis-signed',
    ]);
  });

  it('exits 0 with a JSON report from the command line, taking secrets from the environment', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'scripts/smoke.ts', '--url', stack.url], {
      env: { ...process.env, META_VERIFY_TOKEN: TEST_VERIFY_TOKEN, META_APP_SECRET: TEST_SECRET },
    });

    const report = JSON.parse(stdout) as { ok: boolean; checks: Array<{ skipped?: boolean }> };
    expect(report.ok).toBe(true);
    expect(report.checks.some((c) => c.skipped)).toBe(false);
  });

  it('exits 1 when the API is unreachable and 2 without --url', async () => {
    const lines: string[] = [];
    const out = (l: string) => lines.push(l);

    expect(await main(['--url', 'http://127.0.0.1:9', '--timeout-ms', '2000'], {}, out)).toBe(1);
    expect(JSON.parse(lines[0]!).checks[0]).toMatchObject({ name: 'health', ok: false });
    expect(await main([], {}, out)).toBe(2);
    expect(await main(['--bogus'], {}, out)).toBe(2);
  });
});
