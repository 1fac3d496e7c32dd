/**
 * Shared helpers for the benchmarks: percentiles, machine facts, JSON output.
 * Every bench prints one JSON object on stdout; progress goes to stderr.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

/** Percentile (nearest-rank) of an unsorted sample; undefined for an empty sample. */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

/** Rounds to `digits` decimals (undefined stays undefined). */
export function round(v: number | undefined, digits = 2): number | undefined {
  if (v === undefined || !Number.isFinite(v)) return v;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** p50/p90/p99/max summary in ms of a sample in ms. */
export function summaryMs(values: readonly number[]): {
  n: number;
  p50Ms: number | undefined;
  p90Ms: number | undefined;
  p99Ms: number | undefined;
  maxMs: number | undefined;
} {
  return {
    n: values.length,
    p50Ms: round(percentile(values, 50)),
    p90Ms: round(percentile(values, 90)),
    p99Ms: round(percentile(values, 99)),
    maxMs: round(values.length ? Math.max(...values) : undefined),
  };
}

/** Facts about the machine the figures come from. */
export function machine(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    cores: os.availableParallelism(),
    cpuModel: cpus[0]?.model,
    memoryGiB: round(os.totalmem() / 2 ** 30, 1),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    date: new Date().toISOString(),
    loadAverage1m: round(os.loadavg()[0], 2),
    code: codeUnderTest(),
  };
}

/** Progress line on stderr (stdout carries only JSON). */
export function progress(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** An aim and whether the measurement meets it. */
export function aim(
  description: string,
  measured: number | undefined,
  op: '<=' | '>=' | '<',
  target: number,
): {
  aim: string;
  measured: number | undefined;
  target: number;
  pass: boolean;
} {
  const pass =
    measured !== undefined && (op === '<=' ? measured <= target : op === '>=' ? measured >= target : measured < target);
  return { aim: `${description} ${op} ${target}`, measured, target, pass };
}

/** Machine-wide busy and total CPU time in ms from /proc/stat (Linux); undefined elsewhere. */
export function machineCpuMs(): { busyMs: number; totalMs: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    const tick = 10; // USER_HZ = 100 on Linux
    return { busyMs: (total - idle) * tick, totalMs: total * tick };
  } catch {
    return undefined;
  }
}

/**
 * Which code was measured: the commit, and a digest of the uncommitted changes under the source
 * folders the benches exercise (the working tree is what runs).
 */
export function codeUnderTest(): Record<string, unknown> {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const git = (args: string[]) => execFileSync('git', args, { cwd: root, encoding: 'utf8' }).trimEnd();
  try {
    const dirs = ['media-worker', 'functions', 'local', 'meta-simulator'];
    const changed = git(['status', '--porcelain', '--', ...dirs])
      .split('\n')
      .filter(Boolean)
      .map((l) => l.slice(3));
    const hash = createHash('sha256');
    for (const f of changed) {
      try {
        hash.update(f).update(readFileSync(`${root}${f}`));
      } catch {
        hash.update(`${f}:gone`);
      }
    }
    return {
      commit: git(['rev-parse', '--short', 'HEAD']),
      uncommittedFiles: changed,
      uncommittedDigest: changed.length ? hash.digest('hex').slice(0, 12) : undefined,
    };
  } catch (err) {
    return { error: String(err) };
  }
}
