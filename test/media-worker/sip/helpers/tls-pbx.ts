/**
 * A PBX stand-in reachable over SIP/TLS on loopback, and a throw-away PKI made with `openssl` at test
 * time. The stand-in records what each TLS client sent in its ClientHello (the SNI name) and answers
 * INVITE with a configured status (200 with SDP, or a refusal), ACK with nothing, BYE with 200.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { sdp } from './far-end.ts';

/** A certificate authority and the leaf certificates it signed, as PEM. */
export interface TestPki {
  readonly dir: string;
  /** The CA certificate (PEM), as a `SIP_TLS_CA_FILE` would hold it. */
  readonly caCert: Buffer;
  readonly caFile: string;
  /** A leaf certificate and key for `subjectAltName` (e.g. `DNS:localhost,IP:127.0.0.1`). */
  leaf(name: string, subjectAltName: string): { key: Buffer; cert: Buffer };
  remove(): void;
}

const openssl = (args: string[]): void => {
  execFileSync('openssl', args, { stdio: 'ignore' });
};

/** A new CA named `cn` in a temporary folder. */
export function makePki(cn: string): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'sip-pki-'));
  const caKey = join(dir, 'ca.key');
  const caFile = join(dir, 'ca.pem');
  openssl([
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    `/CN=${cn}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout',
    caKey,
    '-out',
    caFile,
  ]);
  return {
    dir,
    caCert: readFileSync(caFile),
    caFile,
    leaf(name, subjectAltName) {
      const key = join(dir, `${name}.key`);
      const csr = join(dir, `${name}.csr`);
      const cert = join(dir, `${name}.pem`);
      const ext = join(dir, `${name}.ext`);
      writeFileSync(ext, `subjectAltName=${subjectAltName}\nbasicConstraints=CA:FALSE\n`);
      openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', key, '-out', csr]);
      openssl([
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        caFile,
        '-CAkey',
        caKey,
        '-CAcreateserial',
        '-days',
        '1',
        '-extfile',
        ext,
        '-out',
        cert,
      ]);
      return { key: readFileSync(key), cert: readFileSync(cert) };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** What the stand-in saw. */
export interface TlsPbx {
  readonly port: number;
  /** The SNI name of each TLS connection that completed its handshake (`false`: none sent). */
  readonly servernames: (string | false)[];
  /** Request lines received (`INVITE sip:…`, `ACK …`, `BYE …`). */
  readonly requests: string[];
  close(): Promise<void>;
}

const header = (msg: string, name: string): string[] =>
  msg
    .split('\r\n')
    .filter((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`))
    .map((l) => l.slice(name.length + 1).trim());

/** Start the stand-in on 127.0.0.1 with `key`/`cert`; INVITEs get `inviteStatus` (200 answers with SDP). */
export async function startTlsPbx(opts: { key: Buffer; cert: Buffer; inviteStatus: number }): Promise<TlsPbx> {
  const servernames: (string | false)[] = [];
  const requests: string[] = [];
  const sockets = new Set<tls.TLSSocket>();
  const server = tls.createServer({ key: opts.key, cert: opts.cert }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    servernames.push(socket.servername ?? false);
    let buffer = '';
    socket.setEncoding('binary');
    socket.on('error', () => undefined);
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      for (;;) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffer.slice(0, end);
        const length = Number(header(head, 'content-length')[0] ?? header(head, 'l')[0] ?? 0);
        if (buffer.length < end + 4 + length) return;
        buffer = buffer.slice(end + 4 + length);
        const line = head.split('\r\n')[0] ?? '';
        if (line.startsWith('SIP/2.0')) continue;
        requests.push(line);
        const method = line.split(' ')[0];
        if (method === 'ACK') continue;
        const status = method === 'INVITE' ? opts.inviteStatus : 200;
        const body = method === 'INVITE' && status === 200 ? sdp('127.0.0.1', 45000) : '';
        const port = (server.address() as AddressInfo).port;
        const lines = [
          `SIP/2.0 ${status} ${status === 200 ? 'OK' : 'Refused'}`,
          ...header(head, 'via').map((v) => `Via: ${v}`),
          `From: ${header(head, 'from')[0]}`,
          `To: ${header(head, 'to')[0]}${method === 'INVITE' ? ';tag=pbx1' : ''}`,
          `Call-ID: ${header(head, 'call-id')[0]}`,
          `CSeq: ${header(head, 'cseq')[0]}`,
          ...(method === 'INVITE' && status === 200
            ? [`Contact: <sip:pbx@127.0.0.1:${port};transport=tls>`, 'Content-Type: application/sdp']
            : []),
          `Content-Length: ${Buffer.byteLength(body)}`,
        ];
        socket.write(`${lines.join('\r\n')}\r\n\r\n${body}`, 'binary');
      }
    });
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    servernames,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  };
}
