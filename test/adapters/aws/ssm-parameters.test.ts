/**
 * `adapters/aws/ssm-parameters.ts` against a fake SSM endpoint speaking the real wire protocol
 * (JSON 1.1, `X-Amz-Target: AmazonSSM.GetParametersByPath`, paginated). Lives here because the
 * module belongs to the deployment (issue 5); move it to test/functions/shared with its peers.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SSMClient } from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { normalizePrefix, SsmSettingsError, ssmSettings } from '#adapters/aws/ssm-parameters.ts';

interface Call {
  target: string;
  body: { Path?: string; Recursive?: boolean; WithDecryption?: boolean; NextToken?: string };
}

describe('Function: ssmSettings', () => {
  let server: Server;
  let endpoint: string;
  const calls: Call[] = [];
  let delayMs = 0;
  let fail = false;
  const store: Record<string, { Type: string; Value: string }> = {
    '/wa-sip-bridge/prod/META_APP_SECRET': { Type: 'SecureString', Value: 'decrypted-secret' },
    '/wa-sip-bridge/prod/META_PHONE_NUMBER_ID': { Type: 'String', Value: '436666719526789' },
    '/wa-sip-bridge/prod/LOG_LEVEL': { Type: 'String', Value: 'DEBUG' },
    '/wa-sip-bridge/prod/lower-case-note': { Type: 'String', Value: 'ignored' },
    '/wa-sip-bridge/staging/META_APP_SECRET': { Type: 'SecureString', Value: 'other-stage' },
  };

  const client = () =>
    new SSMClient({
      endpoint,
      region: 'eu-west-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      maxAttempts: 1,
    });

  beforeAll(async () => {
    server = createServer(async (req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const call: Call = {
        target: String(req.headers['x-amz-target']),
        body: JSON.parse(Buffer.concat(chunks).toString()),
      };
      calls.push(call);
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      if (fail) {
        res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1' });
        res.end(
          JSON.stringify({
            __type: 'AccessDeniedException',
            message: 'not authorized to perform ssm:GetParametersByPath',
          }),
        );
        return;
      }
      const path = `${call.body.Path}/`;
      const names = Object.keys(store).filter((n) => n.startsWith(path) && !n.slice(path.length).includes('/'));
      // Two per page, to exercise pagination.
      const start = Number(call.body.NextToken ?? 0);
      const page = names.slice(start, start + 2);
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(
        JSON.stringify({
          Parameters: page.map((Name) => ({
            Name,
            Type: store[Name]!.Type,
            Value: call.body.WithDecryption || store[Name]!.Type === 'String' ? store[Name]!.Value : 'ENCRYPTED',
          })),
          ...(start + 2 < names.length ? { NextToken: String(start + 2) } : {}),
        }),
      );
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => server.close());
  beforeEach(() => {
    calls.length = 0;
    delayMs = 0;
    fail = false;
  });

  it('returns every UPPER_SNAKE parameter directly under the prefix, decrypted, across pages', async () => {
    const settings = await ssmSettings('/wa-sip-bridge/prod/', { client: client() });

    expect(settings).toEqual({
      META_APP_SECRET: 'decrypted-secret',
      META_PHONE_NUMBER_ID: '436666719526789',
      LOG_LEVEL: 'DEBUG',
    });
    expect(calls.map((c) => c.target)).toEqual(['AmazonSSM.GetParametersByPath', 'AmazonSSM.GetParametersByPath']);
    expect(calls[0]!.body).toMatchObject({ Path: '/wa-sip-bridge/prod', Recursive: false, WithDecryption: true });
  });

  it('keeps only the keys asked for', async () => {
    const settings = await ssmSettings('/wa-sip-bridge/prod', { client: client(), keys: ['LOG_LEVEL', 'NOT_THERE'] });

    expect(settings).toEqual({ LOG_LEVEL: 'DEBUG' });
  });

  it('caches per client, so a warm invocation does not call SSM again', async () => {
    const c = client();
    await ssmSettings('/wa-sip-bridge/prod', { client: c });
    const first = calls.length;
    await ssmSettings('/wa-sip-bridge/prod', { client: c });

    expect(calls.length).toBe(first);
  });

  it('fails with SsmSettingsError naming the prefix when SSM refuses', async () => {
    fail = true;

    await expect(ssmSettings('/wa-sip-bridge/prod', { client: client() })).rejects.toThrow(SsmSettingsError);
    await expect(ssmSettings('/wa-sip-bridge/prod', { client: client(), maxAgeSeconds: 0 })).rejects.toThrow(
      /\/wa-sip-bridge\/prod: .*not authorized/,
    );
  });

  it('gives up at the deadline instead of hanging a cold start', async () => {
    delayMs = 5000; // the parameter store answers far too late
    const started = Date.now();

    await expect(ssmSettings('/wa-sip-bridge/prod', { client: client(), timeoutMs: 150 })).rejects.toThrow(
      /no answer within 150 ms/,
    );
    // Gave up at its own deadline, long before the answer (a wide bound: scheduling may delay it).
    expect(Date.now() - started).toBeLessThan(4000);
  });

  it.each(['wa-sip-bridge/prod', '/', '', '/a b'])('rejects the prefix %j', (prefix) => {
    expect(() => normalizePrefix(prefix)).toThrow(TypeError);
  });
});
