/**
 * The simulator CLI: `serve` starts a simulator from flags/env; client commands drive it via `/_sim`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '#simulator/cli.ts';
import { APP_SECRET, callEvent, startReceiver, VERIFY_TOKEN, type WebhookReceiver } from './harness.ts';

let rx: WebhookReceiver | undefined;
afterEach(async () => {
  await rx?.close();
  rx = undefined;
});

function io(env: Record<string, string | undefined> = {}, shutdown?: Promise<void>) {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l), env, ...(shutdown ? { shutdown } : {}) },
  };
}

describe('npm run sim', () => {
  it('serve + call + calls + dtmf + hangup', async () => {
    rx = await startReceiver();
    let stop!: () => void;
    const shutdown = new Promise<void>((r) => {
      stop = r;
    });
    const server = io(
      { SIM_APP_SECRET: APP_SECRET, SIM_VERIFY_TOKEN: VERIFY_TOKEN, SIM_ACCESS_TOKEN: 'tok' },
      shutdown,
    );
    const serving = runCli(
      ['serve', '--webhook-url', rx.url, '--port', '0', '--pnid', '123', '--log-level', 'silent'],
      server.io,
    );
    const deadline = Date.now() + 5000;
    while (server.out.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const started = JSON.parse(server.out[0] ?? '{}') as { graphUrl: string; controlUrl: string };
    expect(started.graphUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v23\.0$/);
    expect(JSON.stringify(started)).not.toContain(APP_SECRET);
    const simUrl = started.controlUrl.replace(/\/_sim$/, '');

    const c = io();
    expect(await runCli(['call', '--from', '5511955551234', '--name', 'Ana', '--sim-url', simUrl], c.io)).toBe(0);
    const created = JSON.parse(c.out[0] ?? '{}') as { id: string; state: string };
    expect(created.state).toBe('offered');
    const connect = await rx.waitFor(callEvent('connect', created.id));
    expect(connect.signatureOk).toBe(true);

    const list = io({ SIM_URL: simUrl });
    expect(await runCli(['calls'], list.io)).toBe(0);
    expect(JSON.parse(list.out[0] ?? '{}').calls).toHaveLength(1);

    const dtmf = io({ SIM_URL: simUrl });
    expect(await runCli(['dtmf', created.id, '123'], dtmf.io)).toBe(0);

    const hang = io({ SIM_URL: simUrl });
    expect(await runCli(['hangup', created.id], hang.io)).toBe(0);
    await rx.waitFor(callEvent('terminate', created.id));
    const again = io({ SIM_URL: simUrl });
    expect(await runCli(['hangup', created.id], again.io)).toBe(1);

    const bad = io();
    expect(await runCli(['call', '--sim-url', simUrl], bad.io)).toBe(2);
    expect(await runCli(['serve'], io().io)).toBe(2);

    stop();
    expect(await serving).toBe(0);
  }, 20_000);
});
