/**
 * drachtio-server 0.9.4 exits with code 0 and no error line when its SIP port is taken, after its
 * application port is already up. Starting it must notice (wait for its SIP stack, or its exit)
 * and say so with a named error, instead of handing out a server that is gone.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startDrachtioServer } from '#test/helpers/drachtio-server.ts';
import { SipStackError } from '#worker/sip/sip-adapter.ts';
import { freePort } from '../../media-worker/sip/helpers/far-end.ts';

const cleanUps: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(cleanUps.splice(0).map((c) => c()));
});

/** Hold `port` on `address` for UDP and TCP, as another SIP program would. */
async function occupy(address: string, port: number): Promise<void> {
  const udp = dgram.createSocket('udp4');
  const tcp = net.createServer();
  await new Promise<void>((r) => udp.bind(port, address, () => r()));
  await new Promise<void>((r) => tcp.listen(port, address, () => r()));
  cleanUps.push(async () => {
    udp.close();
    await new Promise<void>((r) => tcp.close(() => r()));
  });
}

describe('Starting drachtio-server', () => {
  it('its SIP port is busy: SipStackError naming the port, with its log, not a server that is gone', async () => {
    const busy = await freePort(['127.0.0.1']);
    await occupy('127.0.0.1', busy);
    const started = startDrachtioServer('127.0.0.1', busy);
    started.then(
      (s) => cleanUps.push(() => s.stop()),
      () => undefined,
    );
    await expect(started).rejects.toBeInstanceOf(SipStackError);
    await expect(started).rejects.toThrow(`SIP port 127.0.0.1:${busy} busy: drachtio-server exited at start`);
    await expect(started).rejects.toThrow(/starting sip stack on sip:127\.0\.0\.1/);
  }, 20_000);

  it('a free SIP port: it starts, and its SIP stack is up when start resolves', async () => {
    const server = await startDrachtioServer('127.0.0.1');
    cleanUps.push(() => server.stop());
    expect(server.log()).toContain('Starting sofia event loop');
  }, 20_000);
});
