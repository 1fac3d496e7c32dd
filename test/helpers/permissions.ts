import type { TestStack } from './test-stack.ts';
import { eventually } from './test-stack.ts';

/**
 * Grants a call permission the way a business gets one: the bridge's API sends Meta a permission
 * request (the configured template, which needs no customer-service window), the (simulated) user
 * accepts, Meta's reply webhook updates the bridge's ledger.
 */
export async function grantPermission(
  stack: TestStack,
  number: string,
  kind: 'accept_permanent' | 'accept_temporary' = 'accept_permanent',
): Promise<void> {
  stack.simulator!.users.setScript(number, { permissionReply: kind, permissionReplyDelayMs: 10 });
  const res = await stack.api(`/v1/permissions/${number}/request`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ kind: 'template' }),
  });
  if (res.status >= 300) throw new Error(`permission request answered ${res.status}: ${await res.text()}`);
  const wanted = kind === 'accept_permanent' ? 'permanent' : 'temporary';
  await eventually(
    async () => {
      const r = await stack.api(`/v1/permissions/${number}`);
      return r.status === 200 && ((await r.json()) as { effectiveState?: string }).effectiveState === wanted;
    },
    5000,
    `a ${wanted} permission for ${number}`,
  );
}
