/**
 * The prebuilt drachtio-server (a test tool in ../shared/tools/drachtio-server, see its README) for
 * local mode with SIP_STACK=drachtio (`npm start`, `npm run demo`) and the drachtio runs of the SIP
 * contract suite: started on loopback with free ports, waited for, stopped with a bounded wait.
 * Missing binary → a clear error naming DRACHTIO_SERVER_BIN, never a silent fallback.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './ports.ts';

/** Where the binary is: `DRACHTIO_SERVER_BIN`, else the shared test tool next to the project. */
export function drachtioServerBin(): string {
  return (
    process.env.DRACHTIO_SERVER_BIN ??
    resolve(import.meta.dirname, '../../shared/tools/drachtio-server/bin/drachtio-server')
  );
}

/** A running drachtio-server. */
export interface DrachtioServer {
  /** Application (admin) address, port and secret for drachtio-srf. */
  readonly host: string;
  readonly port: number;
  readonly secret: string;
  /** Its SIP address and port (UDP and TCP). */
  readonly sipAddress: string;
  readonly sipPort: number;
  /** Its stdout and stderr so far (for failure messages). */
  log(): string;
  /** SIGTERM, then SIGKILL after 5 s. Idempotent. */
  stop(): Promise<void>;
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

/**
 * Start drachtio-server on `address` (default 127.0.0.1) with free application and SIP ports.
 * @throws Error naming `DRACHTIO_SERVER_BIN` when the binary is missing or does not come up in 10 s.
 */
export async function startDrachtioServer(
  address = '127.0.0.1',
  fixedSipPort?: number,
  bin: string = drachtioServerBin(),
): Promise<DrachtioServer> {
  if (!existsSync(bin))
    throw new Error(
      `drachtio-server not found at ${bin}: set DRACHTIO_SERVER_BIN to the prebuilt test tool (../shared/tools/drachtio-server/bin/drachtio-server); the drachtio SIP stack in local mode and its tests need it`,
    );
  const port = await freePort(address);
  let sipPort = fixedSipPort ?? (await freePort(address));
  while (sipPort === port) sipPort = await freePort(address);
  const secret = `s${Math.random().toString(36).slice(2)}`;
  const child: ChildProcess = spawn(
    bin,
    [
      '--address',
      address,
      '--port',
      String(port),
      '--secret',
      secret,
      '--contact',
      `sip:${address}:${sipPort};transport=udp,tcp`,
      '--loglevel',
      process.env.DRACHTIO_LOGLEVEL ?? 'notice',
      '--sofia-loglevel',
      '0',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString('utf8')).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let stopping: Promise<void> | undefined;
  const exited = new Promise<void>((res) =>
    child.once('exit', (code, signal) => {
      // An exit nobody asked for is a crash: say so with the server's own last words.
      if (!stopping) console.error(`drachtio-server exited by itself (code ${code}, signal ${signal}):\n${out}`);
      res();
    }),
  );
  let running = true;
  void exited.then(() => {
    running = false;
  });
  const started = Date.now();
  while (!(await accepts(address, port))) {
    if (!running) throw new Error(`drachtio-server (${bin}) exited at start:\n${out}`);
    if (Date.now() - started > 10_000) {
      child.kill('SIGKILL');
      throw new Error(`drachtio-server (${bin}) did not listen on ${address}:${port} within 10 s:\n${out}`);
    }
    await sleep(20);
  }
  return {
    host: address,
    port,
    secret,
    sipAddress: address,
    sipPort,
    log: () => out,
    stop() {
      stopping ??= (async () => {
        if (!running) return;
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      })();
      return stopping;
    },
  };
}
