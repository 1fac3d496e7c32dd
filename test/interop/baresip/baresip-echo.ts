/**
 * Runs baresip (Debian `baresip-core`) as an echoing SIP far end for the interop suite: its echo
 * module answers every incoming call and, bridged through the aubridge audio driver, plays back
 * what it receives. The config comes from `test/fixtures/baresip/*.template`, filled into a
 * temporary directory. Everything baresip prints is kept for assertions and failure diagnostics.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../helpers/free-port.ts';

const FIXTURES = join(import.meta.dirname, '../../fixtures/baresip');

/** Where Debian puts baresip's modules (`dpkg -L baresip-core | grep '\.so'`). */
export const MODULE_DIRS = ['/usr/lib/baresip/modules', '/usr/lib/x86_64-linux-gnu/baresip/modules'];

/** Modules the echo far end cannot work without. */
const REQUIRED_MODULES = ['account.so', 'aubridge.so', 'echo.so', 'g711.so', 'opus.so'];

export type BaresipCodec = 'opus' | 'PCMU' | 'PCMA';

/** Codec name as baresip's `audio_codecs` account parameter wants it. */
const BARESIP_CODEC: Record<BaresipCodec, string> = {
  opus: 'opus/48000/2',
  PCMU: 'PCMU/8000/1',
  PCMA: 'PCMA/8000/1',
};

export interface BaresipEchoOptions {
  /** Address to bind SIP and RTP on (and pass as `-n`). @default '127.0.0.3' */
  readonly address?: string;
  /** Codecs the account offers and accepts, in order. @default all of opus, PCMU, PCMA */
  readonly codecs?: readonly BaresipCodec[];
  /** RTP port range. @default '51000-51999' (outside the worker's and free-port.ts's ranges) */
  readonly rtpPorts?: string;
  /**
   * SDES-SRTP (baresip's srtp.so, account parameter `mediaenc`): `srtp-mand` takes and offers
   * `RTP/SAVP` with `a=crypto` only; `srtp` is best effort. @default none (plain RTP)
   */
  readonly mediaenc?: 'srtp' | 'srtp-mand';
  /** How long to wait for "baresip is ready.". @default 5000 */
  readonly readyTimeoutMs?: number;
  /**
   * PEM file with the certificate and its key (`sip_certificate`): baresip then also listens for
   * SIP over TLS, on the SIP port + 1 (libre's rule).
   */
  readonly tlsCertificate?: string;
}

/** A running baresip echo far end. */
export interface BaresipEcho {
  readonly address: string;
  readonly sipPort: number;
  /** `sip:echo@address:port`, to use as the bridge's `SIP_TARGET_URI`. */
  readonly uri: string;
  readonly configDir: string;
  /** Everything baresip printed so far (stdout and stderr, in arrival order). */
  output(): string;
  /** Resolves with the output once `pattern` appears in what baresip prints after `fromOffset`. */
  waitForOutput(pattern: RegExp, timeoutMs: number, fromOffset?: number): Promise<string>;
  /** Length of the output so far, to wait only for later lines. */
  mark(): number;
  /** Exit code/signal once baresip has exited (resolves immediately if it already has). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Freezes baresip (SIGSTOP): it neither reads nor sends anything until {@link resume}. */
  pause(): void;
  resume(): void;
  /** Kills baresip (SIGTERM, then SIGKILL after 2 s) and removes its config dir. Idempotent. */
  stop(): Promise<void>;
}

/** Fails (throws) with an actionable message unless baresip and its modules are installed. */
export function requireBaresip(): string {
  const probe = spawnSync('baresip', ['-h'], { encoding: 'latin1', timeout: 5000 });
  if (probe.error) {
    throw new Error(
      `baresip is not installed (${probe.error.message}); the interop suite needs it: ` +
        'DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends baresip-core',
    );
  }
  const dir = MODULE_DIRS.find((d) => existsSync(join(d, 'echo.so')));
  if (!dir) throw new Error(`baresip's echo.so was not found in ${MODULE_DIRS.join(' or ')} (package baresip-core)`);
  const missing = REQUIRED_MODULES.filter((m) => !existsSync(join(dir, m)));
  if (missing.length > 0) throw new Error(`baresip modules missing from ${dir}: ${missing.join(', ')}`);
  return dir;
}

function fill(template: string, values: Record<string, string>): string {
  const out = template.replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`no value for {{${key}}} in a baresip fixture`);
    return value;
  });
  return out;
}

/** Writes the config and starts baresip; resolves once it says it is ready. */
export async function startBaresipEcho(options: BaresipEchoOptions = {}): Promise<BaresipEcho> {
  const moduleDir = requireBaresip();
  const address = options.address ?? '127.0.0.3';
  const codecs = options.codecs ?? ['opus', 'PCMU', 'PCMA'];
  const sipPort = await freePort(address);
  const configDir = mkdtempSync(join(tmpdir(), 'baresip-echo-'));
  const values = {
    ADDRESS: address,
    SIP_PORT: String(sipPort),
    RTP_PORTS: options.rtpPorts ?? '51000-51999',
    MODULE_PATH: moduleDir,
    CODEC_MODULES: [
      ...(codecs.includes('opus') ? ['module\t\t\topus.so'] : []),
      ...(codecs.some((c) => c !== 'opus') ? ['module\t\t\tg711.so'] : []),
    ].join('\n'),
    ACCOUNT_PARAMS:
      `;audio_codecs=${codecs.map((c) => BARESIP_CODEC[c]).join(',')}` +
      (options.mediaenc ? `;mediaenc=${options.mediaenc}` : ''),
    MEDIAENC_MODULES: options.mediaenc ? 'module\t\t\tsrtp.so' : '',
  };
  if (options.mediaenc && !existsSync(join(moduleDir, 'srtp.so'))) {
    throw new Error(`baresip's srtp.so is missing from ${moduleDir} (package baresip-core)`);
  }
  for (const name of ['config', 'accounts']) {
    writeFileSync(join(configDir, name), fill(readFileSync(join(FIXTURES, `${name}.template`), 'utf8'), values));
  }
  if (options.tlsCertificate !== undefined)
    appendFileSync(join(configDir, 'config'), `sip_certificate\t\t${options.tlsCertificate}\n`);

  // `-n` makes baresip put this address (not eth0's) in its Contact and SDP; `-s` adds a SIP trace
  // to the output (for the assertions on our BYE and for failure diagnostics).
  const child: ChildProcess = spawn('baresip', ['-f', configDir, '-n', address, '-s'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HOME: configDir },
  });
  let out = '';
  const waiters = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString('latin1');
    for (const w of waiters) w();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', (error) => {
      out += `\n[spawn error: ${error.message}]\n`;
      exitInfo = { code: -1, signal: null };
      resolve(exitInfo);
      for (const w of waiters) w();
    });
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
      for (const w of waiters) w();
    });
  });

  const waitForOutput = (pattern: RegExp, timeoutMs: number, fromOffset = 0): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (pattern.test(out.slice(fromOffset))) {
          done();
          resolve(out);
        } else if (exitInfo) {
          done();
          reject(new Error(`baresip exited (${JSON.stringify(exitInfo)}) before printing ${pattern}:\n${out}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`baresip did not print ${pattern} within ${timeoutMs} ms; its output:\n${out}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      if (!exitInfo) {
        child.kill('SIGCONT');
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 2000);
        await exited;
        clearTimeout(killer);
      }
      rmSync(configDir, { recursive: true, force: true });
    })();
    return stopping;
  };

  try {
    await waitForOutput(/baresip is ready\./, options.readyTimeoutMs ?? 5000);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    address,
    sipPort,
    uri: `sip:echo@${address}:${sipPort}`,
    configDir,
    output: () => out,
    waitForOutput,
    mark: () => out.length,
    exited,
    pause: () => {
      child.kill('SIGSTOP');
    },
    resume: () => {
      child.kill('SIGCONT');
    },
    stop,
  };
}
