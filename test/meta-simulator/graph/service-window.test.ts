/**
 * The customer-service window and permission-request templates, as Meta applies them (PERM26, BTN26, §3.4, §4.5):
 * free-form `call_permission_request` and `voice_call` messages only within 24 h of the user's last message or call
 * (else 131047, Meta's re-engagement error); a template is a permission request because of its
 * `call_permission_request` component, whatever its name.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '#simulator/graph/clock.ts';
import { callEvent, type Env, startEnv } from './harness.ts';

const DAY = 86_400_000;
const U = '447700900321';

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

const freeForm = { type: 'call_permission_request', action: { name: 'call_permission_request' } };
const button = {
  type: 'voice_call',
  body: { text: 'Call us' },
  action: { name: 'voice_call', parameters: { display_text: 'Call now' } },
};

async function send(e: Env, content: Record<string, unknown>, to = U) {
  return e.graph('POST', `/${e.sim.business.phoneNumberId}/messages`, {
    messaging_product: 'whatsapp',
    recipient_type: 'individual',
    to,
    ...content,
  });
}

describe('the customer-service window (PERM26, BTN26)', () => {
  it('refuses free-form permission requests and call buttons to a user who never wrote (131047)', async () => {
    env = await startEnv();
    for (const interactive of [freeForm, button]) {
      const res = await send(env, { type: 'interactive', interactive });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 131047, message: '(#131047) Re-engagement message' });
      expect(res.body.error.error_data.details).toContain('more than 24 hours have passed');
    }
    expect(env.sim.messages.sent).toEqual([]);
  });

  it('a user text opens the window for 24 h: a messages webhook, then free-form is accepted until 24 h later', async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 1, 9));
    env = await startEnv({ clock });
    const opened = await fetch(`${env.sim.baseUrl}/_sim/users/${U}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'Hello, can you call me?' }),
    });
    expect(opened.status).toBe(201);
    expect(await opened.json()).toMatchObject({ user: U, serviceWindowOpen: true });
    const text = await env.rx.waitFor((c) => c.field === 'messages', 5000, 'the user text');
    expect(text.item).toMatchObject({ from: U, type: 'text', text: { body: 'Hello, can you call me?' } });

    clock.advance(DAY - 1);
    expect((await send(env, { type: 'interactive', interactive: button })).status).toBe(200);
    clock.advance(1);
    expect((await send(env, { type: 'interactive', interactive: freeForm })).body.error.code).toBe(131047);
    // A template needs no window.
    const template = await send(env, {
      type: 'template',
      template: { name: 'call_permission_request', language: { code: 'en' } },
    });
    expect(template.status).toBe(200);
  });

  it('a user calling opens the window, answered or not (§4.5)', async () => {
    env = await startEnv();
    const call = await env.sim.placeUserCall({ user: { waId: U } });
    await env.rx.waitFor(callEvent('connect', call.id));
    call.hangUp();
    expect((await send(env, { type: 'interactive', interactive: freeForm })).status).toBe(200);
  });
});

describe('permission-request templates are known by their component (§3.4)', () => {
  it('a misnamed template with the component is a permission request; a cpr-looking name without it is not', async () => {
    env = await startEnv();
    const { sim } = env;
    sim.users.setScript(U, { permissionReply: 'accept_temporary', permissionReplyDelayMs: 10 });
    sim.messages.registerTemplate({
      name: 'order_followup',
      language: 'en_US',
      category: 'UTILITY',
      components: [{ type: 'BODY', text: 'About order {{1}}: may we call you?' }, { type: 'call_permission_request' }],
    });
    sim.messages.registerTemplate({
      name: 'call_permission_x',
      language: 'en',
      category: 'MARKETING',
      components: [{ type: 'BODY', text: 'Our new offers are here.' }],
    });

    // A template name the WABA does not have: 132001.
    const unknown = await send(env, { type: 'template', template: { name: 'cpr_missing', language: { code: 'en' } } });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe(132001);

    // Body parameters must match the template's placeholders: 132000.
    const noParams = await send(env, {
      type: 'template',
      template: { name: 'order_followup', language: { code: 'en_US' } },
    });
    expect(noParams.body.error.code).toBe(132000);

    const misnamed = await send(env, {
      type: 'template',
      template: {
        name: 'order_followup',
        language: { code: 'en_US' },
        components: [{ type: 'body', parameters: [{ type: 'text', text: 'ON-12853' }] }],
      },
    });
    expect(misnamed.status).toBe(200);
    const reply = await env.rx.waitFor((c) => c.field === 'messages', 5000, 'the permission reply');
    expect(reply.item.context).toMatchObject({ id: misnamed.body.messages[0].id });
    expect(sim.permissions.status(U).status).toBe('temporary');
    expect(sim.permissions.describe(U).actions[0]).toMatchObject({ action_name: 'send_call_permission_request' });

    // Named like a permission request but without the component: an ordinary template, no request counted.
    const other = '447700900322';
    const plain = await send(
      env,
      { type: 'template', template: { name: 'call_permission_x', language: { code: 'en' } } },
      other,
    );
    expect(plain.status).toBe(200);
    expect(sim.permissions.describe(other).actions[0]).toMatchObject({ can_perform_action: true });
    expect(sim.permissions.status(other).status).toBe('no_permission');
  });
});
