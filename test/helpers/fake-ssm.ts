/**
 * A fake SSM Parameter Store on loopback speaking the real wire protocol the AWS SDK uses (JSON 1.1,
 * `X-Amz-Target: AmazonSSM.GetParametersByPath`), two parameters a page so pagination is exercised.
 * SecureStrings come back encrypted unless `WithDecryption` is set, as in SSM.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SSMClient } from '@aws-sdk/client-ssm';

/** One request the fake received. */
export interface FakeSsmCall {
  readonly target: string;
  readonly body: { Path?: string; Recursive?: boolean; WithDecryption?: boolean; NextToken?: string };
}

/** A running fake; `store` and the switches can change between requests. */
export interface FakeSsm {
  readonly endpoint: string;
  readonly calls: FakeSsmCall[];
  /** Parameter name → type and value. */
  store: Record<string, { Type: 'String' | 'SecureString' | 'StringList'; Value: string }>;
  /** Delay before each answer, ms. */
  delayMs: number;
  /** Answer AccessDeniedException. */
  fail: boolean;
  /** An SDK client for this endpoint (fake credentials, one attempt). */
  client(): SSMClient;
  close(): Promise<void>;
}

/** Starts a fake SSM endpoint on 127.0.0.1 with `store`. */
export async function startFakeSsm(store: FakeSsm['store'] = {}): Promise<FakeSsm> {
  const fake: FakeSsm = {
    endpoint: '',
    calls: [],
    store,
    delayMs: 0,
    fail: false,
    client: () =>
      new SSMClient({
        endpoint: fake.endpoint,
        region: 'eu-west-1',
        credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
        maxAttempts: 1,
      }),
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
  const server = createServer(async (req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const call: FakeSsmCall = {
      target: String(req.headers['x-amz-target']),
      body: JSON.parse(Buffer.concat(chunks).toString()),
    };
    fake.calls.push(call);
    if (fake.delayMs) await new Promise((r) => setTimeout(r, fake.delayMs));
    if (res.destroyed) return;
    if (fake.fail) {
      res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(
        JSON.stringify({
          __type: 'AccessDeniedException',
          message: 'not authorized to perform ssm:GetParametersByPath',
        }),
      );
      return;
    }
    const path = `${(call.body.Path ?? '').replace(/\/$/, '')}/`;
    const names = Object.keys(fake.store).filter((n) => n.startsWith(path) && !n.slice(path.length).includes('/'));
    const start = Number(call.body.NextToken ?? 0);
    const page = names.slice(start, start + 2);
    res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
    res.end(
      JSON.stringify({
        Parameters: page.map((Name) => {
          const p = fake.store[Name]!;
          return {
            Name,
            Type: p.Type,
            Value: call.body.WithDecryption || p.Type !== 'SecureString' ? p.Value : 'AQICAH…',
          };
        }),
        ...(start + 2 < names.length ? { NextToken: String(start + 2) } : {}),
      }),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  (fake as { endpoint: string }).endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return fake;
}
