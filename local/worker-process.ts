/**
 * Runs the media worker for the local stack: as a child process (as ECS runs it, for `npm start`)
 * or inside this process (tests). Both read the same worker configuration from an environment.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import type { Logger } from 'pino';
import type { CheckBusinessCall } from '#core/outbound/contract.ts';
import { loadWorkerConfig } from '#worker/config.ts';
import type { WorkerMetrics } from '#worker/ops/metrics.ts';
import type { RunningWorker } from '#worker/start.ts';

/** A running local worker. */
export interface WorkerHandle {
  readonly mode: 'child' | 'in-process';
  /** The worker's SIP contact, e.g. `sip:wa-sip-bridge@127.0.0.1:5060`. */
  readonly sipContact: string;
  /** The in-process worker, for tests. */
  readonly running?: RunningWorker;
  stop(): Promise<void>;
}

/** Starts the worker with `env` as its configuration environment. */
export async function startWorkerProcess(
  mode: 'child' | 'in-process',
  env: Record<string, string | undefined>,
  options: {
    inheritedEnv?: Record<string, string | undefined>;
    logger?: Logger;
    checkBusinessCall?: CheckBusinessCall;
    /** In-process only: where the worker's metrics go. */
    metrics?: WorkerMetrics;
  } = {},
): Promise<WorkerHandle> {
  if (mode === 'in-process') {
    const { startMediaWorker } = await import('#worker/start.ts');
    const running = await startMediaWorker(loadWorkerConfig(env), {
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.checkBusinessCall ? { checkBusinessCall: options.checkBusinessCall } : {}),
      ...(options.metrics ? { metrics: options.metrics } : {}),
    });
    return { mode, sipContact: running.sip.localContact, running, stop: () => running.stop({ drain: false }) };
  }
  // Validate here too, so a bad setting fails `npm start` with the key's name before forking.
  loadWorkerConfig(env);
  const child: ChildProcess = fork(new URL('../media-worker/src/main.ts', import.meta.url).pathname, [], {
    env: { ...(options.inheritedEnv ?? {}), ...env },
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await Promise.race([
    once(child, 'message') as Promise<[{ type: string; sipContact: string }]>,
    once(child, 'exit').then(([code]) => {
      throw new Error(`media worker exited during start-up (code ${String(code)})`);
    }),
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error('media worker did not start within 20 s')), 20_000).unref(),
    ),
  ]);
  let stopped: Promise<void> | undefined;
  return {
    mode,
    sipContact: ready[0].sipContact,
    stop() {
      stopped ??= (async () => {
        if (child.exitCode !== null) return;
        child.kill('SIGINT');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await once(child, 'exit');
        clearTimeout(timer);
      })();
      return stopped;
    },
  };
}
