/**
 * The drachtio-server sidecar's entrypoint (media-worker/drachtio/entrypoint.sh), run for real by
 * bash against fake ECS metadata and checkip endpoints over HTTP, with a stand-in for the drachtio
 * binary that prints the command line it was given: what drachtio-server would be told to bind and
 * advertise in each SIP_ADVERTISED_ADDRESS mode (issue 15 item 2).
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ENTRYPOINT = new URL('../../../media-worker/drachtio/entrypoint.sh', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'drachtio-entrypoint-'));
const fakeDrachtio = join(dir, 'drachtio');
let server: Server;
let base: string;

beforeAll(async () => {
  writeFileSync(fakeDrachtio, '#!/bin/sh\necho "ARGS $*"\n');
  chmodSync(fakeDrachtio, 0o755);
  server = createServer((req, res) => {
    if (req.url === '/v4/meta') {
      res.end(JSON.stringify({ Networks: [{ NetworkMode: 'awsvpc', IPv4Addresses: ['10.0.1.23'] }] }));
    } else if (req.url === '/checkip') {
      res.end('203.0.113.7\n');
    } else {
      res.writeHead(404).end();
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the entrypoint with `env`; resolves the stand-in's argument line, or the failure. */
function run(env: Record<string, string>): Promise<{ args?: string; error?: string }> {
  return new Promise((resolve) => {
    execFile(
      'bash',
      [ENTRYPOINT],
      {
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          DRACHTIO_BIN: fakeDrachtio,
          DRACHTIO_SECRET: 'shared-secret',
          ADDRESS_DISCOVERY: 'ecs',
          ECS_CONTAINER_METADATA_URI_V4: `${base}/v4/meta`,
          PUBLIC_ADDRESS_URL: `${base}/checkip`,
          ...env,
        },
        timeout: 20_000,
      },
      (error, stdout, stderr) => resolve(error ? { error: stderr } : { args: /^ARGS (.*)$/m.exec(stdout)?.[1] ?? '' }),
    );
  });
}

describe('the drachtio sidecar entrypoint', () => {
  it('binds the private address and advertises the public one by default', async () => {
    const { args } = await run({});

    expect(args).toContain('--contact sip:10.0.1.23:5060;transport=udp,tcp');
    expect(args).toContain('--external-ip 203.0.113.7');
    expect(args).toContain('--address 127.0.0.1 --port 9022');
    expect(args).not.toContain('shared-secret'); // drachtio reads the secret from its environment
  });

  it('advertises nothing but the private address with SIP_ADVERTISED_ADDRESS=private (a PBX over VPN)', async () => {
    const { args } = await run({ SIP_ADVERTISED_ADDRESS: 'private' });

    expect(args).toContain('--contact sip:10.0.1.23:5060;transport=udp,tcp');
    expect(args).not.toContain('--external-ip');
  });

  it('advertises an explicit address, and refuses a malformed one', async () => {
    expect((await run({ SIP_ADVERTISED_ADDRESS: '198.51.100.9' })).args).toContain('--external-ip 198.51.100.9');
    expect((await run({ SIP_ADVERTISED_ADDRESS: 'pbx.example' })).error).toMatch(
      /SIP_ADVERTISED_ADDRESS must be public, private or an IPv4/,
    );
  });
});
