/**
 * Runs every benchmark, one after another, each in its own process (so one bench's sockets,
 * timers and heap never weigh on the next), and prints their results as one JSON array on
 * stdout. Progress goes to stderr. Bounded: each bench has a hard timeout.
 *
 * Usage: node --import tsx bench/run-all.ts [--quick]
 *   --quick   shorter runs (smoke test of the benches, figures not meaningful)
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { machine, progress } from './lib/common.ts';
import { rtpengineVersion } from './lib/rtpengine.ts';

const quick = process.argv.includes('--quick');
/** media-bridge.ts runs rtpengine beside the bridge when it is installed (see bench/lib/rtpengine.ts). */
const anchor = rtpengineVersion() ? [] : ['--no-rtpengine'];
if (anchor.length)
  progress(
    'rtpengine not installed: media-bridge.ts runs without its anchor (sudo apt-get install -y rtpengine-daemon)',
  );

const BENCHES: Array<{ file: string; args: string[]; timeoutS: number }> = [
  { file: 'call-flow.ts', args: quick ? ['--calls', '5'] : [], timeoutS: 120 },
  { file: 'media-bridge.ts', args: [...(quick ? ['--quick'] : []), ...anchor], timeoutS: anchor.length ? 420 : 840 },
  { file: 'media-bridge.ts', args: ['--profile', ...(quick ? ['--quick'] : [])], timeoutS: 120 },
];

function run(file: string, args: string[], timeoutS: number): Promise<unknown> {
  return new Promise((resolve) => {
    const path = fileURLToPath(new URL(`./${file}`, import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', path, ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutS * 1000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = out.trim().split('\n').filter(Boolean).at(-1);
      try {
        resolve(JSON.parse(line ?? ''));
      } catch {
        resolve({ bench: file, args, error: `exited with ${signal ?? code} and no JSON result` });
      }
    });
  });
}

const started = performance.now();
const results: unknown[] = [];
for (const b of BENCHES) {
  progress(`running ${b.file} ${b.args.join(' ')}`);
  results.push(await run(b.file, b.args, b.timeoutS));
}
progress(`all benches done in ${Math.round((performance.now() - started) / 1000)} s on ${JSON.stringify(machine())}`);
process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
