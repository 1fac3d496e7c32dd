import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';

/** A port free for both UDP and TCP on `address` (SIP listens on both). */
export async function freePort(address = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 30000);
    const ok = await new Promise<boolean>((resolve) => {
      const udp = createSocket('udp4');
      udp.once('error', () => resolve(false));
      udp.bind(port, address, () => {
        const tcp = createServer();
        tcp.once('error', () => udp.close(() => resolve(false)));
        tcp.listen(port, address, () => tcp.close(() => udp.close(() => resolve(true))));
      });
    });
    if (ok) return port;
  }
  throw new Error(`no free port on ${address}`);
}
