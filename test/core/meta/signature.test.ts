import { describe, expect, it } from 'vitest';
import { verifyMetaSignature } from '#core/meta/signature.ts';
import { metaJsonStringify, signBody } from '#simulator/webhooks/payloads.ts';

const secret = 'app-secret';
const body = Buffer.from(metaJsonStringify({ name: 'José 😀' }));

describe('verifyMetaSignature', () => {
  it('accepts the signature Meta computes over the raw, \\u-escaped bytes', () => {
    expect(verifyMetaSignature(body, signBody(secret, body), secret)).toBe(true);
  });

  it('fails when the body is re-serialised (the non-ASCII pitfall)', () => {
    const reserialised = Buffer.from(JSON.stringify(JSON.parse(body.toString())));
    expect(verifyMetaSignature(reserialised, signBody(secret, body), secret)).toBe(false);
  });

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['without prefix', signBody(secret, body).slice(7)],
    ['sha1', `sha1=${'0'.repeat(40)}`],
    ['wrong secret', signBody('other', body)],
    ['truncated', signBody(secret, body).slice(0, -2)],
    ['non-hex', `sha256=${'z'.repeat(64)}`],
  ])('rejects a %s header', (_what, header) => {
    expect(verifyMetaSignature(body, header, secret)).toBe(false);
  });

  it('rejects a body altered by one byte', () => {
    const altered = Buffer.from(body);
    altered[5] = altered[5]! ^ 1;
    expect(verifyMetaSignature(altered, signBody(secret, body), secret)).toBe(false);
  });
});
