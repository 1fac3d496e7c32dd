/**
 * rtpengine as the bench's anchor (issue 13): started by the bench on loopback with its own
 * ports, config and pid file in a temp dir, userspace forwarding only (`--table=-1`, no kernel
 * module), optionally pinned to one core with `taskset`, stopped at the end (SIGTERM, then
 * SIGKILL after a bound). Its CPU and RSS are read from /proc/<pid>/stat and /proc/<pid>/status.
 *
 * Install (Debian 12): `sudo apt-get install -y rtpengine-daemon` (10.5; the package's own
 * systemd service is not used and may stay stopped). Bench only — never a dependency of `npm test`.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { sleep } from './common.ts';
import { NgClient } from './ng-client.ts';

/** Options for {@link Rtpengine.start}. */
export interface RtpengineOptions {
  /** Binary; default `rtpengine` on PATH. */
  binary?: string;
  /** Core to pin to with `taskset -c`; undefined: not pinned. */
  core?: number;
  /** ng control port on 127.0.0.1; default a free one. */
  ngPort?: number;
  /** RTP port range. */
  portMin?: number;
  portMax?: number;
  /** Worker threads (`--num-threads`); default rtpengine's (one per CPU it may use). */
  threads?: number;
}

/** CPU ticks (USER_HZ) of a process: utime + stime, fields 14 and 15 of /proc/<pid>/stat. */
export function procCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces: fields start after its closing parenthesis.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]);
    return ticks * 10; // USER_HZ = 100 on Linux
  } catch {
    return undefined;
  }
}

/** Resident set size of a process in MB (/proc/<pid>/status VmRSS). */
export function procRssMb(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** The version line of the rtpengine binary, or undefined when it is not installed. */
export function rtpengineVersion(binary = 'rtpengine'): string | undefined {
  // rtpengine prints its version on stderr.
  const r = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return undefined;
  return `${r.stdout}${r.stderr}`.trim() || undefined;
}

/** Whether this rtpengine build can transcode between Opus and PCMU (`rtpengine --codecs`). */
export function rtpengineTranscodes(binary = 'rtpengine'): boolean {
  try {
    const out = execFileSync(binary, ['--codecs'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return /opus: fully supported/i.test(out) && /PCMU: fully supported/i.test(out);
  } catch {
    return false;
  }
}

/** A loopback UDP port free right now (bound and released), so that two runs never share an ng port. */
async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A running rtpengine daemon owned by the bench. */
export class Rtpengine {
  private exited = false;
  private constructor(
    private readonly child: ChildProcess,
    readonly pid: number,
    readonly ng: NgClient,
    private readonly dir: string,
    readonly command: string[],
    private readonly stderrTail: string[],
  ) {
    child.on('exit', () => {
      this.exited = true;
    });
  }

  /**
   * Starts the thinnest Node relay (bench/media/node-relay.ts) in rtpengine's place: same ng
   * control, same pinning, same /proc CPU and RSS (`--anchor node-relay`).
   */
  static async startNodeRelay(opts: RtpengineOptions = {}): Promise<Rtpengine> {
    const script = new URL('../media/node-relay.ts', import.meta.url).pathname;
    const args = [
      '--import',
      'tsx',
      script,
      String(opts.ngPort ?? (await freeUdpPort())),
      String(opts.portMin ?? 20_000),
      String(opts.portMax ?? 29_999),
    ];
    return Rtpengine.launch([process.execPath, ...args], opts, Number(args[3]));
  }

  /** Starts rtpengine in the foreground and waits until its ng port answers `ping`. */
  static async start(opts: RtpengineOptions = {}): Promise<Rtpengine> {
    const dir = mkdtempSync(join(os.tmpdir(), 'bench-rtpengine-'));
    const ngPort = opts.ngPort ?? (await freeUdpPort());
    const conf = join(dir, 'rtpengine.conf');
    // An empty config of our own, so that /etc/rtpengine/rtpengine.conf is never read.
    writeFileSync(conf, '[rtpengine]\n');
    const rtpArgs = [
      `--config-file=${conf}`,
      '--foreground',
      '--log-stderr',
      '--log-level=4',
      '--table=-1', // userspace forwarding, no kernel module
      '--interface=127.0.0.1',
      `--listen-ng=127.0.0.1:${ngPort}`,
      `--port-min=${opts.portMin ?? 20_000}`,
      `--port-max=${opts.portMax ?? 29_999}`,
      `--pidfile=${join(dir, 'rtpengine.pid')}`,
      '--delete-delay=0',
      ...(opts.threads ? [`--num-threads=${opts.threads}`] : []),
    ];
    const binary = opts.binary ?? 'rtpengine';
    return Rtpengine.launch([binary, ...rtpArgs], opts, ngPort, dir);
  }

  /** Spawns `argv` (pinned when `opts.core` is set) and waits until its ng port answers `ping`. */
  private static async launch(
    argv: string[],
    opts: RtpengineOptions,
    ngPort: number,
    dir = mkdtempSync(join(os.tmpdir(), 'bench-anchor-')),
  ): Promise<Rtpengine> {
    const command = opts.core === undefined ? argv : ['taskset', '-c', String(opts.core), ...argv];
    const child = spawn(command[0] as string, command.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    const tail: string[] = [];
    child.stderr?.on('data', (d: Buffer) => {
      tail.push(...d.toString().split('\n').filter(Boolean));
      tail.splice(0, Math.max(0, tail.length - 20));
    });
    const spawned = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('spawn', () => resolve(child.pid as number));
    });
    const ng = await NgClient.open(ngPort);
    const engine = new Rtpengine(child, spawned, ng, dir, command, tail);
    const deadline = performance.now() + 10_000;
    for (;;) {
      try {
        await ng.ping(300);
        break;
      } catch (err) {
        if (engine.exited || performance.now() > deadline) {
          await engine.stop();
          throw new Error(`${argv[0]} did not start (${String(err)}); its stderr: ${tail.join(' | ')}`);
        }
        await sleep(100);
      }
    }
    return engine;
  }

  /** CPU time used so far, ms. */
  cpuMs(): number | undefined {
    return procCpuMs(this.pid);
  }

  /** Resident set size, MB. */
  rssMb(): number | undefined {
    return procRssMb(this.pid);
  }

  /** The last lines rtpengine logged (warnings and errors). */
  logTail(): string[] {
    return [...this.stderrTail];
  }

  /** Stops the daemon: SIGTERM, SIGKILL after `timeoutMs`; removes the temp dir. */
  async stop(timeoutMs = 3000): Promise<void> {
    this.ng.close();
    if (!this.exited) {
      const gone = new Promise<void>((r) => this.child.once('exit', () => r()));
      this.child.kill('SIGTERM');
      const killer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
      await gone;
      clearTimeout(killer);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
