/**
 * The Graph client of the permission endpoints, against the simulator as Meta: a user whose phone
 * is `""` (earlier BSUID revision) is addressed by BSUID — never `user_wa_id=` or `to: ""` (D4).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MetaPermissionsClient } from '#core/permissions/meta-permissions.ts';
import { UnknownUserError } from '#core/permissions/service.ts';
import { ACCESS_TOKEN, type Env, startEnv } from '../../meta-simulator/graph/harness.ts';

let env: Env;
let client: MetaPermissionsClient;

beforeAll(async () => {
  env = await startEnv({ permissionsRateLimitPerSecond: 1000 });
  client = new MetaPermissionsClient({ baseUrl: env.sim.graphUrl, accessToken: ACCESS_TOKEN, timeoutMs: 5000 });
});
afterAll(() => env?.close());

describe('MetaPermissionsClient with "" identifiers', () => {
  it('asks call_permissions by BSUID for a user whose phone is ""', async () => {
    // Before: the request was `?user_wa_id=` and Meta answered 100 "The parameter user_wa_id is required."
    env.sim.permissions.grant('US.777', { permanent: true });
    const view = await client.getCallPermissions(env.sim.business.phoneNumberId, { phone: '', userId: 'US.777' });
    expect(view).toMatchObject({ status: 'permanent', canCall: true });
  });

  it('sends a permission request to the BSUID, not to: ""', async () => {
    env.sim.permissions.openServiceWindow('US.778'); // the user wrote first: free-form is allowed (PERM26)
    const id = await client.sendPermissionRequest(
      env.sim.business.phoneNumberId,
      { phone: '', userId: 'US.778' },
      { kind: 'interactive', body: 'May we call you?' },
    );
    expect(id).toMatch(/^wamid\./);
    const sent = env.sim.messages.sent.at(-1)!;
    expect(sent.body).toMatchObject({ recipient: 'US.778' });
    expect(sent.body).not.toHaveProperty('to');
  });

  it('refuses a user with no identifier before asking Meta', async () => {
    await expect(client.getCallPermissions(env.sim.business.phoneNumberId, { phone: '' })).rejects.toThrow(
      UnknownUserError,
    );
  });
});
