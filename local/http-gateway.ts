/**
 * A local stand-in for API Gateway HTTP API: turns each HTTP request into a payload-v2 event and
 * hands it to the same handler functions that run in Lambda.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';

/** A Lambda-style handler. */
export type LambdaHandler = (
  event: APIGatewayProxyEventV2,
  context: Context,
) => Promise<APIGatewayProxyStructuredResultV2>;

/** A route: method (or `ANY`) and a path prefix or exact path. */
export interface Route {
  readonly method: 'GET' | 'POST' | 'ANY';
  readonly path: string | RegExp;
  readonly handler: () => LambdaHandler | undefined;
}

/** The running gateway. */
export interface HttpGateway {
  readonly url: string;
  readonly server: Server;
  stop(): Promise<void>;
}

const MAX_BODY = 3 * 1024 * 1024; // Meta's payloads go up to 3 MB (§2.4)

/** Starts the gateway on `host:port` (port 0 = any). */
export async function startHttpGateway(
  routes: readonly Route[],
  options: { host?: string; port?: number } = {},
): Promise<HttpGateway> {
  const host = options.host ?? '127.0.0.1';
  const server = createServer((req, res) => {
    serve(req, routes)
      .then((result) => {
        res.writeHead(result.statusCode ?? 200, (result.headers ?? {}) as Record<string, string>);
        res.end(result.isBase64Encoded ? Buffer.from(result.body ?? '', 'base64') : (result.body ?? ''));
      })
      .catch((error: unknown) => {
        // A handler that throws is what Lambda reports as 500 Internal Server Error.
        console.error('local gateway: handler failed', error);
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ message: 'Internal Server Error' }));
      });
  });
  server.listen(options.port ?? 0, host);
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}`,
    server,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function serve(req: IncomingMessage, routes: readonly Route[]): Promise<APIGatewayProxyStructuredResultV2> {
  const url = new URL(req.url ?? '/', 'http://local');
  const method = (req.method ?? 'GET').toUpperCase();
  const route = routes.find(
    (r) =>
      (r.method === 'ANY' || r.method === method) &&
      (typeof r.path === 'string' ? r.path === url.pathname : r.path.test(url.pathname)),
  );
  const handler = route?.handler();
  if (!route || !handler) {
    return {
      statusCode: 404,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'Not Found' }),
    };
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) return { statusCode: 413, body: JSON.stringify({ message: 'Request Entity Too Large' }) };
    chunks.push(chunk as Buffer);
  }
  const body = Buffer.concat(chunks);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers))
    if (v !== undefined) headers[k.toLowerCase()] = Array.isArray(v) ? v.join(',') : v;
  const query: Record<string, string> = {};
  for (const [k, v] of url.searchParams) query[k] = query[k] === undefined ? v : `${query[k]},${v}`;
  const text = body.toString('utf8');
  // API Gateway base64-encodes bodies that are not valid UTF-8 text; do the same.
  const binary = !Buffer.from(text, 'utf8').equals(body);
  const event: APIGatewayProxyEventV2 = {
    version: '2.0',
    routeKey: `${method} ${url.pathname}`,
    rawPath: url.pathname,
    rawQueryString: url.search.replace(/^\?/, ''),
    headers,
    ...(Object.keys(query).length > 0 ? { queryStringParameters: query } : {}),
    requestContext: {
      accountId: 'local',
      apiId: 'local',
      domainName: headers.host ?? 'localhost',
      domainPrefix: 'local',
      http: {
        method,
        path: url.pathname,
        protocol: 'HTTP/1.1',
        sourceIp: req.socket.remoteAddress ?? '',
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: randomUUID(),
      routeKey: `${method} ${url.pathname}`,
      stage: '$default',
      time: new Date().toISOString(),
      timeEpoch: Date.now(),
    },
    ...(body.length > 0 ? { body: binary ? body.toString('base64') : text } : {}),
    isBase64Encoded: binary,
  };
  const context = {
    awsRequestId: event.requestContext.requestId,
    functionName: 'local',
    getRemainingTimeInMillis: () => 30_000,
  } as unknown as Context;
  return handler(event, context);
}
