import sip from 'sip';
import { describe, expect, it } from 'vitest';
import {
  escapeUser,
  extraHeaders,
  fromWire,
  quoteDisplayName,
  reasonPhrase,
  redactedWireText,
  sanitizeHeaderValue,
  toWire,
} from '#worker/sip/sip-wire.ts';

describe('Module: sip-wire', () => {
  it.each([
    [481, 'Call/Transaction Does Not Exist'], // RFC 3261 §21 wording
    [504, 'Server Time-out'],
    [486, 'Busy Here'],
    [607, 'Unwanted'], // RFC 8197
    [699, 'Status 699'], // unregistered: still a phrase
  ])('the reason phrase of %i is "%s"', (status, phrase) => {
    expect(reasonPhrase(status)).toBe(phrase);
  });

  it('header values cannot inject headers: CR, LF and other controls become spaces', () => {
    expect(sanitizeHeaderValue('a\r\nVia: evil\u0000b\u007f')).toBe('a  Via: evil b');
  });

  it.each(['Via', 'call-id', 'CSeq', 'Contact', 'content-length', 'Proxy-Authorization', 'To', 'f'])(
    'reserved header %s is refused',
    (name) => {
      expect(() => extraHeaders({ [name]: 'x' })).toThrow(TypeError);
    },
  );

  it('non-token header names are refused; X-headers keep their case', () => {
    expect(() => extraHeaders({ 'X Bad': 'x' })).toThrow(TypeError);
    expect(() => extraHeaders({ 'X-A:B': 'x' })).toThrow(TypeError);
    expect(extraHeaders({ 'X-WA-Call-Id': 'wacid.1' })).toEqual({ 'X-WA-Call-Id': 'wacid.1' });
  });

  it('URI user parts are escaped (RFC 3261 §25.1) and display names quoted', () => {
    expect(escapeUser('+447700900123')).toBe('+447700900123');
    expect(escapeUser('a b@c:d')).toBe('a%20b%40c%3Ad');
    expect(fromWire(quoteDisplayName('Zoë "Z" \\ x\r\n'))).toBe('"Zoë \\"Z\\" \\\\ x"');
  });

  it('UTF-8 survives the package’s latin1 string convention', () => {
    const text = 'Zoë — 你好';
    const wire = toWire(text);
    expect(wire.length).toBe(Buffer.byteLength(text, 'utf8'));
    expect(fromWire(wire)).toBe(text);
  });

  it('wire traces hide credentials and SDES keys', () => {
    const text = redactedWireText({
      method: 'INVITE',
      uri: 'sip:a@127.0.0.2',
      headers: {
        via: [],
        'call-id': 'c',
        cseq: { seq: 1, method: 'INVITE' },
        authorization: [{ scheme: 'Digest', username: '"1001"', response: '"0123456789abcdef"' }],
      },
      content: 'v=0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:SECRETKEY\r\n',
    });
    expect(text).toContain('Authorization: <redacted>');
    expect(text).not.toContain('0123456789abcdef');
    expect(text).not.toContain('SECRETKEY');
    expect(sip.parse(Buffer.from(text))?.method).toBe('INVITE');
  });
});
