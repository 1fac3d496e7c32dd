/**
 * The drachtio adapter's counterpart of binding: it connects to drachtio-server as an application.
 * No server, or a wrong secret, is a SipStackError within the connect timeout; never a crash, never
 * a hang.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DrachtioServer, startDrachtioServer } from '#test/helpers/drachtio-server.ts';
import { createDrachtioSipPort } from '#worker/sip/drachtio/drachtio-adapter.ts';
import { SipStackError } from '#worker/sip/sip-adapter.ts';
import { freePort } from '../../media-worker/sip/helpers/far-end.ts';

let server: DrachtioServer;
beforeAll(async () => {
  server = await startDrachtioServer();
});
afterAll(() => server?.stop());

describe('Function: createDrachtioSipPort — connecting', () => {
  it('connects with the right secret and reports drachtio’s SIP address as its contact', async () => {
    const port = await createDrachtioSipPort({ host: server.host, port: server.port, secret: server.secret });
    expect(port.localContact).toBe(`sip:wa-sip-bridge@${server.sipAddress}:${server.sipPort}`);
    await port.close();
  });

  it('no drachtio-server listening: SipStackError naming the address within the connect timeout', async () => {
    const nobody = await freePort(['127.0.0.1']);
    await expect(
      createDrachtioSipPort({ host: '127.0.0.1', port: nobody, secret: 'x', connectTimeoutMs: 1000 }),
    ).rejects.toThrow(`drachtio-server at 127.0.0.1:${nobody} did not accept us within 1000 ms`);
    await expect(
      createDrachtioSipPort({ host: '127.0.0.1', port: nobody, secret: 'x', connectTimeoutMs: 1000 }),
    ).rejects.toBeInstanceOf(SipStackError);
  });

  it('a wrong secret: SipStackError (drachtio refuses the application)', async () => {
    await expect(
      createDrachtioSipPort({ host: server.host, port: server.port, secret: 'wrong', connectTimeoutMs: 3000 }),
    ).rejects.toBeInstanceOf(SipStackError);
  });
});
