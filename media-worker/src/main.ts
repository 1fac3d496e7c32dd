/**
 * Media worker process entry (ECS task; a child process of `npm start` locally). Reads its
 * configuration, starts, and drains on SIGTERM: stop taking jobs, let active calls finish.
 */
import { ConfigError } from '#core/errors.ts';
import { loadWorkerConfig } from './config.ts';
import { startMediaWorker } from './start.ts';

async function main(): Promise<void> {
  const config = loadWorkerConfig();
  const running = await startMediaWorker(config);
  let stopping = false;
  const stop = (signal: string, drain: boolean) => {
    if (stopping) return;
    stopping = true;
    running.logger.info({ signal, activeCalls: running.worker.activeCalls }, 'shutting down');
    running.stop({ drain, timeoutMs: drain ? 110_000 : 5000 }).then(
      () => process.exit(0),
      (error: unknown) => {
        running.logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM', true));
  process.on('SIGINT', () => stop('SIGINT', false));
  if (process.send) process.send({ type: 'ready', sipContact: running.sip.localContact });
}

main().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? `media-worker: ${error.message}` : error);
  process.exit(1);
});
