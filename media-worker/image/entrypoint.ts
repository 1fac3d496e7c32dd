/**
 * Entrypoint of the media worker image (see the repository's Dockerfile): prepares the
 * environment (addresses, SSM settings), then runs the worker's own `main.ts`, which validates the
 * configuration and drains on SIGTERM.
 */
import { prepareWorkerEnvironment } from './environment.ts';

try {
  const set = await prepareWorkerEnvironment(process.env);
  console.log(JSON.stringify({ level: 'info', msg: 'worker environment prepared', set }));
} catch (error) {
  console.error(JSON.stringify({ level: 'error', msg: 'worker environment failed', error: String(error) }));
  process.exit(1);
}
await import('../src/main.ts');
