/**
 * The in-process SIP stack binds its ports once and learns the outcome from that bind (issue 14:
 * "bind errors handled instead of probe-then-bind"). Probing first left a gap in which another
 * socket could take the port; the package's own bind then failed with an `error` event nobody
 * listened to, which crashes the process.
 */
import dgram, { createSocket, type Socket } from 'node:dgram';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createSipPort, SipStackError } from '#worker/sip/sip-adapter.ts';
import { freePort } from './helpers/far-end.ts';

/**
 * Another program takes UDP `port` in the instant before the stack binds it: the first UDP socket
 * created with a message listener (the `sip` package's) triggers a bind of our own socket first.
 * This is the gap a probe-then-bind leaves open, made deterministic.
 */
function takePortJustBeforeTheStack(port: number): { taken: Promise<Socket>; restore(): void } {
  const original = dgram.createSocket;
  let resolveTaken: (s: Socket) => void = () => undefined;
  const taken = new Promise<Socket>((r) => {
    resolveTaken = r;
  });
  let done = false;
  dgram.createSocket = ((...args: Parameters<typeof original>) => {
    if (!done && typeof args[1] === 'function') {
      done = true;
      const thief = original('udp4');
      thief.bind(port, '127.0.0.1', () => resolveTaken(thief));
    }
    return original(...args);
  }) as typeof original;
  return {
    taken,
    restore: () => {
      dgram.createSocket = original;
    },
  };
}

describe('Function: createSipPort — binding', () => {
  it('the port taken between any check and the bind: SipStackError from the real bind, no crash', async () => {
    const port = await freePort(['127.0.0.1']);
    const thief = takePortJustBeforeTheStack(port);
    try {
      // Before: the probe had passed, the package's own bind failed with an `error` event nobody
      // listened to, and the process died of an uncaught EADDRINUSE.
      await expect(createSipPort({ address: '127.0.0.1', port })).rejects.toThrow(SipStackError);
    } finally {
      thief.restore();
      (await thief.taken).close();
    }
  });

  it('a port already taken (UDP or TCP) rejects with SipStackError naming the address, and the rest is released', async () => {
    const port = await freePort(['127.0.0.1']);
    const udp = createSocket('udp4');
    await new Promise<void>((r) => udp.bind(port, '127.0.0.1', () => r()));
    await expect(createSipPort({ address: '127.0.0.1', port })).rejects.toThrow(SipStackError);
    await expect(createSipPort({ address: '127.0.0.1', port })).rejects.toThrow(`127.0.0.1:${port}`);
    udp.close();
    const tcp = createServer();
    await new Promise<void>((r) => tcp.listen(port, '127.0.0.1', () => r()));
    await expect(createSipPort({ address: '127.0.0.1', port })).rejects.toThrow(SipStackError);
    await new Promise<void>((r) => tcp.close(() => r()));
    // Nothing of the failed attempts holds the port: a stack binds it now.
    const sip = await createSipPort({ address: '127.0.0.1', port });
    await sip.close();
  });
});
