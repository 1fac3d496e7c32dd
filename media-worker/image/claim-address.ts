/**
 * Entrypoint of the `address-claim` container (fixed-address mode; see ./address-claim.ts): exits
 * 0 once the task holds a pool address the internet sees it at, 1 with the named error otherwise,
 * so drachtio-server and the worker (which depend on its SUCCESS) never start without one.
 */
import { claimPoolAddress } from './address-claim.ts';

try {
  const claimed = await claimPoolAddress(process.env);
  console.log(JSON.stringify({ level: 'info', msg: 'pool address claimed', ...claimed }));
  process.exit(0);
} catch (error) {
  const name = error instanceof Error ? error.name : 'Error';
  console.error(JSON.stringify({ level: 'error', msg: 'pool address claim failed', name, error: String(error) }));
  process.exit(1);
}
