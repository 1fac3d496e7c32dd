/**
 * The prebuilt drachtio-server (a test tool in ../shared/tools/drachtio-server, see its README) for
 * local mode with SIP_STACK=drachtio (`npm start`, `npm run demo`) and the drachtio runs of the SIP
 * contract suite: started on loopback with free ports, waited for, stopped with a bounded wait.
 * Missing binary → a clear error naming DRACHTIO_SERVER_BIN, never a silent fallback.
 *
 * Ready means its SIP stack is up, not just its application port: drachtio-server 0.9.4 opens the
 * application port first and, when its SIP port is taken, then exits with code 0 and no error
 * line. So start-up waits for both the application port and the log line sofia-sip's event loop
 * starts with (printed only after the SIP sockets are bound), and an exit before that is a
 * {@link SipStackError} carrying the server's log.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SipStackError } from '#worker/sip/sip-adapter.ts';
import { freePort } from './ports.ts';

/** drachtio-server's notice once its SIP transports are bound and sofia-sip runs. */
const SIP_STACK_UP = 'Starting sofia event loop';
/** Log levels that still print {@link SIP_STACK_UP} (a notice). */
const VERBOSE_ENOUGH = new Set(['notice', 'info', 'debug']);

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
 * Start drachtio-server on `address` (default 127.0.0.1) with free application and SIP ports (or
 * `fixedSipPort`). Resolves once its application port accepts and its SIP stack is up.
 * @throws Error naming `DRACHTIO_SERVER_BIN` when the binary is missing.
 * @throws {SipStackError} when it exits during start-up (`SIP port … busy` when it got as far as
 *   starting its SIP stack) or is not up within 10 s; the message ends with its log.
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
  // Start-up is read from a notice, so the level never goes quieter than that.
  const level = process.env.DRACHTIO_LOGLEVEL ?? 'notice';
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
      VERBOSE_ENOUGH.has(level) ? level : 'notice',
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
  let starting = true;
  let exit: string | undefined;
  const exited = new Promise<void>((res) =>
    child.once('exit', (code, signal) => {
      exit = signal ? `signal ${signal}` : `code ${code}`;
      // An exit nobody asked for after start-up is a crash: say so with the server's own last words.
      if (!stopping && !starting) console.error(`drachtio-server exited by itself (${exit}):\n${out}`);
      res();
    }),
  );
  const started = Date.now();
  let adminUp = false;
  while (!(adminUp && out.includes(SIP_STACK_UP))) {
    if (exit !== undefined) {
      const sip = `${address}:${sipPort}`;
      throw new SipStackError(
        out.includes('starting sip stack')
          ? `SIP port ${sip} busy: drachtio-server exited at start (${exit}) after starting its SIP stack; its log:\n${out}`
          : `drachtio-server (${bin}) exited at start (${exit}); its log:\n${out}`,
      );
    }
    if (Date.now() - started > 10_000) {
      child.kill('SIGKILL');
      throw new SipStackError(
        `drachtio-server (${bin}) was not up on ${address}:${port} (application) and ${address}:${sipPort} (SIP) within 10 s; its log:\n${out}`,
      );
    }
    adminUp ||= await accepts(address, port);
    if (!(adminUp && out.includes(SIP_STACK_UP))) await sleep(20);
  }
  starting = false;
  const running = (): boolean => exit === undefined;
  return {
    host: address,
    port,
    secret,
    sipAddress: address,
    sipPort,
    log: () => out,
    stop() {
      stopping ??= (async () => {
        if (!running()) return;
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      })();
      return stopping;
    },
  };
}
